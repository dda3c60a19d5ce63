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
# numpy without OpenBLAS: the app does no linear algebra in numpy (onnxruntime does the maths; numpy only
# holds pixels), and the wheel's OpenBLAS + gfortran are 27 MiB of the bundle. The same numpy version is
# compiled from source without BLAS (~3 min on 2 cores; pip caches the wheel); with no compiler the wheel stays.
NUMPY_VERSION=$("$VENV/bin/python" -c "import numpy; print(numpy.__version__)")
if "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps --no-binary numpy "numpy==$NUMPY_VERSION" \
    -Csetup-args=-Dblas=none -Csetup-args=-Dlapack=none -Csetup-args=-Dallow-noblas=true; then
  echo "numpy $NUMPY_VERSION built without BLAS"
else
  echo "note: numpy could not be built without BLAS (needs gcc and g++); bundling the wheel's numpy" >&2
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "numpy==$NUMPY_VERSION"
fi
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN build.spec
BIN=dist/HematoVision/HematoVision
# Strip debug symbols where it is safe (not the patchelf-ed wheels in *.libs, which strip corrupts).
if command -v strip >/dev/null 2>&1; then
  find dist/HematoVision/_internal -maxdepth 1 -name 'libpython*.so*' -exec strip --strip-unneeded {} +
  # numpy is compiled here (not a patchelf-ed wheel) when the no-BLAS build succeeded, so it is safe to strip.
  if [ ! -d dist/HematoVision/_internal/numpy.libs ]; then
    find dist/HematoVision/_internal/numpy -name '*.so' -exec strip --strip-unneeded {} +
  fi
  find dist/HematoVision/_internal/python3* -name '*.so' -exec strip --strip-debug {} + 2>/dev/null || true
  find dist/HematoVision/_internal/onnxruntime -name '*.so' -exec strip --strip-debug {} + 2>/dev/null || true
fi
# Qt's ICU data library is 31 MiB of tables for ~800 locales; keep root + English (see the script).
for icu in dist/HematoVision/_internal/PySide6/Qt/lib/libicudata.so.*; do
  if [ -f "$icu" ] && [ ! -L "$icu" ]; then python3 scripts/trim_icu_data.py "$icu"; fi
done
# Every library and plugin left in the bundle must find the libraries it links against (in the bundle, or
# display-system libraries that any desktop provides), or a plugin would fail to load on a user's machine.
"$VENV/bin/python" - <<'PY'
import glob, os, re, subprocess, sys
root = "dist/HematoVision/_internal"
have = {os.path.basename(f) for f in glob.glob(root + "/**/*", recursive=True)}
system = set(re.findall(r"^\s*(\S+) \(", subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout, re.M))
DESKTOP = ("libwayland-", "libGL", "libEGL", "libOpenGL", "libvulkan", "libdrm", "libgbm", "libxkbcommon")
missing = []
for f in glob.glob(root + "/**/*.so*", recursive=True):
    if os.path.islink(f):
        continue
    out = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
    missing += [(f, n) for n in re.findall(r"Shared library: \[(.+?)\]", out)
                if n not in have and n not in system and not n.startswith(DESKTOP)]
for f, n in missing:
    print(f"unresolved: {f} needs {n}", file=sys.stderr)
sys.exit(1 if missing else 0)
PY
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
QT_QPA_PLATFORM=offscreen "$BIN" classify "$IMAGES" --csv "$tmp/again.csv" --report "$tmp/report.pdf" \
  --case-id "Smoke ä ß 漢" --operator "CI" --heatmaps "$tmp/heat" -q
test "$(ls "$tmp/heat" | wc -l)" -gt 0 && echo "smoke: heatmaps with legends written"
# adapt from the bundle (numpy, the ONNX rewriter and onnxruntime only): reviewer labels = the model's, a smoke test
"$VENV/bin/python" - "$tmp/bundle.csv" "$tmp/labelled.csv" <<'PY'
import csv, os, sys
with open(sys.argv[1], encoding="utf-8-sig", newline="") as fh, open(sys.argv[2], "w", newline="") as out:
    w = csv.writer(out)
    w.writerow(["path", "reviewer_label"])
    w.writerows([os.path.abspath(r["path"]), r["predicted_label"]] for r in csv.DictReader(fh) if r["predicted_label"])
PY
"$BIN" adapt "$tmp/labelled.csv" --out "$tmp/site.onnx" --site-name "Smoke" -q
QT_QPA_PLATFORM=offscreen "$BIN" classify "$IMAGES" --csv "$tmp/site.csv" --model "$tmp/site.onnx" -q
echo "smoke: adapt wrote a site model that classifies"
"$BIN" calibrate "$IMAGES" --out "$tmp/magnification.onnx" --site-name "Smoke" -q
QT_QPA_PLATFORM=offscreen "$BIN" classify "$IMAGES" --csv "$tmp/calibrated.csv" --model "$tmp/magnification.onnx" -q
echo "smoke: calibrate wrote a site model that classifies"
head -c 5 "$tmp/report.pdf" | grep -q "%PDF-" && echo "smoke: PDF report written ($(wc -c < "$tmp/report.pdf") bytes)"
HV_DATA_DIR="$tmp/data" QT_QPA_PLATFORM=offscreen "$BIN" --screenshot "$tmp/shot.png" "$IMAGES"
test -s "$tmp/shot.png" && echo "smoke: --screenshot works offscreen"
if find dist/HematoVision -iname '*tensorflow*' | grep -q .; then echo "TensorFlow found in the bundle" >&2; exit 1; fi
echo "smoke: no TensorFlow inside"
