"""Site adaptation: the protobuf rewriter, the head fit, and what `hematovision adapt` refuses (real images: tests/realdata)."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from hv_desktop.core.inference.model import Model, ModelError
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.site.adapt_fit import fit_head
from hv_desktop.core.site.lab_images import read_labelled_csv
from hv_desktop.core.site.site_model import AdaptError
from tests.support.cli import run_hematovision as run

CLASSES = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


# ------------------------------------------------------------------ the protobuf rewriter


def test_onnx_file_round_trips_byte_for_byte_and_edits_load(shipped_model):
    data = shipped_model.read_bytes()
    f = OnnxFile(data)
    assert f.to_bytes() == data
    head = Model(shipped_model).info.head
    w = f.initializer(head["weight"])
    assert w.shape == (1280, 4) and w.dtype == np.float32
    f.set_initializer(head["weight"], np.zeros_like(w))
    f.add_output("review/l0_f")
    sess = ort.InferenceSession(f.to_bytes(), providers=["CPUExecutionProvider"])
    outs = {o.name for o in sess.get_outputs()}
    assert {"logits", "embedding", "typicality", "review/l0_f"} <= outs
    x = np.zeros((1, 224, 224, 3), np.float32)
    logits = sess.run(["logits"], {"image": x})[0]
    bias = f.initializer(head["bias"])
    np.testing.assert_allclose(logits[0], bias, atol=1e-6)  # zero weights: the logits are the bias alone


def test_shipped_model_states_embedding_and_head(shipped_model):
    m = Model(shipped_model)
    assert m.info.embedding_output == "embedding"
    names = {o.name for o in m.session.get_outputs()}
    assert "embedding" in names


# ------------------------------------------------------------------ the fit


def _blobs(n_per: int, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (4, d))
    x = np.concatenate([means[c] + rng.normal(0, 1, (n_per, d)) for c in range(4)])
    y = np.repeat(np.arange(4), n_per)
    return x, y


def test_fit_head_learns_and_pulls_toward_base():
    x, y = _blobs(10)
    w0, b0 = np.zeros((16, 4)), np.zeros(4)
    w, b = fit_head(x, y, w0, b0, ridge=0.01)
    assert np.mean((x @ w + b).argmax(1) == y) == 1.0
    xt, yt = _blobs(50, seed=0)
    assert np.mean((xt @ w + b).argmax(1) == yt) > 0.9
    # a huge pull leaves the head where it was
    w_big, b_big = fit_head(x, y, w0 + 1.0, b0, ridge=1e6)
    assert np.abs(w_big - (w0 + 1.0)).max() < 1e-3


def test_frozen_class_keeps_base_weights():
    x, y = _blobs(10)
    rng = np.random.default_rng(1)
    w0, b0 = rng.normal(size=(16, 4)), rng.normal(size=4)
    w, b = fit_head(x, y, w0, b0, ridge=0.1, frozen=[2])
    np.testing.assert_array_equal(w[:, 2], w0[:, 2])
    assert b[2] == b0[2]
    assert not np.allclose(w[:, 0], w0[:, 0])


def test_bad_inputs_are_one_line(tmp_path, tiny_model_path, shipped_model):
    Image.new("RGB", (40, 40), (200, 100, 200)).save(tmp_path / "a.png")
    no_cols = tmp_path / "nocols.csv"
    no_cols.write_text("file,label\na.png,monocyte\n")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x00garbage\x81")
    few = tmp_path / "few.csv"
    few.write_text("path,reviewer_label\n" + "a.png,monocyte\n" * 3)
    none_known = tmp_path / "other.csv"
    none_known.write_text("path,reviewer_label\na.png,smudge cell\n")
    cases = [
        (("adapt", no_cols, "--out", tmp_path / "o.onnx"), "needs 'path' and 'reviewer_label'"),
        (("adapt", binary, "--out", tmp_path / "o.onnx"), "not a CSV"),
        (("adapt", tmp_path / "absent.csv", "--out", tmp_path / "o.onnx"), "CSV not found"),
        (("adapt", few, "--out", tmp_path / "o.onnx"), "too few reviewed cells"),
        (("adapt", none_known, "--out", tmp_path / "o.onnx"), "none of the 1 reviewed cells"),
        (("adapt", few, "--out", few), "one of the inputs"),
        (("adapt", few, "--out", shipped_model, "--model", shipped_model), "one of the inputs"),
        (("--model", tiny_model_path, "adapt", few, "--out", tmp_path / "o.onnx"), "cannot be adapted"),
    ]
    for args, words in cases:
        r = run(*args, "-q")
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert words in r.stderr, (args, r.stderr)
    assert not (tmp_path / "o.onnx").exists()


def test_wider_square_is_padded_with_background():
    from hv_desktop.core.imaging.preprocess import Preprocessing, model_box, resize_for_model

    im = Image.new("RGB", (100, 80), (230, 220, 210))
    im.paste((120, 40, 160), (40, 30, 60, 50))  # a purple "nucleus" in the middle
    prep = Preprocessing(width=32, height=32, crop="cell", crop_fraction=1.5)
    left, top, right, bottom = model_box(im, prep)
    assert right - left == 120 and left < 0 < right and top < 0  # wider than the image, centred on the cell
    arr = resize_for_model(im, (32, 32), prep)
    assert tuple(arr[0, 0]) == (230, 220, 210)  # padding is the background, not black


def test_metadata_bounds_for_crop_fraction(tmp_path):
    from tests.support.onnx_factory import tiny_model

    ok = tiny_model(
        tmp_path / "ok.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 1.6}}
    )
    assert Model(ok).info.preprocessing.crop_fraction == 1.6
    bad = tiny_model(
        tmp_path / "bad.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 2.5}}
    )
    with pytest.raises(ModelError, match="crop_fraction"):
        Model(bad)


@pytest.mark.skipif(os.name != "posix", reason="FIFOs")
def test_fifo_csv_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    with pytest.raises(AdaptError, match="cannot be read"):
        read_labelled_csv([tmp_path / "labels.csv"])
