"""Experiment: does Mahalanobis distance on earlier layers help the needs-review score?

    python -m training.experiments.multilayer_review runs/cell/cell_base.onnx

Per-channel mean and std of five layers, a Mahalanobis distance per layer to the
nearest class/source centre (as training.review), z-scored on genuine validation
cells, averaged with calibrated confidence. Scored on the even (validation) half
of pbc/other only; the odd half stays for training.evaluate. Prints the AUROC per
layer, the best subsets (selected on the same half: optimistic) and all five.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from hv_desktop.core.model import Model
from hv_desktop.core.preprocess import load_for_model, normalise
from training.data import list_labelled, list_other, shared_root
from training.evaluate import auroc
from training.review import Distance, confidence

path = Path(sys.argv[1])
P = "hematovision_core_1/mobilenetv2_0.35_224_1/"
layers = [
    "block_9_add_1/Add:0",
    "block_12_add_1/Add:0",
    "block_15_add_1/Add:0",
    "block_16_expand_relu_1/Relu6:0",
    "out_relu_1/Relu6:0",
]
proto = onnx.load(str(path))
names = [n.output[0] for n in proto.graph.node]
layers = [
    P + l if P + l in names else next(n for n in names if l.split("/")[0] in n and n.endswith(l.split("/")[-1]))
    for l in layers
]
for l in layers:
    proto.graph.output.append(helper.make_tensor_value_info(l, TensorProto.FLOAT, None))
sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
m = Model(path)
prep = m.info.preprocessing
t = m.info.temperature


def feats(paths):
    out = {l: [] for l in layers}
    lg = []
    for i in range(0, len(paths), 64):
        x = normalise(np.stack([load_for_model(p, m.input_size, prep) for p in paths[i : i + 64]]), prep)
        r = sess.run(["logits"] + layers, {m.input_name: x})
        lg.append(r[0])
        for l, a in zip(layers, r[1:]):
            ax = (1, 2) if a.shape[1] == a.shape[2] else (2, 3)
            out[l].append(np.concatenate([a.mean(ax), a.std(ax)], 1))
    return {l: np.concatenate(v).astype(np.float64) for l, v in out.items()}, np.concatenate(lg).astype(np.float64)


data = shared_root() / "data"
fit, grp = [], []
for gi, (rel, step) in enumerate((("pbc/train", 1), ("blood-cells/TRAIN", 4))):
    items = list_labelled(data / rel)[::step]
    f, _ = feats([p for p, _ in items])
    fit.append(f)
    grp.append(np.array([y for _, y in items]) + 4 * gi)
grp = np.concatenate(grp)
gen = [p for p, _ in list_labelled(data / "pbc/val") + list_labelled(data / "blood-cells/TEST_SIMPLE")]
oth = list_other(data)[0::2]
gf, gl = feats(gen)
of, ol = feats(oth)
zs_g, zs_o = {}, {}
for l in layers:
    F = np.concatenate([f[l] for f in fit])
    dist = Distance(F, grp)
    dg, do = np.log(dist(gf[l])), np.log(dist(of[l]))
    mu, sd = dg.mean(), dg.std()
    zs_g[l], zs_o[l] = (dg - mu) / sd, (do - mu) / sd
    print(l.split("/")[-2], "AUROC", round(auroc(zs_o[l], zs_g[l]), 3))
cg, co = -confidence(gl, t), -confidence(ol, t)
mu, sd = cg.mean(), cg.std()
cg, co = (cg - mu) / sd, (co - mu) / sd
print("confidence", round(auroc(co, cg), 3))
import itertools

best = []
for k in range(1, len(layers) + 1):
    for combo in itertools.combinations(layers, k):
        for wc in (0.0, 0.25, 0.5):
            sg = wc * cg + (1 - wc) * np.mean([zs_g[l] for l in combo], 0)
            so = wc * co + (1 - wc) * np.mean([zs_o[l] for l in combo], 0)
            best.append((round(auroc(so, sg), 3), wc, [l.split("/")[-2] for l in combo]))
for b in sorted(best, key=lambda b: b[0])[-8:]:
    print(b)
print(
    "ALL five, by w:",
    [
        (
            wc,
            round(
                auroc(
                    wc * co + (1 - wc) * np.mean([zs_o[l] for l in layers], 0),
                    wc * cg + (1 - wc) * np.mean([zs_g[l] for l in layers], 0),
                ),
                3,
            ),
        )
        for wc in (0.0, 0.25, 0.5, 0.75)
    ],
)
