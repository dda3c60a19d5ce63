"""Fit the temperature on validation only (pbc/val + TEST_SIMPLE) and store it in the model, without reading TEST.

    python -m training.analysis.fit_temperature_on_validation MODEL.onnx

training.review needs a temperature; training.evaluate would fit one too but also
scores TEST, which a candidate model must not see before it passes its rule.
"""

import sys
from pathlib import Path

import numpy as np

from hv_desktop.core.model import Model
from training.data import list_labelled, shared_root
from training.evaluate import fit_temperature, predict
from training.export_onnx import update_metadata

path = Path(sys.argv[1])
m = Model(path)
m.info.temperature = 1.0
lp, ys = [], []
for rel in ("pbc/val", "blood-cells/TEST_SIMPLE"):
    items = list_labelled(shared_root() / "data" / rel)
    lp.append(np.log(np.clip(predict(m, [p for p, _ in items]), 1e-12, 1)))
    ys.append(np.array([y for _, y in items]))
t = fit_temperature(np.concatenate(lp), np.concatenate(ys))
update_metadata(path, {"temperature": t})
print("temperature", t)
