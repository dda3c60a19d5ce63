"""Research probe: AdaBN (re-estimated normalisation statistics) for an unseen lab, written into the ONNX file.

    python -m training.analysis.adabn_probe MODEL SOURCE_FOLDER TARGET_POOL TARGET_EVAL SCALE N_TARGET
    python -m training.analysis.adabn_probe runs/lolo_bccd/model.onnx blood-cells/TRAIN pbc/train pbc/val 1.0 128

Every Conv whose batch normalisation was folded into it (weight and bias), and every depthwise Conv followed by
its normalisation as Mul/Add constants, is re-normalised in graph order so that, on the target lab's images,
each channel has the mean and spread it had on the source lab's (training.renormalise); each is folded
back into the constants, so the result is an ordinary model file. Unlabelled target images only; the threshold
stays the base model's (renorm_benchmark also moves it). Then it scores the model before and after on
TARGET_EVAL through the app's loader and writes /tmp/adabn_model.onnx (which
training.analysis.adapt_benchmark --model can take as a base). Measured and not shipped: see
docs/research/site_adaptation.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model, normalise
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from training import renormalise as rn
from training.analysis import adapt_benchmark as bench
from training.data import list_labelled, shared_root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the base ONNX model")
    ap.add_argument("source", help="a labelled folder under data/ of the lab the model was trained on")
    ap.add_argument("target_pool", help="a folder under data/ of the new lab: unlabelled images to re-estimate on")
    ap.add_argument("target_eval", help="a labelled folder under data/ of the new lab to score on")
    ap.add_argument("scale", type=float, help="the new lab's magnification relative to the source's")
    ap.add_argument("n_target", type=int, help="how many target images to re-estimate on")
    ap.add_argument("--every", type=int, default=2, help="score every Nth image of TARGET_EVAL (default 2)")
    ap.add_argument("--out", default="/tmp/adabn_model.onnx", help="where to write the re-normalised model")
    args = ap.parse_args(argv)
    model_path, src_rel, tgt_pool, tgt_eval = args.model, args.source, args.target_pool, args.target_eval
    scale, n_target = args.scale, args.n_target
    data = shared_root() / "data"
    base = Model(model_path)
    prep = base.info.preprocessing
    f = OnnxFile(base.path.read_bytes())
    units = rn.find_units(f)
    print(f"{len(units)} normalisations, {sum(u.kind == 'affine' for u in units)} of them depthwise")

    def load(paths, p):
        return normalise(np.stack([load_for_model(q, base.input_size, p) for q in paths]), p)

    src = [p for p, _ in list_labelled(data / src_rel)]
    src = src[:: max(1, len(src) // 200)][:200]
    t0 = time.time()
    source = rn.channel_stats(f, load(src, prep), [u.output for u in units], base.input_name)
    print(f"source statistics in {time.time() - t0:.1f} s")
    record = rn.Record(units, [m for m, _ in source], [s for _, s in source], 0.0)
    pool = [p for p, _ in list_labelled(data / tgt_pool)]
    np.random.default_rng(0).shuffle(pool)
    target_prep = replace(prep, crop_fraction=prep.crop_fraction * scale)
    xt = load(pool[:n_target], target_prep)
    t0 = time.time()
    cur = rn.renormalise(f, record, xt, base.input_name)
    print(f"re-estimated in graph order in {time.time() - t0:.1f} s")
    meta = json.loads(cur.metadata()["hematovision"])
    meta["preprocessing"] = dict(meta["preprocessing"], crop_fraction=target_prep.crop_fraction)
    cur.set_metadata("hematovision", json.dumps(meta))
    out_path = Path(args.out)
    out_path.write_bytes(cur.to_bytes())
    ev = list_labelled(data / tgt_eval)[:: args.every]
    for name, mp in (("before", model_path), ("adabn", str(out_path))):
        print(name, bench._score(Model(mp), [p for p, _ in ev], [y for _, y in ev]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
