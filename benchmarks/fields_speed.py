"""Camera fields per second end to end, as ``classify --cells all`` runs them (issue 28: >= 10 fields/s for 640 x 480
fields on 2 cores), beside single-cell mode on blood-cells/TEST_SIMPLE for comparison.

    python benchmarks/fields_speed.py [--rounds 3] [--n 282] [--model M.onnx]

Fields: ``core.inference.fields.field_results`` over deepbionet/fields/*.jpg (read, hash, decode, find every white cell, cut
and normalise each cell's square in the decode threads; every cell classified in one pass per chunk of fields).
Single cells: ``core.inference.batch.classify_stream`` (today's ``--cells one``) over TEST_SIMPLE, repeated to about as many
images. Both with the app's own thread settings (decode workers and inference threads from the core count), files
read from the page cache after the first round. Prints the machine's load average first: on a machine that is
running something else (a training job) the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.inference.batch import classify_stream  # noqa: E402
from hv_desktop.core.inference.fields import field_results  # noqa: E402
from hv_desktop.core.inference.model import Model, bundled_model_path  # noqa: E402
from hv_desktop.core.system.runtime import configure_process  # noqa: E402


def fields_round(files: list[Path], model: Model) -> tuple[float, int]:
    t0 = time.perf_counter()
    cells = sum(len(rows) for rows in field_results(files, model) if rows[0].cell_index is not None)
    return len(files) / (time.perf_counter() - t0), cells


def single_round(files: list[Path], model: Model) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in classify_stream(files, model))
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=282, help="fields (deepbionet/fields holds 282)")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("HV_SHARED", ROOT.parent / "shared")))
    args = ap.parse_args()
    configure_process()
    data = args.shared / "data"
    fields = sorted((data / "deepbionet" / "fields").glob("*.jpg"))[: args.n]
    singles = sorted(p for p in (data / "blood-cells" / "TEST_SIMPLE").rglob("*") if p.is_file())
    singles = (singles * (len(fields) // max(1, len(singles)) + 1))[: len(fields)]
    model = Model(args.model or bundled_model_path())
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    print(f"model {model.path.name} ({model.info.name} v{model.info.version})")
    print(f"{'round':>5s} {'fields/s':>9s} {'cells/field':>11s} {'single cells/s':>15s}")
    rates, singles_rates = [], []
    for r in range(args.rounds):
        rate, cells = fields_round(fields, model)
        single = single_round(singles, model)
        rates.append(rate)
        singles_rates.append(single)
        print(f"{r + 1:5d} {rate:9.1f} {cells / len(fields):11.2f} {single:15.1f}")
    print(
        f"median: {statistics.median(rates):.1f} fields/s ({len(fields)} 640 x 480 deepbionet fields, every cell "
        f"classified); single-cell mode {statistics.median(singles_rates):.1f} images/s (TEST_SIMPLE, 320 x 240)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
