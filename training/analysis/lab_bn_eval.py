"""Each lab's accuracy with the network's moving statistics and with statistics re-estimated on the lab's own
unlabelled images (AdaBN), in Keras on the training crops (issue 26; rule: docs/research/rules/lab_batch_norm.txt).

    python -m training.analysis.lab_bn_eval --run runs/lolo_lbn_no_bccd \\
        --lab bccd blood-cells/TRAIN blood-cells/TEST_SIMPLE --lab pbc pbc/train pbc/val

For each ``--lab NAME POOL MEASURE``: up to ``--pool-images`` images of POOL (evenly spaced, labels unused) set every
batch normalisation's statistics in one forward pass (each layer on its input as normalised by the layers before
it), then MEASURE is classified; "moving" classifies with the statistics the run ended with. Works for any run: a
run trained with frozen statistics is loaded with :class:`training.model.LabBatchNorm` layers (same weights) so its
statistics can be re-estimated too. The app's calibrate (the square from the nucleus ruler, colours) is not applied:
this is a screen of the training recipe, compared run against run on the same crops. Decides nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.data import CLASSES, list_labelled, load_arrays, preprocessing_for, shared_root


def _norms(core):
    from training.model import LabBatchNorm, leaf_layers

    return [layer for layer in leaf_layers(core) if isinstance(layer, LabBatchNorm)]


def _layers(model) -> dict:
    from training.model import leaf_layers

    return {layer.name: layer for layer in leaf_layers(model) if layer.weights}


def _copy_weights(source, target) -> None:
    target_layers = _layers(target)
    for name, layer in _layers(source).items():
        target_layers[name].set_weights(layer.get_weights())


def adabn(core, x_pool_uint8: np.ndarray) -> None:
    """Every normalisation's moving statistics := the pool's, in one forward pass in training mode."""
    norms = _norms(core)
    saved = [n.momentum for n in norms]
    for n in norms:
        n.momentum = 0.0
    core((x_pool_uint8.astype(np.float32) - 127.5) / 127.5, training=True)
    for n, m in zip(norms, saved, strict=True):
        n.momentum = m


def accuracy(core, x: np.ndarray, y: np.ndarray) -> dict:
    from training.train import predict_logits

    pred = predict_logits(core, x).argmax(1)
    recall = {CLASSES[c]: round(float(np.mean(pred[y == c] == c)), 3) for c in range(len(CLASSES)) if np.any(y == c)}
    return {"accuracy": round(float(np.mean(pred == y)), 4), "recall": recall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--weights", default="final.weights.h5")
    ap.add_argument("--lab", nargs=3, action="append", required=True, metavar=("NAME", "POOL", "MEASURE"))
    ap.add_argument("--pool-images", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from training.model import build_core
    from training.train import load_config

    cfg = load_config(args.run / "config.json")

    def core_with(lab_batch_norm: bool):
        return build_core(
            cfg["alpha"],
            cfg["image_size"],
            cfg["dropout"],
            None,
            cfg.get("train_from"),
            cfg.get("instance_norm_until"),
            lab_batch_norm,
        )

    core = core_with(True)
    trained = core if cfg.get("lab_batch_norm") else core_with(False)
    size, prep, cache = cfg["image_size"], preprocessing_for(cfg), args.run.parent / "cache"
    data = shared_root() / "data"
    rows = {}
    for name, pool_rel, measure_rel in args.lab:
        trained.load_weights(args.run / args.weights)
        if trained is not core:  # a frozen-statistics run: the same weights, layer by layer (h5 keys differ by class)
            _copy_weights(trained, core)
        x, y = load_arrays(list_labelled(data / measure_rel), size, cache, prep=prep)
        row = {"moving": accuracy(core, x, y)}
        pool = list_labelled(data / pool_rel)
        pool = pool[:: max(1, -(-len(pool) // args.pool_images))]
        xp, _ = load_arrays(pool, size, cache, prep=prep)
        adabn(core, xp)
        row["adabn"] = accuracy(core, x, y)
        rows[name] = row
        print(
            f"{args.run.name} {name} ({measure_rel}, {len(y)}): moving {100 * row['moving']['accuracy']:.1f} %  "
            f"adabn on {len(xp)} of {pool_rel} {100 * row['adabn']['accuracy']:.1f} %  {row['adabn']['recall']}",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
