"""INT8 quantisation of the shipped model: a usable drop-in file whose stem stays in float."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.support import ROOT

onnx = (
    pytest.importorskip("onnx", reason="the train extra is not installed")
    if os.environ.get("CI") != "true"
    else __import__("onnx")
)


def test_quantised_model_keeps_its_stem_in_float_and_agrees_with_fp32(tmp_path, shared_data, monkeypatch):
    from hv_desktop.core.imaging.preprocess import load_for_model, normalise
    from hv_desktop.core.inference.model import Model
    from training.data import list_labelled
    from training.quantize import quantize

    monkeypatch.setenv("HV_SHARED", str(shared_data.parent))
    src = ROOT / "assets" / "model" / "hematovision.onnx"
    dst = quantize(src, tmp_path / "int8.onnx", per_class=3, float_convs=3)

    graph = onnx.load(str(dst)).graph
    kinds = [n.op_type for n in graph.node]
    convs = [i for i, k in enumerate(kinds) if k == "Conv"]
    first_q = kinds.index("QuantizeLinear")
    assert len(convs) > 3 and first_q > convs[2]  # nothing before the third convolution is quantised
    # ... while the rest of the network is: every later convolution reads dequantised int8 weights
    later = [graph.node[i] for i in convs[3:]]
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in later)
    assert all(producers.get(n.input[1]) != "DequantizeLinear" for n in (graph.node[i] for i in convs[:3]))

    # the typicality head's matrices go back to float16 behind a Cast (quantisation had folded them into float32
    # copies, which made the INT8 file larger than the FP32 one), and the network's weights shrink to 8 bits
    def weight_bytes(path, review: bool) -> int:
        inits = onnx.load(str(path)).graph.initializer
        return sum(onnx.numpy_helper.to_array(i).nbytes for i in inits if i.name.startswith("review/") == review)

    assert weight_bytes(dst, review=True) <= 1.01 * weight_bytes(src, review=True)
    assert weight_bytes(dst, review=False) < 0.5 * weight_bytes(src, review=False)
    assert dst.stat().st_size < src.stat().st_size
    assert any(n.op_type == "Cast" and n.name.startswith("review/") for n in graph.node)

    fp32, int8 = Model(src), Model(dst)
    assert int8.info.version.endswith("-int8") and "first 3 convolutions" in int8.info.extra["quantisation"]
    items = list_labelled(shared_data / "pbc" / "val")[1::20]
    x = normalise(
        np.stack([load_for_model(p, fp32.input_size, fp32.info.preprocessing) for p, _ in items]), fp32.info.preprocessing
    )
    a, b = fp32.probabilities(x), int8.probabilities(x)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
