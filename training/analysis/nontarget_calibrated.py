"""Non-target cells flagged before and after the app's zero-label calibrate (issue 26: flags that stay honest).

    python -m training.analysis.nontarget_calibrated --model assets/model/hematovision.onnx

Classifies pbc/other (basophils, erythroblasts, immature granulocytes, platelets: none of the four classes) with
the model as shipped and with the site model the app's calibrate makes from every 10th pbc/train image (the lab's
own unlabelled cells), and prints the share flagged, per half (even / odd). Decides nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from training.data import list_labelled, shared_root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--calibrate-every", type=int, default=10)
    args = ap.parse_args(argv)
    data = shared_root() / "data"
    base = Model(args.model)
    other = sorted(p for p in (data / "pbc/other").rglob("*") if p.is_file())
    cal = [p for p, _ in list_labelled(data / "pbc/train")][:: args.calibrate_every]
    with tempfile.TemporaryDirectory() as tmp:
        site = Model(calibrate(base, cal, site_name="pbc").save(Path(tmp) / "site.onnx", base))
        for name, model in (("as shipped", base), ("calibrated", site)):
            for half, paths in (("even", other[0::2]), ("odd", other[1::2])):
                flagged = np.mean([r.needs_review for r in classify_paths(paths, model)])
                print(f"{name}: pbc/other {half} half ({len(paths)}) flagged {flagged:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
