"""Training module: offline weights, shared preprocessing, and the whole chain on a tiny subset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
tf = (
    pytest.importorskip("tensorflow", reason="the train extra is not installed")
    if os.environ.get("CI") != "true"
    else __import__("tensorflow")
)
pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def weights_dir(shared_data) -> Path:
    return shared_data.parent / "weights"


def test_alpha035_base_equals_file(weights_dir):
    import h5py
    import keras

    from training.weights import TM_FILE, load_alpha035_base

    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=0.35, include_top=False, weights=None)
    n = load_alpha035_base(base, weights_dir)
    assert n == len(base.weights) == 260  # every conv kernel and BN array of the base
    with h5py.File(weights_dir / TM_FILE) as f:
        stored = np.asarray(f["model_weights/sequential_1/block_16_project/kernel:0"])
    assert np.array_equal(base.get_layer("block_16_project").get_weights()[0], stored)


def test_alpha100_classifier_recognises_coral_images(weights_dir):
    from hv_desktop.core.preprocess import load_for_model
    from training.weights import load_alpha100_classifier

    model = load_alpha100_classifier(weights_dir)
    labels = (weights_dir / "imagenet_labels.txt").read_text().splitlines()
    expected = {
        "cat.bmp": "Egyptian cat",
        "dragonfly.bmp": "dragonfly",
        "grace_hopper.bmp": "military uniform",
        "bird.bmp": "chickadee",
        "hot_dog.jpg": "hotdog",
    }
    files = sorted(expected)
    x = np.stack([load_for_model(weights_dir / "coral-test-images" / f, (224, 224)) for f in files])
    probs = model.predict(x.astype(np.float32) / 127.5 - 1.0, verbose=0)
    for f, p in zip(files, probs):
        assert labels[int(p.argmax()) + 1].startswith(expected[f]), f


@pytest.mark.parametrize("crop", [None, {"kind": "cell", "fraction": 0.75}])
def test_training_and_app_preprocess_identically(shared_data, crop):
    """Training's cached arrays and the app's batch decoder give the same tensors, whole image or cell crop."""
    from hv_desktop.core.batch import read_and_decode
    from hv_desktop.core.preprocess import normalise
    from training.data import list_labelled, load_arrays, preprocessing_for, subset

    prep = preprocessing_for({"image_size": 224, "crop": crop})
    items = subset(list_labelled(shared_data / "blood-cells" / "TRAIN"), 10) + subset(
        list_labelled(shared_data / "pbc" / "val"), 10
    )
    x, y = load_arrays(items, 224, prep=prep)
    for (path, label), arr, lab in zip(items, x, y):
        app = read_and_decode(path, (224, 224), prep=prep)
        assert app.error is None and np.array_equal(app.pixels, normalise(arr, prep)), path
        assert label == lab


def test_quick_chain_train_export_classify(tmp_path, shared_data):
    """--quick trains a few steps, exports ONNX, and the app's core classifies with it;
    the ONNX graph matches Keras on 200 real images and its CAM averages to the logits."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", HV_SHARED=str(shared_data.parent))
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "training.train", "--quick", "--out", str(run)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (run / "final.weights.h5").exists() and (run / "state.json").exists()
    onnx_path = tmp_path / "quick.onnx"
    r = subprocess.run(
        [sys.executable, "-m", "training.export_onnx", "--run", str(run), "--out", str(onnx_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]

    from hv_desktop.core.batch import classify_paths
    from hv_desktop.core.model import Model
    from hv_desktop.core.preprocess import load_for_model, normalise
    from training.data import list_labelled
    from training.export_onnx import load_core

    model = Model(onnx_path)
    assert model.labels == ("eosinophil", "lymphocyte", "monocyte", "neutrophil") and model.cam_name == "cam"
    assert model.info.preprocessing.crop == "cell"  # the training config's crop travels in the model file
    folder = shared_data / "blood-cells" / "TEST_SIMPLE"
    results = list(classify_paths([folder], model))
    assert len(results) == 71 and all(r.ok for r in results)

    items = list_labelled(shared_data / "pbc" / "val")[::4][:200]
    x = np.stack([load_for_model(p, (224, 224), model.info.preprocessing) for p, _ in items])
    xn = normalise(x, model.info.preprocessing)
    core, _ = load_core(run)
    keras_logits = np.concatenate([np.asarray(core(xn[i : i + 50], training=False)[0]) for i in range(0, len(xn), 50)])
    keras_p = tf.nn.softmax(keras_logits).numpy()
    onnx_p, cams = model.run(xn, with_cam=True)
    assert len(onnx_p) == 200
    assert np.max(np.abs(onnx_p - keras_p)) <= 1e-4
    margin = np.sort(keras_p, 1)[:, -1] - np.sort(keras_p, 1)[:, -2]
    decided = margin > 1e-4
    assert np.array_equal(onnx_p.argmax(1)[decided], keras_p.argmax(1)[decided])
    logits_from_cam = cams.mean(axis=(1, 2))
    assert np.allclose(logits_from_cam, keras_logits, atol=1e-3)

    # The needs-review typicality output is fitted and written into the graph (the script itself
    # checks graph == formula); the app then flags by it and the classes are unchanged.
    reviewed = tmp_path / "reviewed.onnx"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.review",
            "--model",
            str(onnx_path),
            "--out",
            str(reviewed),
            "--limit",
            "24",
            "--layers",
            "last",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "chosen w=" in r.stdout
    with_review = Model(reviewed)
    assert with_review.review_name == "typicality"
    p2, typ = with_review.assess(xn[:32])
    assert np.allclose(p2, onnx_p[:32], atol=1e-6)
    assert typ.shape == (32,) and np.all((typ >= 0) & (typ <= 1)) and typ.std() > 0

    # The five-layer variant (the default; inner blocks' channel mean/std, the largest one low-rank + isotropic):
    # the script checks its graph against the numpy formula on real images and exits non-zero if they differ.
    five = tmp_path / "five.onnx"
    r = subprocess.run(
        [sys.executable, "-m", "training.review", "--model", str(onnx_path), "--out", str(five), "--limit", "24"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "graph vs numpy typicality" in r.stdout
    with_five = Model(five)
    p5, typ5 = with_five.assess(xn[:32])
    assert np.allclose(p5, onnx_p[:32], atol=1e-6) and typ5.shape == (32,)
    assert len(with_five.info.review_score["layers"]) == 5
    import onnx

    stored = {i.name for i in onnx.load(str(five)).graph.initializer}
    assert "review/l4_inv_rest" in stored and "review/l3_inv_rest" not in stored  # only the 2560-d layer is low-rank


def test_training_resumes_from_its_last_epoch(tmp_path, shared_data):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", HV_SHARED=str(shared_data.parent))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "--quick", "--out", str(run)]
    r1 = subprocess.run(cmd + ["--epochs", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run(cmd + ["--epochs", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "[resume] from epoch 1 (step 2)" in r2.stdout  # optimizer state (step count) restored too
    assert "[epoch 1/2]" not in r2.stdout and "[epoch 2/2]" in r2.stdout
    import json

    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]


def test_early_stopping_waits_for_the_cosine_tail():
    from training.train import should_stop

    cfg = {"epochs": 16, "patience": 6, "early_stop_from": 0.6}  # the tail is epochs 10-16
    assert not should_stop(10, 3, cfg)  # 7 epochs without gain, but only 1 of them in the tail
    assert not should_stop(14, 3, cfg)  # 5 tail epochs without gain
    assert should_stop(15, 3, cfg)  # 6 tail epochs (10-15) without gain
    assert should_stop(14, 3, dict(cfg, patience=5))
    assert not should_stop(16, 12, cfg)  # a tail improvement restarts the count
    assert not should_stop(16, 3, dict(cfg, patience=0))
    assert should_stop(9, 2, dict(cfg, early_stop_from=0.0))  # the old rule when asked for


def test_zoom_range_symmetric_or_asymmetric():
    from training.model import _zoom_range

    assert _zoom_range(0.25) == (-0.25, 0.25)
    assert _zoom_range([-0.5, 0.25]) == (-0.5, 0.25)  # zoom in up to 2x, out up to 1.25x
    for bad in ([0.3, -0.3], [-1.0, 0.2]):
        with pytest.raises(ValueError):
            _zoom_range(bad)


def test_softmax_regression_learns_and_ignores_feature_scale():
    """The refitted head standardises features: rescaling one channel must not change a prediction."""
    from training.head_refit import fit_softmax_regression

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 16))
    y = rng.integers(0, 4, 800)
    x = centres[y] + rng.normal(0, 0.8, (800, 16))
    x[:, 3] *= 1000.0  # one channel with a huge range, as a few ReLU6 channels have
    w, b = fit_softmax_regression(x[:600], y[:600], 4)
    held_out = np.argmax(x[600:] @ w + b, 1)
    assert np.mean(held_out == y[600:]) > 0.9
    x2 = x.copy()
    x2[:, 3] /= 1000.0
    w2, b2 = fit_softmax_regression(x2[:600], y[:600], 4)
    assert np.array_equal(np.argmax(x2[600:] @ w2 + b2, 1), held_out)


def test_head_refit_writes_a_run_whose_logits_are_the_regression(tmp_path, shared_data):
    import json

    from training.export_onnx import load_core
    from training.head_refit import pooled_features, refit
    from training.model import build_core
    from training.train import load_config

    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(ROOT / "training" / "config.json")
    (run / "config.json").write_text(json.dumps(cfg))
    core = build_core(cfg["alpha"], cfg["image_size"], cfg["dropout"], None)
    core.save_weights(run / "final.weights.h5")
    info = refit(run, tmp_path / "refit", limit=6, cache_dir=None)
    assert info["images"] == 12
    new, _ = load_core(tmp_path / "refit")
    w, b = new.get_layer("logits").get_weights()
    assert not np.allclose(w, core.get_layer("logits").get_weights()[0])
    x = np.random.default_rng(1).integers(0, 256, (3, cfg["image_size"], cfg["image_size"], 3)).astype(np.uint8)
    logits, _ = new(x.astype(np.float32) / 127.5 - 1.0, training=False)
    assert np.allclose(np.asarray(logits), pooled_features(new, x) @ w + b, atol=1e-4)
    assert np.allclose(pooled_features(new, x), pooled_features(core, x), atol=1e-5)  # the base is untouched


def test_l2sp_pull_moves_base_kernels_back_toward_their_start():
    import keras

    from training.model import build_core
    from training.train import pull_to_pretrained

    core = build_core(0.35, 96, 0.2, None)
    base = next(layer for layer in core.layers if isinstance(layer, keras.Model))
    kernels = [v for v in base.trainable_variables if len(v.shape) == 4]
    assert len(kernels) >= 50  # every convolution and depthwise kernel of MobileNetV2
    start = [v.numpy().copy() for v in kernels]
    opt = keras.optimizers.SGD()
    pull = pull_to_pretrained(core, lambda step: 0.01, opt, strength=5.0)  # 5 % of the way back per step
    for v in kernels:
        v.assign(v + 1.0)
    pull.on_train_batch_end(0)
    for v, s in zip(kernels, start):
        assert np.allclose(v.numpy() - s, 0.95, atol=1e-5)


@pytest.mark.training
def test_random_stain_changes_colour_only_while_training():
    pytest.importorskip("tensorflow")
    import numpy as np

    from training.model import RandomStain

    rng = np.random.default_rng(0)
    x = rng.uniform(1, 255, (4, 16, 16, 3)).astype(np.float32)
    layer = RandomStain(seed=3)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)  # inactive at inference (the export)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - x).mean() > 1.0  # it does change the colour
    still = np.asarray(RandomStain(0, 0, 0, 0, seed=3)(x, training=True))
    np.testing.assert_allclose(still, x, atol=1e-3)  # zero jitter: the optical-density round trip is exact
