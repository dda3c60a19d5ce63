#!/usr/bin/env bash
# The system libraries HematoVision's window needs on Debian/Ubuntu (Qt's X11 platform plugin and its
# rendering; pip cannot install them), plus pdftoppm for the report tests. Installs only what is missing;
# fails loudly when something is missing and cannot be installed.
#   scripts/install_system_deps.sh            the app (and its tests)
#   scripts/install_system_deps.sh --build    also what scripts/build_bundle.sh uses to make the bundle
#                                             smaller: C/C++ compilers (numpy without BLAS) and icupkg
set -euo pipefail
RUNTIME=(libegl1 libgl1 libopengl0 libfontconfig1 libdbus-1-3 fonts-dejavu-core libxkbcommon0 libxkbcommon-x11-0
         libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1
         libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-shm0 libxcb-sync1 libx11-xcb1 poppler-utils)
BUILD=(gcc g++ icu-devtools)
want=("${RUNTIME[@]}")
[ "${1:-}" = "--build" ] && want+=("${BUILD[@]}")
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "not a Debian/Ubuntu system: install the equivalents of: ${want[*]}" >&2
  exit 0
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
