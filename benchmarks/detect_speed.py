"""Speed of the white-cell finder on 640 x 480 camera fields, one core (issue 28: >= 10 fields/s end to end with
classification, so the finder must take well under 50 ms a field).

    python benchmarks/detect_speed.py [--n 200] [--rounds 3] [--model M.onnx]

Prints, per round: decode, find (``core.imaging.detect.find_cells``) and classify-each-cell times per field, and fields/s
end to end (file bytes -> decoded field -> boxes -> each cell's square cropped, resized, normalised -> the model in
one batch per field). Pinned to one core, with numpy's and onnxruntime's threads at one.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.imaging.detect import find_cells  # noqa: E402
from hv_desktop.core.imaging.preprocess import normalise, open_image  # noqa: E402
from hv_desktop.core.inference.model import Model, bundled_model_path  # noqa: E402
from hv_desktop.core.system.runtime import configure_process  # noqa: E402

LABS = ("deepbionet/fields", "bccd-fields")


def cell_square(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square around the cell's box (its longer side), moved inside the field where it fits."""
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0), *size)
    left = min(max(0, (x0 + x1 - side) // 2), size[0] - side)
    top = min(max(0, (y0 + y1 - side) // 2), size[1] - side)
    return left, top, left + side, top + side


def one_round(blobs: list[bytes], model: Model) -> dict[str, float]:
    prep = model.info.preprocessing
    size = (prep.width, prep.height)
    spent = {"decode": 0.0, "find": 0.0, "classify": 0.0}
    cells = 0
    t_all = time.perf_counter()
    for blob in blobs:
        t0 = time.perf_counter()
        im = open_image(io.BytesIO(blob))
        t1 = time.perf_counter()
        found = find_cells(im)
        t2 = time.perf_counter()
        if found:
            crops = [np.asarray(im.resize(size, box=cell_square(c.box, im.size))) for c in found]
            model.probabilities(normalise(np.stack(crops), prep))
            cells += len(found)
        t3 = time.perf_counter()
        spent["decode"] += t1 - t0
        spent["find"] += t2 - t1
        spent["classify"] += t3 - t2
    total = time.perf_counter() - t_all
    n = len(blobs)
    return {**{k: 1000 * v / n for k, v in spent.items()}, "fields/s": n / total, "cells/field": cells / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="fields, half from each boxed lab")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("HV_SHARED", ROOT.parent / "shared")))
    args = ap.parse_args()
    configure_process()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    files = []
    for lab in LABS:
        files += sorted((args.shared / "data" / lab).glob("*.jpg"))[: args.n // 2]
    blobs = [f.read_bytes() for f in files]
    model = Model(args.model or bundled_model_path(), threads=1)
    print(f"{len(blobs)} fields (640 x 480 JPEG) from {', '.join(LABS)}; one core; model {model.path.name}")
    print(f"{'round':>5s} {'decode ms':>9s} {'find ms':>8s} {'classify ms':>11s} {'cells/field':>11s} {'fields/s':>8s}")
    rates = []
    for r in range(args.rounds):
        m = one_round(blobs, model)
        rates.append(m["fields/s"])
        print(
            f"{r + 1:5d} {m['decode']:9.2f} {m['find']:8.2f} {m['classify']:11.2f} {m['cells/field']:11.2f} {m['fields/s']:8.1f}"
        )
    print(f"median end to end: {statistics.median(rates):.1f} fields/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
