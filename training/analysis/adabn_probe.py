"""Research probe: AdaBN (re-estimated normalisation statistics) for an unseen lab, written into the ONNX file.

    python -m training.analysis.adabn_probe MODEL SOURCE_FOLDER TARGET_POOL TARGET_EVAL SCALE N_TARGET
    python -m training.analysis.adabn_probe runs/lolo_bccd/model.onnx blood-cells/TRAIN pbc/train pbc/val 1.0 128

Every Conv whose batch normalisation was folded into it (weight and bias), and every depthwise Conv followed by
its normalisation as Mul/Add constants, is re-normalised in graph order so that, on the target lab's images,
each channel has the mean and spread it had on the source lab's; each is folded back into the constants, so the
result is an ordinary model file. Unlabelled target images only. Then it scores the model before and after on
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
import onnxruntime as ort

from hv_desktop.core.model import Model
from hv_desktop.core.onnx_proto import OnnxFile
from hv_desktop.core.preprocess import load_for_model, normalise
from training.analysis import adapt_benchmark as bench
from training.data import list_labelled, shared_root


def units_of(f: OnnxFile) -> list[tuple[str, str, str, str]]:
    """(output tensor, scale constant, shift constant, kind) of every normalisation that can be re-estimated."""
    nodes = f.nodes()
    inits = set(f.initializer_names)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n[1]:
            consumers.setdefault(i, []).append(n)
    units = []
    for op, inputs, outputs in nodes:
        if op != "Conv":
            continue
        if len(inputs) == 3 and inputs[1] in inits and inputs[2] in inits:
            units.append((outputs[0], inputs[1], inputs[2], "conv"))
            continue
        mul = consumers.get(outputs[0], [None])[0]  # depthwise: Conv -> Mul(const) -> Add(const)
        if mul and mul[0] == "Mul":
            scale = [i for i in mul[1] if i in inits]
            add = consumers.get(mul[2][0], [None])[0]
            if scale and add and add[0] == "Add":
                shift = [i for i in add[1] if i in inits]
                if shift:
                    units.append((add[2][0], scale[0], shift[0], "bn"))
    return units


def channel_stats(model_bytes: bytes, x: np.ndarray, names: list[str], input_name: str):
    """Per output: (mean, std) per channel over images and positions (NCHW outputs)."""
    probe = OnnxFile(model_bytes)
    for name in names:
        probe.add_output(name)
    session = ort.InferenceSession(probe.to_bytes(), providers=["CPUExecutionProvider"])
    outs: list[list[np.ndarray]] = [[] for _ in names]
    for i in range(0, len(x), 16):
        for j, o in enumerate(session.run(names, {input_name: x[i : i + 16]})):
            outs[j].append(o)
    stats = []
    for o in outs:
        a = np.concatenate(o).astype(np.float64)
        stats.append((a.mean((0, 2, 3)), a.std((0, 2, 3))))
    return stats


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
    units = units_of(f)
    print(f"{len(units)} normalisations, {sum(u[3] == 'bn' for u in units)} of them depthwise")

    def load(paths, p):
        return normalise(np.stack([load_for_model(q, base.input_size, p) for q in paths]), p)

    src = [p for p, _ in list_labelled(data / src_rel)]
    src = src[:: max(1, len(src) // 200)][:200]
    t0 = time.time()
    source = channel_stats(f.to_bytes(), load(src, prep), [u[0] for u in units], base.input_name)
    print(f"source statistics in {time.time() - t0:.1f} s")
    pool = [p for p, _ in list_labelled(data / tgt_pool)]
    np.random.default_rng(0).shuffle(pool)
    target_prep = replace(prep, crop_fraction=prep.crop_fraction * scale)
    xt = load(pool[:n_target], target_prep)
    cur = OnnxFile(f.to_bytes())
    t0 = time.time()
    for (out, a_name, c_name, kind), (ms, ss) in zip(units, source):
        ((mt, st),) = channel_stats(cur.to_bytes(), xt, [out], base.input_name)
        ok = (ss > 1e-4) & (st > 1e-4)
        k = np.clip(np.where(ok, ss / np.maximum(st, 1e-9), 1.0), 0.2, 5.0)
        mt = np.where(ok, mt, ms)
        a = cur.initializer(a_name).astype(np.float64)
        c = cur.initializer(c_name).astype(np.float64)
        if kind == "conv":  # z' = (z - mt) k + ms folded into W and b
            cur.set_initializer(a_name, (a * k.reshape((-1,) + (1,) * (a.ndim - 1))).astype(np.float32))
            cur.set_initializer(c_name, ((c - mt) * k + ms).astype(np.float32))
        else:
            cur.set_initializer(a_name, (a * k.reshape(a.shape)).astype(np.float32))
            shape = c.shape
            cur.set_initializer(c_name, ((c - mt.reshape(shape)) * k.reshape(shape) + ms.reshape(shape)).astype(np.float32))
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
