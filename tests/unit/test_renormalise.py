"""Re-normalising a model on a lab's unlabelled images (training.renormalise; research for issues 16/17)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.imaging.preprocess import normalise, resize_for_model
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from tests.support.images import disc_image
from training import renormalise as rn


def _images(model: Model, n: int, gains=(1.0, 1.0, 1.0), gamma: float = 1.0) -> np.ndarray:
    prep = model.info.preprocessing
    out = []
    for i in range(n):
        im = disc_image(14 + i % 9, centre=(150 + 3 * i % 40, 110 + 2 * i % 30))
        a = np.asarray(im, np.float32) / 255.0
        a = np.clip(a**gamma * np.asarray(gains, np.float32), 0, 1)
        out.append(resize_for_model(Image.fromarray((a * 255 + 0.5).astype(np.uint8)), model.input_size, prep))
    return normalise(np.stack(out), prep)


@pytest.fixture(scope="module")
def shipped(shipped_model):
    return Model(shipped_model)


def test_the_shipped_network_has_52_normalisations_in_graph_order(shipped):
    units = rn.find_units(OnnxFile(shipped.path.read_bytes()))
    assert len(units) == 52 and sum(u.kind == "affine" for u in units) == 17
    assert len({u.output for u in units}) == 52


def test_the_record_round_trips_and_a_damaged_one_is_refused(shipped):
    f = OnnxFile(shipped.path.read_bytes())
    record = rn.source_record(f, _images(shipped, 24), shipped.input_name, 0.2, "discs")
    read = rn.read_record({rn.RECORD_KEY: record}, f)
    assert read is not None and read.reference_flag_rate == 0.2 and len(read.mean) == 52
    assert rn.read_record({}, f) is None
    damaged = [
        {**record, "units": record["units"][1:]},
        {**record, "mean": record["mean"][:-8]},
        {**record, "std": "not base64!"},
        {**record, "reference_flag_rate": 1.5},
        {k: v for k, v in record.items() if k != "channels"},
    ]
    for bad in damaged:
        with pytest.raises(rn.RenormaliseError, match="damaged or belong to another model"):
            rn.read_record({rn.RECORD_KEY: bad}, f)


def test_a_lab_with_another_look_gets_the_training_statistics_back(shipped):
    f = OnnxFile(shipped.path.read_bytes())
    record = rn.read_record({rn.RECORD_KEY: rn.source_record(f, _images(shipped, 24), shipped.input_name, 0.2, "")}, f)
    assert record is not None
    lab = _images(shipped, 24, gains=(1.0, 0.9, 0.6), gamma=1.6)  # yellow and darker
    probe = [0, 25, 51]
    names = [record.units[i].output for i in probe]

    def mismatch(g: OnnxFile) -> list[float]:
        """Per probed layer: how far the lab's channel means and spreads are from the training ones."""
        stats = rn.channel_stats(g, lab, names, shipped.input_name)
        return [
            float(np.mean(np.abs(m - record.mean[i]) + np.abs(sd - record.std[i])) / np.mean(record.std[i] + 1e-3))
            for (m, sd), i in zip(stats, probe, strict=True)
        ]

    before = mismatch(f)
    after = mismatch(rn.renormalise(f, record, lab, shipped.input_name))
    assert min(before) > 0.1
    assert max(after) < 1e-3  # exact up to float32 rounding (a gain of sqrt(ss / st) instead of ss / st leaves 0.003-0.035)


def test_too_few_images_and_the_threshold_rate(shipped):
    f = OnnxFile(shipped.path.read_bytes())
    record = rn.Record([], [], [], 0.2)
    with pytest.raises(rn.RenormaliseError, match=f"at least {rn.MIN_IMAGES}"):
        rn.renormalise(f, record, _images(shipped, 5), shipped.input_name)
    values = np.linspace(0.0, 1.0, 101)
    assert np.mean(values < rn.threshold_at_rate(values, 0.2)) == pytest.approx(0.2, abs=0.011)
