"""Static INT8 quantisation of the exported model, calibrated on training images.

    python -m training.quantize --model assets/model/hematovision.onnx --out assets/model/hematovision-int8.onnx

Calibration uses images from the training folders only (never a test split),
balanced over classes and both sources, prepared by the app's own
preprocessing. The HematoVision metadata is carried over unchanged, so the
INT8 file is a drop-in model (File > Load Model... or --model).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model, normalise
from hv_desktop.core.inference.model import Model
from training.data import list_labelled, shared_root, subset
from training.export_onnx import get_metadata, set_metadata


class _Reader:
    def __init__(self, model: Model, paths: list[Path], batch: int = 16) -> None:
        self.input_name = model.input_name
        self.prep = model.info.preprocessing
        self.size = model.input_size
        self.chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.chunks):
            return None
        chunk = self.chunks[self.i]
        self.i += 1
        x = normalise(np.stack([load_for_model(p, self.size, self.prep) for p in chunk]), self.prep)
        return {self.input_name: x}

    def rewind(self) -> None:
        self.i = 0


#: Training folders calibration images may come from, each with the stride that spreads them over the folder.
STRIDES = {"blood-cells/TRAIN": 7, "pbc/train": 3, "deepbionet/cells@train": 1}
#: The two-lab models' sources (1.x); a model names its own in its metadata's training_data.
CALIBRATION_SOURCES = (("blood-cells/TRAIN", 7), ("pbc/train", 3))


def training_sources(path: Path) -> tuple[tuple[str, int], ...]:
    """The model's own training folders (its metadata's training_data): calibrating on a lab it never trained on
    would fit the 8-bit ranges to images the float model was not built for. Older files: CALIBRATION_SOURCES."""
    labs = list(Model(path).info.training_data or {})
    unknown = [rel for rel in labs if rel not in STRIDES]
    if unknown:
        raise ValueError(f"no calibration stride for training data {', '.join(unknown)}: add it to STRIDES")
    named = [rel for rel in labs if rel in STRIDES]
    return tuple((rel, STRIDES[rel]) for rel in named) or CALIBRATION_SOURCES


def _restore_float16_constants(proto) -> int:
    """Store the typicality head's large matrices as float16 again, each behind a Cast.

    The export keeps them float16 (exact as stored); quantisation's graph optimisation folds the Casts
    into float32 copies, which made the INT8 file larger than the FP32 one. Values that float16 holds
    exactly go back, so the numbers are unchanged. Returns the bytes saved.
    """
    import onnx
    from onnx import helper, numpy_helper

    saved, casts = 0, []
    for init in proto.graph.initializer:
        if not init.name.startswith("review/") or init.data_type != onnx.TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        if a.nbytes < 16384 or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(a.astype(np.float16), name + "_f16"))
        casts.append(helper.make_node("Cast", [name + "_f16"], [name], name=name + "_cast", to=onnx.TensorProto.FLOAT))
        saved += a.nbytes // 2
    for node in reversed(casts):
        proto.graph.node.insert(0, node)
    return saved


def quantize(
    src: Path,
    dst: Path,
    per_class: int = 40,
    per_channel: bool = True,
    float_convs: int = 3,
    sources: tuple[tuple[str, int], ...] | None = None,
) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = Model(src)
    sources = sources or training_sources(src)
    data = shared_root() / "data"
    items = [it for rel, step in sources for it in subset(list_labelled(data / rel)[::step], per_class)]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        # The needs-review typicality (training.review: softmax, whitening, distances, log) stays in float:
        # it is a tiny part of the cost and its small distances would not survive 8 bits.
        graph = onnx.load(str(pre)).graph
        keep_float = [n.name for n in graph.node if n.name.startswith("review/")]
        # The stem (everything up to the first block's projection, the first `float_convs` convolutions) stays
        # in float too: with 3 input channels and 8-16 output channels at 112 px, onnxruntime's QLinearConv is
        # 1.1-2.6x slower than the float kernels (per-node profile in benchmarks/RESULTS.md).
        convs = [i for i, n in enumerate(graph.node) if n.op_type == "Conv"]
        if float_convs and len(convs) >= float_convs:
            keep_float += [n.name for n in graph.node[: convs[float_convs - 1] + 1] if n.name]
        quantize_static(
            str(pre),
            str(out),
            _Reader(model, [p for p, _ in items]),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float,
        )
        proto = onnx.load(str(out))
        _restore_float16_constants(proto)
        info = get_metadata(onnx.load(str(src)))
        info["version"] = info.get("version", "") + "-int8"
        info["name"] = info.get("name", "") + " (INT8)"
        info["quantisation"] = (
            f"static QDQ {'per-channel' if per_channel else 'per-tensor'} int8 weights, uint8 "
            f"activations, MinMax on {len(items)} training images; first {float_convs} convolutions "
            "and the review head in float"
        )
        set_metadata(proto, info)
        dst.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(dst))
    Model(dst)  # refuses a file the app could not use
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--out", type=Path, default=Path("assets/model/hematovision-int8.onnx"))
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor instead of per channel")
    ap.add_argument("--float-convs", type=int, default=3, help="leading convolutions kept in float (0: quantise all)")
    ap.add_argument(
        "--calibrate-on",
        nargs="+",
        choices=sorted(STRIDES),
        help="training folders to calibrate on (default: the model's own training labs; one only: to check INT8 on "
        "a lab it never saw)",
    )
    args = ap.parse_args(argv)
    sources = tuple((rel, STRIDES[rel]) for rel in args.calibrate_on) if args.calibrate_on else training_sources(args.model)
    quantize(args.model, args.out, args.per_class, per_channel=not args.per_tensor, float_convs=args.float_convs, sources=sources)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
