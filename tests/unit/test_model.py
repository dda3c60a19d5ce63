from __future__ import annotations

import numpy as np
import onnx
import pytest

from hv_desktop.core.model import Model, ModelError
from hv_desktop.core.preprocess import normalise
from tests.support.onnx_factory import tiny_model


def test_metadata_drives_the_model(tiny_model_path):
    m = Model(tiny_model_path)
    assert m.labels == ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
    assert m.input_size == (32, 32)
    assert m.info.review_threshold == 0.5 and m.cam_name == "cam"
    red = np.zeros((1, 32, 32, 3), np.uint8)
    red[..., 0] = 255
    p = m.probabilities(normalise(red, m.info.preprocessing))
    assert p.shape == (1, 4) and abs(p.sum() - 1) < 1e-5 and p.argmax() == 0


def test_temperature_softens_probabilities(tmp_path):
    sharp = Model(tiny_model(tmp_path / "a.onnx"))
    soft = Model(tiny_model(tmp_path / "b.onnx", metadata={"temperature": 4.0}))
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[..., 0] = 1.0
    assert soft.probabilities(x).max() < sharp.probabilities(x).max()
    assert soft.probabilities(x).argmax() == sharp.probabilities(x).argmax()


def test_fixed_batch_one_model_still_takes_batches(tmp_path):
    m = Model(tiny_model(tmp_path / "b1.onnx", batch=1))
    x = np.zeros((5, 32, 32, 3), np.float32)
    assert m.probabilities(x).shape == (5, 4)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: p, "not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_bytes(b"this is not onnx at all" * 10), p)[1], "not a valid ONNX"),
        (lambda p: tiny_model(p, drop_metadata=True), "not a HematoVision model"),
        (lambda p: tiny_model(p, n_outputs=3), "does not fit 4 labels"),
        (lambda p: tiny_model(p, metadata={"labels": ["a", "a", "b", "c"]}), "distinct"),
        (lambda p: tiny_model(p, metadata={"preprocessing": {"width": 64, "height": 64}}), "does not match"),
        (lambda p: tiny_model(p, metadata={"temperature": -1}), "temperature"),
        (lambda p: tiny_model(p, metadata={"review_threshold": 3}), "review_threshold"),
        (
            lambda p: tiny_model(p, metadata={"preprocessing": {"width": 32, "height": 32, "crop": "segment"}}),
            "newer HematoVision",
        ),
        (
            lambda p: tiny_model(p, metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 4}}),
            "crop_fraction",
        ),
    ],
)
def test_bad_models_are_refused_with_a_message(tmp_path, make, needle):
    path = make(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=needle):
        Model(path)


def test_folder_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="folder"):
        Model(tmp_path)


def test_external_data_reference_is_refused(tmp_path):
    path = tiny_model(tmp_path / "ext.onnx")
    proto = onnx.load(str(path))
    (tmp_path / "secret.bin").write_bytes(np.zeros(12, np.float32).tobytes())
    w = next(t for t in proto.graph.initializer if t.name == "W")
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "secret.bin"), ("offset", "0"), ("length", "48")):
        e = w.external_data.add()
        e.key, e.value = k, v
    onnx.save(proto, str(path))
    with pytest.raises(ModelError):
        Model(path)


def test_thread_policy_leaves_cores_for_decoding(monkeypatch):
    from hv_desktop.core.model import decode_workers, default_threads

    monkeypatch.delenv("HV_THREADS", raising=False)
    assert [(decode_workers(c), default_threads(c)) for c in (1, 2, 4, 8, 16, 32)] == [
        (1, 1),
        (1, 1),
        (2, 2),
        (4, 4),
        (4, 8),
        (4, 8),
    ]
    monkeypatch.setenv("HV_THREADS", "3")
    assert default_threads(2) == 3


def test_typicality_output_drives_needs_review(tmp_path):
    """A model's own typicality output, not its confidence, decides needs-review when the metadata names it."""
    from PIL import Image

    from hv_desktop.core.batch import classify_paths

    model = Model(tiny_model(tmp_path / "t.onnx", typicality=True, metadata={"review_threshold": 0.5}))
    assert model.review_name == "typicality"
    bright_red = np.zeros((2, 32, 32, 3), np.uint8)
    bright_red[0] = (255, 200, 200)  # bright -> typical
    bright_red[1] = (60, 0, 0)  # dark -> atypical, although the class is confident
    p, typ = model.assess(normalise(bright_red, model.info.preprocessing))
    assert p.max(1).min() > 0.5  # confidence alone would flag neither
    assert typ[0] > 0.5 > typ[1]
    for name, colour in (("bright.png", (255, 200, 200)), ("dark.png", (60, 0, 0))):
        Image.new("RGB", (40, 40), colour).save(tmp_path / name)
    results = {r.path.name: r for r in classify_paths([tmp_path / "bright.png", tmp_path / "dark.png"], model)}
    assert not results["bright.png"].needs_review and results["dark.png"].needs_review
    assert results["dark.png"].typicality == pytest.approx(float(typ[1]), abs=1e-3)
    # Without the output the calibrated confidence is the review value.
    plain = Model(tiny_model(tmp_path / "p.onnx"))
    p2, conf = plain.assess(normalise(bright_red, plain.info.preprocessing))
    assert np.allclose(conf, p2.max(1))


def test_missing_typicality_output_is_refused(tmp_path):
    with pytest.raises(ModelError, match="typicality"):
        Model(tiny_model(tmp_path / "m.onnx", metadata={"review_output": "typicality"}))
