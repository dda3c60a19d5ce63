"""Write into a model file the training statistics that training.renormalise needs at a new lab.

    python -m training.analysis.source_stats MODEL --sources blood-cells/TRAIN pbc/train --validation pbc/val --out OUT

Per folded normalisation, the per-channel mean and spread on 200 training images (evenly over the sources, the
same number from each) and the share of the validation genuine cells the model flags (training.renormalise).
Only the metadata changes: the outputs are identical. OUT may be MODEL itself.

With ``--from-batch-norm RUN`` (a run trained with per-lab batch normalisation, rules/lab_batch_norm.txt) the
statistics are not sampled: in training every lab came out of each normalisation with the layer's own shift and scale
(mean beta, spread |gamma| per channel), so those are what a new lab is re-normalised to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model, normalise
from hv_desktop.core.inference.metadata import METADATA_KEY
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.system.writing import atomic_write_bytes
from training.data import list_labelled, shared_root
from training.renormalise import RECORD_KEY, source_record


def load(model: Model, paths: list[Path]) -> np.ndarray:
    prep = model.info.preprocessing
    return normalise(np.stack([load_for_model(p, model.input_size, prep) for p in paths]), prep)


def review_values(model: Model, paths: list[Path]) -> np.ndarray:
    """The model's review value for each image, as the app computes it (below the threshold: flagged)."""
    return np.concatenate([model.assess(load(model, paths[i : i + 64]))[1] for i in range(0, len(paths), 64)]).astype(np.float64)


def flag_rate(model: Model, paths: list[Path]) -> float:
    return float((review_values(model, paths) < model.info.review_threshold).mean())


def batch_norm_record(f: OnnxFile, run: Path, weights: str, rate: float) -> dict:
    """The record of a per-lab-normalised run: each folded normalisation's beta and |gamma|, in graph order."""
    import keras

    from training.export_onnx import load_core
    from training.model import leaf_layers
    from training.renormalise import _encode, find_units

    core, _ = load_core(run, weights)
    bns = [layer for layer in leaf_layers(core) if isinstance(layer, keras.layers.BatchNormalization)]
    units = find_units(f)
    channels = [int(b.gamma.shape[0]) for b in bns]
    if len(units) != len(bns) or any(f.initializer(u.shift).size != c for u, c in zip(units, channels, strict=True)):
        raise SystemExit(f"{run}: {len(bns)} batch normalisations do not match the file's {len(units)} folded ones")
    return {
        "units": [list(u) for u in units],
        "channels": channels,
        "mean": _encode([np.asarray(b.beta, np.float64) for b in bns]),
        "std": _encode([np.abs(np.asarray(b.gamma, np.float64)) for b in bns]),
        "reference_flag_rate": round(float(rate), 4),
        "fitted_on": f"beta and |gamma| of {run / weights} (per-lab batch normalisation)",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--sources", nargs="+", required=True, help="labelled training folders under data/")
    ap.add_argument("--validation", nargs="+", required=True, help="labelled validation folders under data/")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--out", required=True)
    ap.add_argument("--from-batch-norm", type=Path, default=None, metavar="RUN", help="record beta and |gamma| of this run")
    ap.add_argument("--weights", default="final.weights.h5", help="with --from-batch-norm: the run's weights file")
    args = ap.parse_args(argv)
    data = shared_root() / "data"
    model = Model(args.model)
    per = args.images // len(args.sources)
    if per < 1:
        raise SystemExit(f"--images {args.images}: at least one image per source is needed ({len(args.sources)} sources)")
    train: list[Path] = []
    for s in args.sources:
        paths = [p for p, _ in list_labelled(data / s)]
        train += paths[:: max(1, len(paths) // per)][:per]
    val = [p for v in args.validation for p, _ in list_labelled(data / v)]
    rate = flag_rate(model, val)
    f = OnnxFile(model.path.read_bytes())
    note = f"{len(train)} training images ({', '.join(args.sources)}); flag rate on {', '.join(args.validation)}"
    if args.from_batch_norm is not None:
        record = batch_norm_record(f, args.from_batch_norm, args.weights, rate)
    else:
        record = source_record(f, load(model, train), model.input_name, rate, note)
    meta = json.loads(f.metadata()[METADATA_KEY])  # Model() above refused a file without it
    meta[RECORD_KEY] = record
    f.set_metadata(METADATA_KEY, json.dumps(meta))
    atomic_write_bytes(args.out, f.to_bytes())
    print(f"{args.out}: {len(record['units'])} normalisations, reference flag rate {rate:.3f} on {len(val)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
