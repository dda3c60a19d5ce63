"""Training recipe pieces that need TensorFlow but no data: early stopping, zoom range, the refitted head, the
L2-SP pull and the stain augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import import_tensorflow

import_tensorflow()  # skips this module where the train extra is missing
pytestmark = pytest.mark.training


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
    for v, s in zip(kernels, start, strict=True):
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


def test_train_from_keeps_every_earlier_layer_at_its_start():
    import keras
    import pytest

    from training.model import build_core

    core = build_core(0.35, 96, 0.2, None, train_from="block_13_expand")
    base = next(layer for layer in core.layers if isinstance(layer, keras.Model))
    learning = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert "block_13_expand" in learning and "Conv_1" in learning
    assert "block_12_expand" not in learning and "Conv1" not in learning
    assert any(v.name.endswith("kernel") for v in core.get_layer("logits").trainable_variables)  # the head learns
    with pytest.raises(ValueError, match="no layer named"):
        build_core(0.35, 96, 0.2, None, train_from="block_99")


def test_instance_norm_until_makes_the_early_normalisations_per_image():
    import keras

    from training.model import InstanceNorm, _with_instance_norm, build_core

    # the swapped layers keep the weights they had (ImageNet's, in a real run)
    plain = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    rng = np.random.default_rng(1)
    for name in ("bn_Conv1", "Conv1", "block_1_expand_BN"):
        layer = plain.get_layer(name)
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    swapped = _with_instance_norm(plain, "bn_Conv1")
    assert isinstance(swapped.get_layer("bn_Conv1"), InstanceNorm)
    assert not isinstance(swapped.get_layer("block_1_expand_BN"), InstanceNorm)
    for name in ("bn_Conv1", "Conv1", "block_1_expand_BN"):
        for a, b in zip(plain.get_layer(name).get_weights(), swapped.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)

    core = build_core(0.35, 96, 0.2, None, instance_norm_until="block_2_project_BN")
    base = next(layer for layer in core.layers if isinstance(layer, keras.Model))
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [isinstance(b, InstanceNorm) for b in bns[:10]] == [True] * 9 + [False]
    assert not any(isinstance(b, InstanceNorm) for b in bns[9:])
    layer = base.get_layer("bn_Conv1")
    x = np.random.default_rng(0).normal(2.0, 3.0, (2, 8, 8, layer.gamma.shape[0])).astype("float32")
    y = np.asarray(layer(x))
    # each image's channels come out with the layer's own shift and scale, whatever the image's level and contrast
    np.testing.assert_allclose(y.mean(axis=(1, 2)), np.broadcast_to(np.asarray(layer.beta), (2, y.shape[-1])), atol=1e-4)
    np.testing.assert_allclose(np.asarray(layer(0.5 * x + 7.0)), y, atol=1e-3)
    with pytest.raises(ValueError, match="no batch normalisation named"):
        build_core(0.35, 96, 0.2, None, instance_norm_until="block_99_BN")


def test_lab_batch_norm_normalises_each_training_batch_by_its_own_statistics():
    import keras

    from training.model import LabBatchNorm, build_core

    core = build_core(0.35, 96, 0.2, None, lab_batch_norm=True)
    base = next(layer for layer in core.layers if isinstance(layer, keras.Model))
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 52 and all(isinstance(b, LabBatchNorm) for b in bns)
    assert not any(b.trainable_weights for b in bns)  # scale and shift stay ImageNet's
    layer = bns[0]
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()[:2]] + layer.get_weights()[2:])
    x = rng.normal(2.0, 3.0, (4, 8, 8, layer.gamma.shape[0])).astype("float32")
    before = np.asarray(layer.moving_mean).copy()
    y = np.asarray(layer(x, training=True))
    # in training each batch comes out with the layer's own shift, whatever the batch's level and contrast
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), np.asarray(layer.beta), atol=1e-4)
    np.testing.assert_allclose(np.asarray(layer(0.5 * x + 7.0, training=True)), y, atol=1e-3, rtol=1e-3)
    assert np.all(np.abs(np.asarray(layer.moving_mean) - before) > 0)  # the moving statistics follow
    # at inference the moving statistics apply: a shifted batch comes out shifted
    shifted = np.asarray(layer(x + 7.0)) - np.asarray(layer(x))
    assert np.abs(shifted).mean() > 1.0


def test_lab_batches_draw_every_batch_from_one_source():
    from training.train import training_stream

    a = (np.zeros((40, 4, 4, 3), np.uint8), np.zeros(40, np.int64))
    b = (np.full((40, 4, 4, 3), 9, np.uint8), np.ones(40, np.int64))
    cfg = {"seed": 1, "batch_size": 8, "lab_batches": True}
    batches = [x.numpy() for x, _ in training_stream([(0.5, *a), (0.5, *b)], cfg, 4).take(20)]
    assert all(len(np.unique(x)) == 1 for x in batches)  # one lab each
    assert {int(x.flat[0]) for x in batches} == {0, 9}  # both labs drawn
    mixed = [x.numpy() for x, _ in training_stream([(0.5, *a), (0.5, *b)], {**cfg, "lab_batches": False}, 4).take(20)]
    assert any(len(np.unique(x)) == 2 for x in mixed)  # cell by cell otherwise
