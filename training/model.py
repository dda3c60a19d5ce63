"""The network: augmentation + scaling (training only) around an exportable core.

``build_core`` is what ships: it takes the *normalised* tensor the app makes
((x - 127.5) / 127.5, as stated in the ONNX metadata) and returns the class
logits plus the last feature map, from which class-activation maps are computed.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import ops

from training.data import CLASSES
from training.weights import load_alpha035_base, load_alpha100_classifier


class InstanceNorm(keras.layers.BatchNormalization):
    """A batch normalisation's learned scale and shift applied to each image's own per-channel statistics
    (IBN-Net's instance normalisation): the image's stain, contrast and camera are normalised away per image.
    Same weights as the layer it replaces, so ImageNet's scale and shift carry over."""

    def call(self, inputs, training=None, mask=None):
        mean, var = ops.moments(inputs, axes=[1, 2], keepdims=True)
        return (inputs - mean) * ops.rsqrt(var + self.epsilon) * self.gamma + self.beta


class LabBatchNorm(keras.layers.BatchNormalization):
    """A batch normalisation that, in training, normalises with each batch's own statistics (every batch one lab's
    images: the "lab_batches" config) and keeps the learned scale and shift (ImageNet's, frozen); at inference it
    uses its moving statistics, which calibrate can re-estimate on a lab's unlabelled images (AdaBN).

    Why (rules/lab_batch_norm.txt): a network trained with frozen statistics has only ever seen every lab normalised
    by ImageNet's, so re-estimating them at a new lab changes what its later layers receive (AdaBN after training
    helped at one lab and hurt at another). Trained per lab, re-estimating at a new lab is what it learned with.
    Same weights as the layer it replaces; exported in inference mode like any batch normalisation."""

    def call(self, inputs, training=None, mask=None):
        if not training:
            return super().call(inputs, training=False, mask=mask)
        mean, var = ops.moments(inputs, axes=[0, 1, 2])
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + ops.cast(mean, self.moving_mean.dtype) * (1 - m))
        self.moving_variance.assign(self.moving_variance * m + ops.cast(var, self.moving_variance.dtype) * (1 - m))
        return (inputs - mean) * ops.rsqrt(var + self.epsilon) * self.gamma + self.beta


def leaf_layers(model) -> list:
    """Every layer of ``model`` that is not itself a model, nested models opened in place, in model order."""
    found, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        if hasattr(layer, "layers"):
            stack = list(layer.layers) + stack
        else:
            found.append(layer)
    return found


def _with_instance_norm(base: keras.Model, until: str) -> keras.Model:
    """``base`` with every batch normalisation up to and including the one named ``until`` made an
    :class:`InstanceNorm` (weights copied)."""
    bns = [layer.name for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if until not in bns:
        raise ValueError(f"instance_norm_until: no batch normalisation named {until!r} in MobileNetV2")
    return _swap_norm(base, InstanceNorm, set(bns[: bns.index(until) + 1]))


def _swap_norm(base: keras.Model, norm: type, swap: set[str]) -> keras.Model:
    """``base`` with the batch normalisations named in ``swap`` made ``norm`` layers (weights copied)."""

    def clone(layer):
        cls = norm if layer.name in swap else layer.__class__
        return cls.from_config(layer.get_config())

    new = keras.models.clone_model(base, clone_function=clone)
    by_name = {layer.name: layer for layer in new.layers}
    for layer in base.layers:
        if layer.weights:
            by_name[layer.name].set_weights(layer.get_weights())
    return new


def build_core(
    alpha: float,
    size: int,
    dropout: float,
    weights_dir: Path | None,
    train_from: str | None = None,
    instance_norm_until: str | None = None,
    lab_batch_norm: bool = False,
) -> keras.Model:
    """The shipped network. ``train_from``: the first MobileNetV2 layer that learns (e.g. "block_13_expand");
    every layer before it keeps its ImageNet weights (a leave-one-lab-out experiment: transfer to the other lab
    is best in the first epochs, before the early layers fit the training lab). ``instance_norm_until``: the
    last batch normalisation made per-image (:class:`InstanceNorm`; docs/research/rules/lolo_ibn.txt).
    ``lab_batch_norm``: every batch normalisation a :class:`LabBatchNorm` (rules/lab_batch_norm.txt)."""
    inp = keras.Input((size, size, 3), name="image")
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None)
    if weights_dir is not None and alpha == 1.0:
        full = load_alpha100_classifier(weights_dir)
        for layer in base.layers:  # same layer names; the classifier's top is simply not copied
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())
    elif weights_dir is not None:
        load_alpha035_base(base, weights_dir)
    if instance_norm_until is not None:
        base = _with_instance_norm(base, instance_norm_until)
    if lab_batch_norm:
        bns = {layer.name for layer in base.layers if type(layer) is keras.layers.BatchNormalization}
        base = _swap_norm(base, LabBatchNorm, bns)
    # BN frozen in inference mode: stable with small CPU batches, and required
    # for the folded alpha 1.0 weights. Keras 3's fit() does not honour a
    # training=False passed to a nested model (its moving statistics were seen
    # drifting), so the layers themselves are made non-trainable, which in
    # Keras means inference mode; every convolution still learns.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    if train_from is not None:
        names = [layer.name for layer in base.layers]
        if train_from not in names:
            raise ValueError(f"train_from: no layer named {train_from!r} in MobileNetV2")
        for layer in base.layers[: names.index(train_from)]:
            layer.trainable = False
    features = base(inp, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    logits = keras.layers.Dense(len(CLASSES), name="logits")(dropped)
    return keras.Model(inp, [logits, features], name="hematovision_core")


def _zoom_range(zoom: float | list[float]) -> tuple[float, float]:
    """A number z means zoom in or out by up to z; [lo, hi] follows Keras (negative zooms in).

    An asymmetric range lets training show cells larger than the source frames them, as another lab's
    higher magnification would (PBC's cells fill ~1.7x more of the square than BCCD's).
    """
    if isinstance(zoom, (int, float)):
        return (-float(zoom), float(zoom))
    lo, hi = (float(v) for v in zoom)
    if not -1 < lo <= hi:
        raise ValueError(f"zoom range must satisfy -1 < lo <= hi, got {zoom}")
    return (lo, hi)


# Ruifrok & Johnston's stain vectors (rows: haematoxylin, eosin, residual), as in skimage.color.rgb2hed.
_RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))


class RandomStain(keras.layers.Layer):
    """Another lab's stain and camera, per image (training only): in optical density the haematoxylin, eosin
    and residual amounts are each scaled by 1 +- ``stain`` and shifted by +- ``stain_shift``; then the
    camera's white balance (per-channel gain 1 +- ``tint``) and gamma (exp +- ``gamma``).

    Why: hue/saturation jitter moves every pixel alike, but a stain changes nuclei and cytoplasm differently,
    and a lamp or camera tints the background; a lab whose background is yellow, or blue-green, was read wrong
    (issue 17). Inputs and outputs are RGB in [0, 255]. Keras layers and keras.ops only (exportable; inactive
    at inference).
    """

    def __init__(
        self, stain: float = 0.25, stain_shift: float = 0.05, tint: float = 0.1, gamma: float = 0.2, seed: int | None = None, **kw
    ):
        super().__init__(**kw)
        import numpy as np

        self.stain, self.stain_shift, self.tint, self.gamma = stain, stain_shift, tint, gamma
        self.seed_gen = keras.random.SeedGenerator(seed)
        m = np.asarray(_RGB_FROM_HED, np.float32)
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        self.rgb_from_hed = m
        self.hed_from_rgb = np.linalg.inv(m).astype(np.float32)

    def call(self, x, training=None):
        if not training:
            return x
        ops = keras.ops
        n = ops.shape(x)[0]
        od = -ops.log(ops.clip(x, 1.0, 255.0) / 255.0)  # optical density, >= 0
        hed = ops.einsum("nhwc,cd->nhwd", od, ops.convert_to_tensor(self.hed_from_rgb))
        scale = 1.0 + keras.random.uniform((n, 1, 1, 3), -self.stain, self.stain, seed=self.seed_gen)
        shift = keras.random.uniform((n, 1, 1, 3), -self.stain_shift, self.stain_shift, seed=self.seed_gen)
        od = ops.einsum("nhwd,dc->nhwc", hed * scale + shift, ops.convert_to_tensor(self.rgb_from_hed))
        rgb = ops.exp(-ops.maximum(od, 0.0))  # in (0, 1]
        gain = 1.0 + keras.random.uniform((n, 1, 1, 3), -self.tint, self.tint, seed=self.seed_gen)
        gam = ops.exp(keras.random.uniform((n, 1, 1, 1), -self.gamma, self.gamma, seed=self.seed_gen))
        return ops.clip(ops.power(ops.clip(rgb * gain, 1e-4, 1.0), gam) * 255.0, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def augmentation(cfg: dict, seed: int) -> list[keras.layers.Layer]:
    """Microscopy-minded augmentation: any orientation, scale, stain and focus changes."""
    a = cfg["augment"]
    L = keras.layers
    layers: list[keras.layers.Layer] = [
        L.RandomFlip("horizontal_and_vertical", seed=seed),
        L.RandomRotation(a["rotation"], fill_mode="reflect", seed=seed + 1),
        L.RandomZoom(_zoom_range(a["zoom"]), fill_mode="reflect", seed=seed + 2),
        L.RandomTranslation(a["translation"], a["translation"], fill_mode="reflect", seed=seed + 3),
        L.RandomBrightness(a["brightness"], value_range=(0, 255), seed=seed + 4),
        L.RandomContrast(a["contrast"], value_range=(0, 255), seed=seed + 5),
        L.RandomHue(a["hue"], value_range=(0, 255), seed=seed + 6),
        L.RandomSaturation(tuple(a["saturation"]), value_range=(0, 255), seed=seed + 7),
    ]
    if a.get("blur_probability", 0) > 0:
        layers.append(
            L.RandomGaussianBlur(a["blur_probability"], kernel_size=5, sigma=(0.1, 1.5), value_range=(0, 255), seed=seed + 8)
        )
    if a.get("grayscale_probability", 0) > 0:
        layers.append(L.RandomGrayscale(a["grayscale_probability"], seed=seed + 9))
    if a.get("stain"):
        st = a["stain"]
        layers.insert(
            4,
            RandomStain(st.get("scale", 0.25), st.get("shift", 0.05), st.get("tint", 0.1), st.get("gamma", 0.2), seed=seed + 10),
        )
    return layers


def build_trainer(core: keras.Model, cfg: dict) -> keras.Model:
    """uint8-range RGB in, logits out; augmentation runs only while training."""
    size = cfg["image_size"]
    raw = keras.Input((size, size, 3), name="rgb")
    x = raw
    for layer in augmentation(cfg, cfg["seed"]):
        x = layer(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(x)
    logits, _ = core(x)
    return keras.Model(raw, logits, name="hematovision_trainer")
