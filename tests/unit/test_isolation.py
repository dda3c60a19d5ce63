import subprocess
import sys

from tests.support import ROOT


def test_core_imports_neither_qt_nor_tensorflow():
    code = (
        "import sys, hv_desktop.core, hv_desktop.core.inference.batch, hv_desktop.core.io.export, hv_desktop.cli;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('PySide6','tensorflow','keras','tf2onnx','shiboken6')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_app_package_never_imports_tensorflow():
    offenders = []
    for path in (ROOT / "hv_desktop").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "import tensorflow" in text or "from tensorflow" in text or "import keras" in text:
            offenders.append(str(path))
    assert offenders == []


def test_app_leaves_pillows_font_stack_alone():
    """The bundle drops HarfBuzz (and with it Pillow's FreeType module): no app module may load them."""
    code = (
        "import os, sys; os.environ['QT_QPA_PLATFORM']='offscreen';"
        "import hv_desktop.core.inference.heatmap, hv_desktop.core.cases.practice;"
        "import hv_desktop.gui.main_window, hv_desktop.gui.report;"
        "bad=[m for m in sys.modules if m in ('PIL.ImageFont','PIL.ImageDraw','PIL._imagingft','PIL.ImageText')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
