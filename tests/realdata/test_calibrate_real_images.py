"""hematovision calibrate on real images: a lab at twice the magnification is measured as such, and its site model
reads that lab's cells better than the shipped model (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from hv_desktop.core.imaging.preprocess import normalise, open_image, resize_for_model
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from training.magnification import at_magnification


def _accuracy(model: Model, images, labels) -> float:
    prep = model.info.preprocessing
    x = normalise(np.stack([resize_for_model(im, model.input_size, prep) for im in images]), prep)
    return float(np.mean(model.run(x)[0].argmax(1) == labels))


def test_a_lab_at_twice_the_magnification(shared_data, shipped_model, tmp_path):
    rng = np.random.default_rng(0)
    base = Model(shipped_model)
    files = sorted((shared_data / "pbc/val").glob("*/*"))
    files = [files[i] for i in rng.choice(len(files), 48, replace=False)]
    labels = np.array([base.labels.index(f.parent.name.lower()) for f in files])
    lab1, lab2 = tmp_path / "x1", tmp_path / "x2"
    lab1.mkdir()
    lab2.mkdir()
    images2 = []
    for i, f in enumerate(files):
        im = open_image(f).convert("RGB")
        im.save(lab1 / f"{i:02}.png")
        images2.append(at_magnification(im, 2.0, rng))
        images2[-1].save(lab2 / f"{i:02}.png")
    crop1 = calibrate(base, [lab1]).metadata.preprocessing.crop_fraction
    result = calibrate(base, [lab2])
    assert result.metadata.preprocessing.crop_fraction / crop1 == pytest.approx(2.0, rel=0.1)
    result.save(tmp_path / "site.onnx", base)
    site = Model(tmp_path / "site.onnx")
    assert _accuracy(site, images2, labels) >= _accuracy(base, images2, labels) + 0.1
