"""Small but real ONNX classifiers built by the tests themselves (onnx helper API).

The model averages each colour channel and applies a fixed linear layer, so
its answer really depends on the pixels: a red image is "eosinophil", a blue
one "lymphocyte", and so on. Like the shipped model it also emits a class-activation map whose spatial mean is the logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hv_desktop.core.imaging.preprocess import Preprocessing
from hv_desktop.core.inference.metadata import ModelMetadata

LABELS = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def tiny_model(
    path: Path,
    *,
    size: int = 32,
    metadata: dict | None = None,
    labels=LABELS,
    batch: int | str = "N",
    n_outputs: int | None = None,
    drop_metadata: bool = False,
    typicality: bool = False,
) -> Path:
    n_out = n_outputs or len(labels)
    # channel means (RGB, normalised to [-1, 1]) -> logits
    w = np.zeros((3, n_out), np.float32)
    w[0, 0] = 4.0  # red -> class 0
    w[2, 1] = 4.0  # blue -> class 1
    w[1, 2 % n_out] = 4.0  # green -> class 2
    b = np.zeros(n_out, np.float32)
    b[3 % n_out] = 0.5  # neutral grey -> class 3
    k = max(1, size // 8)
    # Like the real model: a spatial class map (cam) whose mean is the logits.
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Transpose", ["pooled"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["nhwc", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["cam"]),
        helper.make_node("ReduceMean", ["cam", "axes"], ["logits"], keepdims=0),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
    ]
    outputs_extra = []
    if typicality:
        # "typical" = bright: sigmoid(8 * (mean of all pixels)), so a black image is atypical
        # whatever its class confidence.
        nodes += [
            helper.make_node("ReduceMean", ["image", "all_axes"], ["brightness"], keepdims=0),
            helper.make_node("Mul", ["brightness", "eight"], ["scaled_brightness"]),
            helper.make_node("Sigmoid", ["scaled_brightness"], ["typicality"]),
        ]
        inits += [
            numpy_helper.from_array(np.array([1, 2, 3], np.int64), "all_axes"),
            numpy_helper.from_array(np.array(8.0, np.float32), "eight"),
        ]
        outputs_extra.append(helper.make_tensor_value_info("typicality", TensorProto.FLOAT, [batch]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, size, size, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, n_out]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, [batch, size // k, size // k, n_out]),
        ]
        + outputs_extra,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    meta = ModelMetadata(
        name="tiny-test",
        version="0.0.1",
        labels=tuple(labels),
        preprocessing=Preprocessing(width=size, height=size),
        temperature=1.0,
        review_threshold=0.5,
        scores_output="logits",
        cam_output="cam",
    ).to_dict()
    if typicality:
        meta["review_output"] = "typicality"
    if metadata:
        meta.update(metadata)
    if not drop_metadata:
        helper.set_model_props(model, {"hematovision": json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
