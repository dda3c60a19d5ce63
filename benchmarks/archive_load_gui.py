"""The window over a large case archive (issue 29; targets: the case shows in < 1 s, the window never blocks over
0.2 s while the open session loads). Prints figures; not a timed test.

    QT_QPA_PLATFORM=offscreen python benchmarks/archive_load_gui.py [--cases 1000] [--cells 200] [--open 50]

Builds an archive of ``--cases`` cases of ``--cells`` synthetic cells each (benchmarks/archive_speed.py's builder),
makes the newest ``--open`` cases the open session (50 x 200 = 10,000 cells), then opens the window over it. A
10 ms QTimer in the GUI thread records the time between its ticks from the window's first show until every open
cell is in the table; the longest gap is the longest the window did not answer. Also printed: the window's
construction (model load included), the time until the current case's first cells show, and until all are in.
The cells' image files do not exist here, so no thumbnails are made (restore_latency.py measures those).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from archive_speed import build, case_name  # noqa: E402
from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hv_desktop.core.storage.archive import CaseArchive  # noqa: E402
from hv_desktop.core.storage.archive_session import read_open, record_open  # noqa: E402
from hv_desktop.core.system.appdata import ARCHIVE_NAME  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402


def open_session(path: Path, n_cases: int, n_open: int) -> tuple[list[str], float]:
    """The newest ``n_open`` cases made the open session; how long the archive takes to open and read it back."""
    ids = [case_name(c, n_cases) for c in range(n_cases - n_open, n_cases)]
    with CaseArchive.open(path) as a:
        record_open(a.connection, ids, ids[-1])
    t0 = time.perf_counter()
    with CaseArchive.open(path) as a:
        held = read_open(a.connection)
    took = time.perf_counter() - t0
    assert len(held.cases) == n_open
    return ids, took


def measure(app: QApplication, folder: Path, model: Path, current: str, n_cells: int, limit: float) -> None:
    gaps: list[float] = []
    last = [0.0]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer(interval=10)
    timer.timeout.connect(tick)
    t0 = time.perf_counter()
    w = MainWindow(
        model_path=model,
        settings=QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat),
        autosave_path=folder / "autosave.json",
    )
    built = time.perf_counter() - t0
    w.show()
    last[0] = time.perf_counter()
    timer.start()
    shown_at = all_at = None
    while time.perf_counter() - t0 < limit:
        app.processEvents()
        if shown_at is None and w.review.current == current and w.review.case_results(current):
            shown_at = time.perf_counter() - t0
        if w.results.rowCount() >= n_cells and not w.persistence.restoring:
            all_at = time.perf_counter() - t0
            break
        time.sleep(0.001)
    for _ in range(20):  # what the last chunk left to the event loop
        app.processEvents()
        time.sleep(0.01)
    timer.stop()
    g = np.asarray(gaps[1:] or [0.0]) * 1000
    print(f"window built (model load included) in {built * 1000:.0f} ms")
    print(f"current case {current!r} showing {w.results_pane.proxy.rowCount()} cells at {fmt(shown_at)} after the start")
    print(f"all {w.results.rowCount():,} open cells in the table at {fmt(all_at)} after the start")
    print(
        f"gaps between 10 ms ticks while it loaded: median {np.median(g):.1f} ms, p99 {np.percentile(g, 99):.1f} ms, "
        f"longest {g.max():.1f} ms over {len(g)} ticks; over 200 ms: {int((g > 200).sum())}"
    )
    w.close()
    w.deleteLater()
    app.processEvents()


def fmt(t: float | None) -> str:
    return "never" if t is None else f"{t * 1000:.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--open", type=int, default=50, help="the newest this many cases are the open session")
    ap.add_argument("--model", type=Path, default=ROOT / "assets" / "model" / "hematovision.onnx")
    ap.add_argument("--keep", type=Path, help="build the archive in this folder and leave it there (reused if there)")
    args = ap.parse_args()
    app = QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ARCHIVE_NAME
        if not path.exists():
            t0 = time.perf_counter()
            build(path, args.cases, args.cells)
            took = time.perf_counter() - t0
            print(f"built {args.cases:,} cases x {args.cells} cells in {took:.1f} s: {path.stat().st_size / 1e6:.0f} MB")
        ids, took = open_session(path, args.cases, args.open)
        cells = len(ids) * args.cells
        print(f"open session: {len(ids)} cases, {cells:,} cells; archive opened, its heads read in {took * 1000:.0f} ms")
        measure(app, folder, args.model, ids[-1], len(ids) * args.cells, limit=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
