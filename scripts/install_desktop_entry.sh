#!/usr/bin/env bash
# Add HematoVision to the Linux desktop's application menu (for the current user; no root needed).
#   scripts/install_desktop_entry.sh /path/to/HematoVision        # the bundle's executable (or `hematovision`)
#   scripts/install_desktop_entry.sh --remove
set -euo pipefail
cd "$(dirname "$0")/.."
APPS="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
ICONS="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
if [ "${1:-}" = "--remove" ]; then
  rm -f "$APPS/hematovision.desktop" "$ICONS/hematovision.png"
  echo "removed the menu entry"
  exit 0
fi
EXE="$(realpath "${1:?give the path of the HematoVision executable}")"
test -x "$EXE" || { echo "not an executable: $EXE" >&2; exit 1; }
mkdir -p "$APPS" "$ICONS"
cp assets/icons/hematovision.png "$ICONS/hematovision.png"
sed "s|^Exec=HematoVision|Exec=\"$EXE\"|" assets/linux/hematovision.desktop > "$APPS/hematovision.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$APPS" || true
echo "menu entry: $APPS/hematovision.desktop -> $EXE"
