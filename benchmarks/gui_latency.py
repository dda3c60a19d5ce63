"""GUI event-loop latency while a large folder is classified (target: under 50 ms).

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_latency.py [--n 5000] [--model M.onnx]
    QT_QPA_PLATFORM=offscreen python benchmarks/gui_latency.py --fields --n 600      # camera fields (issue 28)

A 10 ms timer runs in the GUI thread during the whole run; its lateness is how long the window
would have been unresponsive. The folder holds hard links to real images (no extra disk).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hv_desktop.core.imaging.scan import scan  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "blood-cells" / "TEST")
    ap.add_argument("--model", type=Path, default=ROOT / "assets" / "model" / "hematovision.onnx")
    ap.add_argument(
        "--fields", action="store_true", help="Cases > Images Are Camera Fields, on deepbionet/fields: every cell found"
    )
    args = ap.parse_args()
    if args.fields and args.images == ap.get_default("images"):
        args.images = ROOT.parent / "shared" / "data" / "deepbionet" / "fields"
    app = QApplication([])
    src = [i.path for i in scan([args.images]) if not i.error]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        for i in range(args.n):
            os.link(src[i % len(src)], folder / f"cell_{i:05d}{src[i % len(src)].suffix}")
        w = MainWindow(
            model_path=args.model,
            settings=QSettings(str(Path(tmp) / "s.ini"), QSettings.IniFormat),
            autosave_path=Path(tmp) / "autosave.json",
            restore=False,
        )
        if args.fields:
            w.cell_mode.fields.trigger()  # as a technologist chooses it in the Cases menu
        w.show()
        lateness: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            lateness.append(max(0.0, now - last[0] - 0.010))
            last[0] = now

        timer = QTimer(interval=10)
        timer.timeout.connect(tick)
        t0 = time.perf_counter()
        w.runFinished.connect(app.quit)
        timer.start()
        w.classify([folder])
        app.exec()
        secs = time.perf_counter() - t0
        lat = np.asarray(lateness) * 1000
        rows = w.results.rowCount()
        if args.fields:
            rate = f"{args.n / secs:.1f} fields/s"
            print(f"{args.n} fields ({rows} rows: a cell each, or 'no white cell') in {secs:.1f} s ({rate}) with the GUI")
        else:
            print(f"{rows} images in {secs:.1f} s ({rows / secs:.0f} img/s) with the GUI")
        worst = int(lat.argmax())
        print(f"worst tick at {worst / max(len(lat), 1) * 100:.0f}% of the run")
        print(
            f"event-loop lateness: median {np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
            f"max {lat.max():.1f} ms over {len(lat)} ticks"
        )
        w.close()
        w.deleteLater()
        app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
