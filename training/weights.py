"""ImageNet MobileNetV2 weights from ../shared/weights, with no download.

``keras.applications.MobileNetV2(weights="imagenet")`` fetches from the
internet, which clinic and CI machines do not have, so the two offline files
described in ``../shared/weights/README.md`` are imported here by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TM_FILE = "teachable_machine_mobilenet_v2_0.35_224.h5"
TFLITE_FILE = "mobilenet_v2_1.0_224_ptq_int8.tflite"


def load_alpha035_base(base, weights_dir: Path) -> int:
    """Copy the Teachable Machine file's MobileNetV2 0.35 base into ``base`` by layer name.

    Returns the number of arrays copied; raises if any layer of ``base`` with
    weights has no counterpart in the file (a silent partial load would train
    from random features and look like a bad recipe).
    """
    import h5py

    copied = 0
    with h5py.File(weights_dir / TM_FILE, "r") as f:
        group = f["model_weights/sequential_1"]
        for layer in base.layers:
            if not layer.weights:
                continue
            if layer.name not in group:
                raise KeyError(f"layer {layer.name} missing from {TM_FILE}")
            stored = group[layer.name]
            values = []
            for w in layer.weights:
                short = w.path.split("/")[-1]
                if short == "kernel" and "depthwise_kernel:0" in stored:  # Keras 3 renamed it
                    short = "depthwise_kernel"
                key = f"{short}:0" if f"{short}:0" in stored else short
                arr = np.asarray(stored[key])
                if tuple(arr.shape) != tuple(w.shape):
                    raise ValueError(f"{layer.name}/{short}: file {arr.shape} vs model {tuple(w.shape)}")
                values.append(arr)
            layer.set_weights(values)
            copied += len(values)
    return copied


def load_alpha100_classifier(weights_dir: Path):
    """The full alpha 1.0 ImageNet classifier rebuilt from the int8 TFLite file.

    Convolutions are dequantised per channel and mapped in graph order onto
    ``keras.applications.MobileNetV2(alpha=1.0)``; batch norms become
    pass-through layers carrying the folded bias (they must stay in inference
    mode when fine-tuning).
    """
    import keras
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(weights_dir / TFLITE_FILE))
    interp.allocate_tensors()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    convs = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only op-order API TFLite offers
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w_idx, b_idx = op["inputs"][1], op["inputs"][2]
            convs.append((op["op_name"], _dequantise(interp, details[w_idx]), _dequantise(interp, details[b_idx])))

    model = keras.applications.MobileNetV2(alpha=1.0, include_top=True, weights=None, input_shape=(224, 224, 3))
    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    if len(convs) != len(layers) + 1:
        raise ValueError(f"expected {len(layers) + 1} convolutions in {TFLITE_FILE}, found {len(convs)}")
    eps = 1e-3
    for layer, (_kind, w, b) in zip(layers, convs[:-1], strict=True):
        # One transpose serves both: TFLite OHWI -> Keras HWIO (CONV_2D), and TFLite 1HWC (depth multiplier 1)
        # -> Keras HWC1 (DEPTHWISE_CONV_2D).
        kernel = np.transpose(w, (1, 2, 3, 0))
        layer.set_weights([kernel.astype(np.float32)])
        bn = model.get_layer(_bn_name(layer.name))
        n = b.shape[0]
        bn.epsilon = eps
        bn.set_weights([np.ones(n, np.float32), b.astype(np.float32), np.zeros(n, np.float32), np.full(n, 1.0 - eps, np.float32)])
    _, wc, bc = convs[-1]  # 1x1 conv, 1001 outputs (0 = background)
    dense = model.get_layer("predictions")
    dense.set_weights([wc.reshape(wc.shape[0], -1)[1:].T.astype(np.float32), bc[1:].astype(np.float32)])
    return model


def _bn_name(conv: str) -> str:
    if conv == "Conv1":
        return "bn_Conv1"
    if conv == "Conv_1":
        return "Conv_1_bn"
    return conv + "_BN"


def _dequantise(interp, d) -> np.ndarray:
    raw = interp.get_tensor(d["index"]).astype(np.float32)
    q = d.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), np.float32)
    zeros = np.asarray(q.get("zero_points", []), np.float32)
    if scales.size == 0:
        return raw
    axis = q.get("quantized_dimension", 0)
    shape = [1] * raw.ndim
    if scales.size > 1:
        shape[axis] = -1
    return (raw - zeros.reshape(shape)) * scales.reshape(shape)
