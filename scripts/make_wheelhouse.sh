#!/usr/bin/env bash
# A folder of wheels for an offline install: the app's own wheel and every runtime dependency's.
#   scripts/make_wheelhouse.sh [OUT [PLATFORM PYTHON_VERSION]]
#   scripts/make_wheelhouse.sh                                   # wheelhouse/ for this machine
#   scripts/make_wheelhouse.sh wheelhouse-win win_amd64 3.11     # for a Windows PC with Python 3.11
#   scripts/make_wheelhouse.sh wheelhouse-mac macosx_11_0_arm64 3.11
# Then, on the offline PC:  pip install --no-index --find-links OUT hematovision
# Needs the network once, here; fails loudly (set -e) if any wheel cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-wheelhouse}"
PLATFORM="${2:-}"
PYVER="${3:-}"
rm -rf "$OUT"
mkdir -p "$OUT"
python3 -m pip wheel -q --no-deps -w "$OUT" .
APP=$(ls "$OUT"/hematovision-*.whl)
if [ -n "$PLATFORM" ]; then
  python3 -m pip download -q -d "$OUT" --only-binary=:all: --platform "$PLATFORM" --python-version "$PYVER" "$APP"
else
  python3 -m pip download -q -d "$OUT" --only-binary=:all: "$APP"
fi
echo "wheelhouse: $OUT ($(ls "$OUT" | wc -l) wheels, $(du -sh "$OUT" | cut -f1))"
