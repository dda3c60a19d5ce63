"""The network: augmentation + scaling (training only) around an exportable core.

``build_core`` is what ships: it takes the *normalised* tensor the app makes
((x - 127.5) / 127.5, as stated in the ONNX metadata) and returns the class
logits plus the last feature map, from which class-activation maps are computed.
"""

from __future__ import annotations

from pathlib import Path

import keras

from training.data import CLASSES
from training.weights import load_alpha035_base, load_alpha100_classifier


def build_core(alpha: float, size: int, dropout: float, weights_dir: Path | None) -> keras.Model:
    inp = keras.Input((size, size, 3), name="image")
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None)
    if weights_dir is not None and alpha == 1.0:
        full = load_alpha100_classifier(weights_dir)
        for layer in base.layers:  # same layer names; the classifier's top is simply not copied
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())
    elif weights_dir is not None:
        load_alpha035_base(base, weights_dir)
    # BN frozen in inference mode: stable with small CPU batches, and required
    # for the folded alpha 1.0 weights. Keras 3's fit() does not honour a
    # training=False passed to a nested model (its moving statistics were seen
    # drifting), so the layers themselves are made non-trainable, which in
    # Keras means inference mode; every convolution still learns.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
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
        layers.append(L.RandomGaussianBlur(a["blur_probability"], kernel_size=5, sigma=(0.1, 1.5),
                                           value_range=(0, 255), seed=seed + 8))
    if a.get("grayscale_probability", 0) > 0:
        layers.append(L.RandomGrayscale(a["grayscale_probability"], seed=seed + 9))
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
