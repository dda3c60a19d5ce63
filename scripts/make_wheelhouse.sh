#!/usr/bin/env bash
# A folder of wheels for an offline install: the app's own wheel and every runtime dependency's.
#   scripts/make_wheelhouse.sh [OUT [PLATFORM PYTHON_VERSION]]
#   scripts/make_wheelhouse.sh                                   # wheelhouse/ for this machine
#   scripts/make_wheelhouse.sh wheelhouse-win win_amd64 3.11     # for a Windows PC with Python 3.11
#   scripts/make_wheelhouse.sh wheelhouse-mac macosx_11_0_arm64 3.11
# Then, on the offline PC:  pip install --no-index --find-links OUT hematovision
# Needs the network once, here; fails loudly (set -e) if any wheel cannot be had.
# OUT (relative to the folder you run this from) is never deleted: it must be new, empty, or a wheelhouse this
# script made before (it leaves a marker file there), whose old wheels alone are replaced; any other folder, such
# as a USB stick's, is refused untouched.
set -euo pipefail
MARKER=".hematovision-wheelhouse"

# prepare_out OUT: make OUT ready for fresh wheels, or say why not (exit 2) without touching anything in it.
prepare_out() {
  local out=$1 entry name
  if [ -e "$out" ] && [ ! -d "$out" ]; then
    echo "make_wheelhouse: $out exists and is not a folder; choose another OUT" >&2
    exit 2
  fi
  if [ -d "$out" ] && [ ! -e "$out/$MARKER" ]; then
    # no marker: empty, or wheels only with the app's among them (a wheelhouse made before the marker existed)
    local foreign="" app=""
    for entry in "$out"/* "$out"/.[!.]* "$out"/..?*; do
      [ -e "$entry" ] || [ -L "$entry" ] || continue
      name=${entry##*/}
      case "$name" in
        hematovision-*.whl) app=$name ;;
        *.whl) ;;
        *) foreign=${foreign:-$name} ;;
      esac
    done
    if [ -n "$foreign" ] || { [ -z "$app" ] && [ -n "$(ls -A "$out")" ]; }; then
      echo "make_wheelhouse: $out is not empty and is not a wheelhouse made by this script" \
        "(it holds ${foreign:-other wheels only}); nothing was changed. Choose a new or empty folder for OUT." >&2
      exit 2
    fi
  fi
  mkdir -p "$out"
  # a wheelhouse of ours: its old wheels go, so each package has one version and the app's wheel is found
  find "$out" -maxdepth 1 -type f -name '*.whl' -exec rm -f {} +
  printf 'Made by HematoVision scripts/make_wheelhouse.sh: its *.whl files are replaced when it runs again.\n' \
    > "$out/$MARKER"
}

SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$SOURCE/wheelhouse}"
PLATFORM="${2:-}"
PYVER="${3:-}"
case "$OUT" in
  /*) ;;
  *) OUT="$(pwd)/$OUT" ;;  # relative to where the script was run, not to the source folder
esac
prepare_out "$OUT"
cd "$SOURCE"
python3 -m pip wheel -q --no-deps -w "$OUT" .
APP=$(ls "$OUT"/hematovision-*.whl)
if [ -n "$PLATFORM" ]; then
  python3 -m pip download -q -d "$OUT" --only-binary=:all: --platform "$PLATFORM" --python-version "$PYVER" "$APP"
else
  python3 -m pip download -q -d "$OUT" --only-binary=:all: "$APP"
fi
echo "wheelhouse: $OUT ($(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1))"
