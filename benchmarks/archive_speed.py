"""Speed of the case archive (issue 29; target: open the archive, list its cases and show one case in < 1 s).

    python benchmarks/archive_speed.py [--cases 1000] [--cells 200] [--repeats 5] [--keep DIR]

Builds an archive of ``--cases`` cases of ``--cells`` synthetic cells each (one transaction per case, most cases
reviewed and signed off, three years of dates, twelve operators) in a temporary folder, then times, each
``--repeats`` times (median and worst): opening the archive and listing the newest 200 cases, the searches the
Archive window offers, loading one case whole, and 100 single-review transactions with each durability setting
(``PRAGMA synchronous`` FULL, the archive's, and NORMAL).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.cases.review import CaseInfo, SignOff  # noqa: E402
from hv_desktop.core.inference.result import Result  # noqa: E402
from hv_desktop.core.storage import archive_schema  # noqa: E402
from hv_desktop.core.storage.archive import CaseArchive  # noqa: E402

LABELS = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
OPERATORS = [f"Operator {chr(65 + i)}" for i in range(12)]


def cells(rng: random.Random, case: int, n: int) -> list[Result]:
    out = []
    for i in range(n):
        k = rng.randrange(4)
        flagged = rng.random() < 0.3
        out.append(
            Result(
                Path(f"/lab/slides/{case:06d}/cell_{i:04d}.jpg"),
                LABELS[k],
                0.6 if flagged else 0.95,
                {lab: (0.91 if j == k else 0.03) for j, lab in enumerate(LABELS)},
                flagged,
                0.5,
                sha256=f"{case * 1000 + i:064x}",
                timestamp="2026-12-02T10:00:00+01:00",
                reviewer_label=LABELS[k] if flagged else None,
                model_name="HematoVision",
                model_version="1.2.2",
            )
        )
    return out


def case_name(c: int, n_cases: int) -> str:
    return f"S-{2024 + c * 3 // n_cases}-{c:05d}"


def build(path: Path, n_cases: int, n_cells: int) -> list[str]:
    rng = random.Random(29)
    start = datetime(2024, 1, 1, 8, 0)
    ids: list[str] = []
    with CaseArchive.open(path) as a:
        for c in range(n_cases):
            cid = case_name(c, n_cases)
            when = start + timedelta(hours=c * 3 * 365 * 24 // n_cases)
            a.upsert_case(CaseInfo(cid, rng.choice(OPERATORS), "synthetic"), created_at=when.isoformat(timespec="seconds"))
            cell_ids = a.add_cells(cid, cells(rng, c, n_cells))
            if c < n_cases - 20:  # the newest 20 are still open
                a.sign_off(cid, SignOff(rng.choice(OPERATORS), (when + timedelta(hours=2)).isoformat()))
            ids.append(cell_ids[0])
    return ids


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def open_list_show(path: Path, case_id: str, n_cases: int) -> None:
    with CaseArchive.open(path) as a:
        assert len(a.find_cases()) == min(200, n_cases)
        assert len(a.load_case(case_id).results) > 0


def reviews(path: Path, case_id: str, synchronous: str) -> float:
    archive_schema.SYNCHRONOUS = synchronous
    try:
        with CaseArchive.open(path) as a:
            a.unlock(case_id, "benchmark", "now")
            ids = [r for (r,) in a._conn.execute("SELECT cell_id FROM cells WHERE case_id = ? AND error IS NULL", (case_id,))]
            t0 = time.perf_counter()
            for i in range(100):
                a.set_review(ids[i % len(ids)], LABELS[i % 4])
            return time.perf_counter() - t0
    finally:
        archive_schema.SYNCHRONOUS = "FULL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build the archive in this folder and leave it there")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "archive.sqlite"
        t0 = time.perf_counter()
        build(path, args.cases, args.cells)
        print(f"{os.cpu_count()} cores, SQLite {archive_schema.sqlite3.sqlite_version}, synchronous {archive_schema.SYNCHRONOUS}")
        took, size = time.perf_counter() - t0, path.stat().st_size / 1e6
        print(f"built {args.cases:,} cases x {args.cells} cells in {took:.1f} s: {size:.0f} MB")
        case_id = case_name(args.cases // 2, args.cases)
        rows = [
            ("open + list 200 newest cases + load one case (target < 1 s)", lambda: open_list_show(path, case_id, args.cases)),
        ]
        with CaseArchive.open(path) as a:
            rows += [
                ("open the archive", lambda: CaseArchive.open(path).close()),
                ("list the 200 newest cases", lambda: a.find_cases()),
                ("find by ID, substring ('0049')", lambda: a.find_cases(text="0049")),
                ("find by ID, prefix ('s-2025-005')", lambda: a.find_cases(text="s-2025-005", prefix=True)),
                ("find by operator", lambda: a.find_cases(operator="operator c")),
                ("find by status (open)", lambda: a.find_cases(status="open")),
                ("find by month", lambda: a.find_cases(date_from="2025-06", date_to="2025-06")),
                (f"load one case ({args.cells} cells)", lambda: a.load_case(case_id)),
            ]
            for name, fn in rows:
                median, worst = timed(fn, args.repeats)
                print(f"{name:<62} median {1000 * median:7.1f} ms   worst {1000 * worst:7.1f} ms")
        for mode in ("FULL", "NORMAL"):
            took = [reviews(path, case_name(k, args.cases), mode) for k in range(args.repeats)]
            name = f"100 single-review transactions, synchronous {mode}"
            print(f"{name:<62} median {1000 * statistics.median(took):7.1f} ms   worst {1000 * max(took):7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
