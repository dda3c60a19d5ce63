#!/usr/bin/env bash
# Build dist/HematoVision/ from a fresh venv holding only the runtime dependencies and PyInstaller,
# then smoke-test it: `classify` must give the same rows as the installed package, `--screenshot` must
# work offscreen, and no TensorFlow may be inside.
#   scripts/build_bundle.sh [FOLDER_OF_IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${1:-${HV_SHARED:-../shared}/data/blood-cells/TEST_SIMPLE}"
VENV=.build-venv
rm -rf "$VENV" build dist/HematoVision
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q . "pyinstaller>=6.5"
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN build.spec
BIN=dist/HematoVision/HematoVision
# Strip debug symbols where it is safe (not the patchelf-ed wheels in *.libs, which strip corrupts).
if command -v strip >/dev/null 2>&1; then
  find dist/HematoVision/_internal -maxdepth 1 -name 'libpython*.so*' -exec strip --strip-debug {} +
  find dist/HematoVision/_internal/python3* -name '*.so' -exec strip --strip-debug {} + 2>/dev/null || true
  find dist/HematoVision/_internal/onnxruntime -name '*.so' -exec strip --strip-debug {} + 2>/dev/null || true
fi
echo "bundle: $(du -sh dist/HematoVision | cut -f1)"
du -sh dist/HematoVision/_internal/* | sort -h | tail -6

# smoke test
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" --version
QT_QPA_PLATFORM=offscreen "$BIN" classify "$IMAGES" --csv "$tmp/bundle.csv" -q
"$VENV/bin/hematovision" --model assets/model/hematovision.onnx classify "$IMAGES" --csv "$tmp/package.csv" -q
"$VENV/bin/python" - "$tmp/bundle.csv" "$tmp/package.csv" <<'PY'
import csv, sys
def rows(p):
    with open(p, encoding="utf-8-sig", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "timestamp"} for r in csv.DictReader(fh)]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert a == b, "bundle and package disagree"
print(f"smoke: {len(a)} rows identical to the installed package")
PY
HV_DATA_DIR="$tmp/data" QT_QPA_PLATFORM=offscreen "$BIN" --screenshot "$tmp/shot.png" "$IMAGES"
test -s "$tmp/shot.png" && echo "smoke: --screenshot works offscreen"
if find dist/HematoVision -iname '*tensorflow*' | grep -q .; then echo "TensorFlow found in the bundle" >&2; exit 1; fi
echo "smoke: no TensorFlow inside"
