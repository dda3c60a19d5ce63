"""GUI event-loop latency while a large autosaved session is restored at start-up (target: no stall over 0.2 s).

    QT_QPA_PLATFORM=offscreen python benchmarks/restore_latency.py [--n 10000]

Writes a session of ``--n`` classified, partly reviewed cells over hard links to real images (thumbnails are
rebuilt from them), opens a window on it and runs a 10 ms timer in the GUI thread until the restore and the
thumbnails are done; the timer's lateness is how long the window would not have answered.
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

from hv_desktop.core.cases.review import ReviewSession  # noqa: E402
from hv_desktop.core.imaging.scan import scan  # noqa: E402
from hv_desktop.core.inference.result import Result  # noqa: E402
from hv_desktop.core.storage.session import save_session  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402

LABELS = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def make_session(path: Path, images: list[Path], n: int, folder: Path) -> None:
    review = ReviewSession()
    review.new_case("BENCH-1", "bench")
    results = []
    for i in range(n):
        link = folder / f"cell_{i:05d}{images[i % len(images)].suffix}"
        os.link(images[i % len(images)], link)
        k = i % 4
        probs = {lab: (0.91 if j == k else 0.03) for j, lab in enumerate(LABELS)}
        results.append(
            Result(
                link,
                LABELS[k],
                0.91,
                probs,
                i % 3 == 0,
                0.5,
                sha256=f"{i:064x}",
                timestamp="2026-12-02T10:00:00",
                reviewer_label=LABELS[k] if i % 2 else None,
                case="BENCH-1",
                model_name="bench",
                model_version="1",
            )
        )
    save_session(path, results, "bench", "1", review.to_extra())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "blood-cells" / "TEST")
    ap.add_argument("--model", type=Path, default=ROOT / "assets" / "model" / "hematovision.onnx")
    args = ap.parse_args()
    app = QApplication([])
    src = [i.path for i in scan([args.images]) if not i.error]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        autosave = Path(tmp) / "autosave.json"
        make_session(autosave, src, args.n, folder)
        print(f"session of {args.n} cells: {autosave.stat().st_size / 1e6:.1f} MB")
        lateness: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            lateness.append(max(0.0, now - last[0] - 0.010))
            last[0] = now

        timer = QTimer(interval=10)
        timer.timeout.connect(tick)
        t0 = time.perf_counter()
        w = MainWindow(
            model_path=args.model, settings=QSettings(str(Path(tmp) / "s.ini"), QSettings.IniFormat), autosave_path=autosave
        )
        w.show()
        last[0] = time.perf_counter()
        timer.start()  # from the window's first show: the restore runs from here (building it is cold_start.py's)
        thumbs = [False]
        w.persistence.thumbnailsReady.connect(
            lambda a, b: thumbs.__setitem__(0, all(r.thumbnail is not None for r in w.results.results if r.ok))
        )
        while not (w.results.rowCount() == args.n and thumbs[0]) and time.perf_counter() - t0 < 300:
            app.processEvents()
            time.sleep(0.001)
        rows_at = time.perf_counter() - t0
        timer.stop()
        lat = np.asarray(lateness) * 1000
        print(f"restored {w.results.rowCount()} rows with thumbnails in {rows_at:.1f} s")
        print(
            f"event-loop lateness: median {np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
            f"max {lat.max():.1f} ms over {len(lat)} ticks; ticks over 200 ms: {int((lat > 200).sum())}"
        )
        w.close()
        w.deleteLater()
        app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
