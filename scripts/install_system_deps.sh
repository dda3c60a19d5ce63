#!/usr/bin/env bash
# Shared libraries Qt needs (EGL, xkbcommon, fontconfig offscreen; the xcb set on an X11 desktop), pdftoppm,
# and for the bundle build: icupkg + C/C++ compilers (ICU data trim, numpy without BLAS; the build works without).
# Installs only what is missing; a no-op on a machine that has them.
set -u
need=()
for lib in libEGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3 libGL.so.1 libxcb-cursor.so.0; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || need+=("$lib")
done
command -v pdftoppm >/dev/null 2>&1 || need+=(pdftoppm)
command -v icupkg >/dev/null 2>&1 || need+=(icupkg)
command -v cc >/dev/null 2>&1 || need+=(cc)
command -v c++ >/dev/null 2>&1 || need+=(c++)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 \
    libfontconfig1 libdbus-1-3 fonts-dejavu-core poppler-utils libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
    libxcb-image0 libxcb-render-util0 libxcb-xkb1 icu-devtools gcc g++ >/dev/null 2>&1 || true
else
  echo "note: missing ${need[*]}; install Qt's runtime libraries (see README) if the GUI fails to start" >&2
fi
exit 0
