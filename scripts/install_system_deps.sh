#!/usr/bin/env bash
# The system libraries HematoVision's window needs on Debian/Ubuntu (Qt's X11 platform plugin and its
# rendering; pip cannot install them), plus pdftoppm for the report tests and the en_US.UTF-8 locale (the tests
# run the commands under a standard desktop locale, where Python writes text strictly). Installs only what is
# missing; fails loudly when something is missing and cannot be installed.
#   scripts/install_system_deps.sh            the app (and its tests)
#   scripts/install_system_deps.sh --build    also what scripts/build_bundle.sh uses to make the bundle
#                                             smaller: C/C++ compilers (numpy without BLAS) and icupkg
set -euo pipefail
RUNTIME=(libegl1 libgl1 libopengl0 libfontconfig1 libdbus-1-3 fonts-dejavu-core libxkbcommon0 libxkbcommon-x11-0
         libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1
         libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-shm0 libxcb-sync1 libx11-xcb1 poppler-utils locales)
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
has_locale() { locale -a 2>/dev/null | grep -qix 'en_US\.utf-\?8'; }
[ ${#missing[@]} -eq 0 ] && has_locale && exit 0
if [ "$(id -u)" != 0 ]; then
  [ ${#missing[@]} -eq 0 ] || echo "missing system packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  has_locale || echo "missing locale en_US.UTF-8; run: sudo $0" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! has_locale; then
  echo "generating the en_US.UTF-8 locale"
  grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen 2>/dev/null || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
  locale-gen >/dev/null
  has_locale || { echo "the en_US.UTF-8 locale could not be generated" >&2; exit 1; }
fi
