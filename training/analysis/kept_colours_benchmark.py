"""Should adapt keep a lab's colours where calibrate kept them? (docs/research/rules/adapt_keeps_calibrate_colours.txt)

For each lab, calibrate the model on the lab's unlabelled images; where calibrate keeps the colours as captured, adapt
two copies of that site model with adapt_benchmark's draws: K (the file as calibrate writes it, recording that the
colours were kept, so adapt keeps them) and M (the same file without that record: adapt matches the colours from the
reviewed cells, as before the record existed).

    python -m training.analysis.kept_colours_benchmark --lab deepbionet pbc bccd --k 10 25
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.site.calibrate import calibrate
from hv_desktop.core.site.site_colour import colours_kept
from hv_desktop.core.site.site_model import with_metadata
from training.analysis.adapt_benchmark import run, summarise
from training.data import list_labelled, shared_root

#: the lab's unlabelled images calibrate measures (never the scored cells)
CALIBRATE_ON = {"deepbionet": ("deepbionet/cells@train", 1), "pbc": ("pbc/train", 4), "bccd": ("blood-cells/TRAIN", 40)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--lab", nargs="+", choices=sorted(CALIBRATE_ON), default=sorted(CALIBRATE_ON))
    ap.add_argument("--k", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args(argv)
    base = Model(args.model)
    for lab in args.lab:
        rel, every = CALIBRATE_ON[lab]
        paths = [p for p, _ in list_labelled(shared_root() / "data" / rel)][::every]
        result = calibrate(base, paths, site_name=lab)
        print(f"# {lab}: calibrate on {len(paths)} images of {rel}; {result.colour_note}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            k_path = Path(result.save(Path(tmp) / "K.onnx", base))
            k_info = Model(k_path).info
            if not colours_kept(k_info):
                print(f"# {lab}: calibrate matched the colours here: not a lab this question is about", flush=True)
                continue
            site = dict(k_info.site_adaptation or {})
            site.pop("colour_kept")
            m_path = Path(tmp) / "M.onnx"
            m_path.write_bytes(with_metadata(OnnxFile(k_path.read_bytes()), k_info.with_updates(site_adaptation=site)))
            for name, path in (("K (colours kept)", k_path), ("M (colours re-matched)", m_path)):
                rows = run(path, lab, args.k, args.draws, None, Path("runs/synthetic_labs"))
                print(summarise(rows, f"{lab}, calibrated, {name}"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
