"""Training module: offline weights, shared preprocessing, and the whole chain on a tiny subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import ROOT, import_tensorflow
from tests.support.cli import run_module

tf = import_tensorflow()
pytestmark = pytest.mark.training


def _env(shared_data: Path) -> dict[str, str]:
    """A training subprocess reads ../shared where the tests found it, and TensorFlow keeps quiet."""
    return {"TF_CPP_MIN_LOG_LEVEL": "2", "HV_SHARED": str(shared_data.parent)}


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
    from hv_desktop.core.imaging.preprocess import load_for_model
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
    for f, p in zip(files, probs, strict=True):
        assert labels[int(p.argmax()) + 1].startswith(expected[f]), f


@pytest.mark.parametrize("crop", [None, {"kind": "cell", "fraction": 0.75}])
def test_training_and_app_preprocess_identically(shared_data, crop):
    """Training's cached arrays and the app's batch decoder give the same tensors, whole image or cell crop."""
    from hv_desktop.core.imaging.preprocess import normalise
    from hv_desktop.core.inference.batch import read_and_decode
    from training.data import list_labelled, load_arrays, preprocessing_for, subset

    prep = preprocessing_for({"image_size": 224, "crop": crop})
    items = subset(list_labelled(shared_data / "blood-cells" / "TRAIN"), 10) + subset(
        list_labelled(shared_data / "pbc" / "val"), 10
    )
    x, y = load_arrays(items, 224, prep=prep)
    for (path, label), arr, lab in zip(items, x, y, strict=True):
        app = read_and_decode(path, (224, 224), prep=prep)
        assert app.error is None and np.array_equal(app.pixels, normalise(arr, prep)), path
        assert label == lab


def test_quick_chain_train_export_classify(tmp_path, shared_data):
    """--quick trains a few steps, exports ONNX, and the app's core classifies with it;
    the ONNX graph matches Keras on 200 real images and its CAM averages to the logits."""
    env = _env(shared_data)
    run = tmp_path / "run"
    r = run_module("training.train", "--quick", "--out", run, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (run / "final.weights.h5").exists() and (run / "state.json").exists()
    onnx_path = tmp_path / "quick.onnx"
    r = run_module("training.export_onnx", "--run", run, "--out", onnx_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]

    from hv_desktop.core.imaging.preprocess import load_for_model, normalise
    from hv_desktop.core.inference.batch import classify_paths
    from hv_desktop.core.inference.model import Model
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
    r = run_module("training.review", "--model", onnx_path, "--out", reviewed, "--limit", 24, "--layers", "last", env=env)
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
    r = run_module("training.review", "--model", onnx_path, "--out", five, "--limit", 24, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "graph vs numpy typicality" in r.stdout
    with_five = Model(five)
    p5, typ5 = with_five.assess(xn[:32])
    assert np.allclose(p5, onnx_p[:32], atol=1e-6) and typ5.shape == (32,)
    assert len(with_five.info.review_score["layers"]) == 5
    import onnx

    stored = {i.name for i in onnx.load(str(five)).graph.initializer}
    assert "review/l4_inv_rest" in stored and "review/l3_inv_rest" not in stored  # only the 2560-d layer is low-rank

    # Per lab (each training lab judged on its own) over the five layers and the pooled vector: the script checks
    # graph == formula; site adaptation mirrors the graph in numpy and adds a lab's centres to every lab's metric.
    per_lab = tmp_path / "per_lab.onnx"
    cmd = ["--model", onnx_path, "--out", per_lab, "--limit", 24, "--per-lab", "--layers", "six"]
    r = run_module("training.review", *cmd, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    _assert_adaptation_mirrors_the_review_graph(per_lab, xn[:40], n_parts=2)
    _assert_adaptation_mirrors_the_review_graph(reviewed, xn[:40], n_parts=1)  # the pooled vector alone, too

    # Each lab judged in its own normalisation (rules/own_stats_review.txt): refused without --per-lab or without the
    # training statistics; with them each lab is re-normalised on its own images, and the script's graph-vs-formula
    # check (on the written file re-normalised as calibrate would) fails unless the fit saw the labs that way.
    own = tmp_path / "own.onnx"
    r = run_module("training.review", "--model", onnx_path, "--out", own, "--own-statistics", env=env)
    assert r.returncode != 0 and "needs --per-lab" in r.stderr
    r = run_module("training.review", "--model", onnx_path, "--out", own, "--own-statistics", "--per-lab", env=env)
    assert r.returncode != 0 and "carries no training statistics" in r.stderr + r.stdout
    stats = tmp_path / "stats.onnx"
    cmd = ["--sources", "pbc/train", "blood-cells/TRAIN", "--validation", "blood-cells/TEST_SIMPLE", "--images", 24]
    r = run_module("training.analysis.source_stats", onnx_path, *cmd, "--out", stats, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cmd = ["--model", stats, "--out", own, "--limit", 24, "--per-lab", "--own-statistics", "--layers", "last"]
    r = run_module("training.review", *cmd, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "[own statistics] pbc:" in r.stdout and "[own statistics] blood-cells:" in r.stdout
    assert "graph vs numpy typicality" in r.stdout
    judged = Model(own)
    assert judged.info.review_score["own_statistics"] is True and judged.info.extra.get("renormalisation")


def _assert_adaptation_mirrors_the_review_graph(path: Path, x: np.ndarray, n_parts: int) -> None:
    from hv_desktop.core.inference.model import Model
    from hv_desktop.core.inference.onnx_proto import OnnxFile
    from hv_desktop.core.site.adapt_graph import REVIEW, Probe

    model = Model(path)
    probe = Probe(model)
    rv = probe.review
    assert rv is not None and all(len(p) == n_parts for p in rv.parts)
    f = probe.run(x)
    _, typ = model.assess(x)
    dists = [f[f"{REVIEW}l{i}_dist"] for i in range(rv.layers)]
    assert np.abs(rv.typicality(f[model.scores_name], model.info.temperature, dists) - typ).max() < 1e-4
    # the centres of the first five cells added: the graph's distances of the others are min(base, lab_distance)
    out = OnnxFile(path.read_bytes())
    for i in range(rv.layers):
        rv.add_centres(out, i, f[f"{REVIEW}l{i}_f"][:5])
    added = path.with_name(path.stem + "_added.onnx")
    added.write_bytes(out.to_bytes())
    f2 = Probe(Model(added)).run(x[5:])
    closer = 0
    for i in range(rv.layers):
        base = dists[i][5:]
        want = np.minimum(base, rv.lab_distance(i, f[f"{REVIEW}l{i}_f"][5:], f[f"{REVIEW}l{i}_f"][:5]))
        got = f2[f"{REVIEW}l{i}_dist"]
        assert np.allclose(np.log(got), np.log(want), atol=1e-3)
        closer += int(np.sum(got < base * 0.999))
    assert closer > 0  # the added centres were nearer for some cells (the check above is not vacuous)


def test_training_resumes_from_its_last_epoch(tmp_path, shared_data):
    run = tmp_path / "run"
    cmd = ["training.train", "--quick", "--out", run]
    r1 = run_module(*cmd, "--epochs", 1, env=_env(shared_data))
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = run_module(*cmd, "--epochs", 2, env=_env(shared_data))
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "[resume] from epoch 1 (step 2)" in r2.stdout  # optimizer state (step count) restored too
    assert "[epoch 1/2]" not in r2.stdout and "[epoch 2/2]" in r2.stdout
    import json

    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]


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
