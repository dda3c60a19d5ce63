from __future__ import annotations

import numpy as np
import onnx
import pytest

from hv_desktop.core.imaging.preprocess import normalise
from hv_desktop.core.inference.model import Model, ModelError
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
    from hv_desktop.core.inference.model import decode_workers, default_threads

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

    from hv_desktop.core.inference.batch import classify_paths

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


def _shipped_metadata_text(path) -> str:
    proto = onnx.load(str(path), load_external_data=False)
    return next(p.value for p in proto.metadata_props if p.key == "hematovision")


def test_metadata_round_trips_the_shipped_model(shipped_model):
    """The shipped file's metadata reads into ModelMetadata and writes back as the same JSON object."""
    import json

    from hv_desktop.core.inference.metadata import ModelMetadata

    text = _shipped_metadata_text(shipped_model)
    meta = ModelMetadata.from_json(text, shipped_model.name)
    assert meta.to_dict() == json.loads(text)
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert meta.head and meta.embedding_output == "embedding" and meta.review_output == "typicality"
    assert meta.preprocessing.crop == "cell" and meta.preprocessing_notes["resize"].startswith("square of")
    assert Model(shipped_model).info == meta


def test_metadata_keeps_keys_it_does_not_know():
    from hv_desktop.core.inference.metadata import ModelMetadata

    text = (
        '{"labels": ["a", "b"], "future_rule": {"k": [1, 2]}, "name": "n", "version": "9",'
        ' "preprocessing": {"width": 32, "height": 32, "future_crop_hint": "x"}}'
    )
    meta = ModelMetadata.from_json(text, "m.onnx")
    assert meta.extra == {"future_rule": {"k": [1, 2]}}
    out = meta.to_dict()
    assert out["future_rule"] == {"k": [1, 2]} and out["preprocessing"]["future_crop_hint"] == "x"
    assert ModelMetadata.from_json(meta.to_json(), "m.onnx") == meta
    updated = meta.with_updates(temperature=2.0, another="y")
    assert updated.temperature == 2.0 and updated.extra == {"future_rule": {"k": [1, 2]}, "another": "y"}


def test_metadata_defaults_name_from_the_file():
    from hv_desktop.core.imaging.preprocess import NORMALISATION
    from hv_desktop.core.inference.metadata import ModelMetadata

    meta = ModelMetadata.from_json('{"labels": ["a", "b"]}', "lab-model.onnx")
    assert meta.name == "lab-model" and meta.version == "unknown" and meta.temperature == 1.0
    assert meta.preprocessing.mean == (NORMALISATION,) * 3 and meta.preprocessing.std == (NORMALISATION,) * 3


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[1, 2]", "not a JSON object"),
        ('{"labels": ["a"]}', "labels must be a list of 2 to 64 names"),
        ('{"labels": ["a", "a"]}', "distinct"),
        ('{"labels": ["a", "b"], "temperature": "hot"}', "temperature must be a number"),
        ('{"labels": ["a", "b"], "temperature": NaN}', "NaN is not allowed"),
        ('{"labels": ["a", "b"], "preprocessing": {"crop": "ring"}}', "needs a newer HematoVision"),
        ('{"labels": ["a", "b"], "preprocessing": {"crop_fraction": 3}}', "crop_fraction must be a number"),
        ('{"labels": ["a", "b"], "preprocessing": {"std": [1, 0, 1]}}', "std non-zero"),
        ('{"labels": ["a", "b"], "preprocessing": []}', "preprocessing must be an object"),
        ('{"labels": ["a", "b"], "head": "w"}', "head must be an object"),
        ('{"labels": ["a", "b"], "output_kind": "votes"}', "output_kind"),
        ("{" * 100_000, "malformed"),
        ("{not json", "malformed"),
    ],
)
def test_metadata_validation_is_a_model_error_with_a_plain_message(text, needle):
    from hv_desktop.core.inference.metadata import ModelMetadata

    with pytest.raises(ModelError, match="^m.onnx: ") as err:
        ModelMetadata.from_json(text, "m.onnx")
    assert needle in str(err.value)
