"""Export the trained core to ONNX with everything the app needs in its metadata.

    python -m training.export_onnx --run runs/main --out assets/model/hematovision.onnx

Outputs: ``logits`` (N, 4) and ``cam`` (N, 7, 7, 4), the class-activation map
computed from the last feature map and the classifier weights inside the
graph: ``cam[n, i, j, k] = features[n, i, j, :] . W[:, k] + b[k]``, so the
spatial mean of ``cam`` is exactly ``logits`` (a test checks it) and heatmaps
need onnxruntime alone.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from hv_desktop import __version__ as APP_VERSION
from hv_desktop.core.inference.metadata import METADATA_KEY, ModelError, ModelMetadata
from hv_desktop.core.inference.model import INTENDED_USE

OPSET = 17


def base_metadata(cfg: dict, version: str) -> ModelMetadata:
    from training.data import CLASSES, preprocessing_for

    size = cfg["image_size"]
    prep = preprocessing_for(cfg)
    if prep.crop == "cell":
        resize = (
            f"square of {prep.crop_fraction:g} x the short side centred on the stained nucleus (kept inside "
            "the image), then to width x height, bilinear (antialiased); EXIF orientation applied; alpha "
            "composited on white"
        )
    elif prep.crop == "nucleus":
        resize = (
            f"square of {prep.crop_radii:g} x the stained nucleus's radius of gyration, centred on it (padded with the "
            f"field's background where wider than the image; {prep.crop_fraction:g} x the short side where no nucleus "
            "is measured), then to width x height, bilinear (antialiased); EXIF orientation applied; alpha composited "
            "on white"
        )
    else:
        resize = (
            "whole image to width x height, bilinear (antialiased), aspect not kept; "
            "EXIF orientation applied; alpha composited on white"
        )
    return ModelMetadata(
        name=f"HematoVision MobileNetV2-{cfg['alpha']}-{size}",
        version=version,
        labels=tuple(CLASSES),
        preprocessing=prep,
        preprocessing_notes={"resize": resize},
        output_kind="logits",
        scores_output="logits",
        cam_output="cam",
        temperature=1.0,
        review_threshold=0.5,
        architecture=f"MobileNetV2 alpha {cfg['alpha']}, {size} px, ImageNet init, fine-tuned",
        training_data=dict(cfg["source_weights"]),
        intended_use=INTENDED_USE,
        app_version_at_export=APP_VERSION,
        exported=time.strftime("%Y-%m-%d"),
    )


def export(core, cfg: dict, out_path: Path, metadata: ModelMetadata) -> Path:
    import onnx
    import tensorflow as tf
    import tf2onnx

    size = cfg["image_size"]
    dense = core.get_layer("logits")

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image):
        logits, features = core(image, training=False)
        # Variables (not captured constants) so tf2onnx stores them as initializers.
        cam = tf.einsum("nhwc,ck->nhwk", features, dense.kernel.value) + dense.bias.value
        return {"logits": tf.identity(logits, name="logits"), "cam": tf.identity(cam, name="cam")}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=OPSET)
    # Name the outputs after their meaning, whatever tf2onnx called them.
    rename = {}
    for o in proto.graph.output:
        for want in ("logits", "cam"):
            if want in o.name and o.name != want:
                rename[o.name] = want
    for node in proto.graph.node:
        node.output[:] = [rename.get(x, x) for x in node.output]
        node.input[:] = [rename.get(x, x) for x in node.input]
    for o in proto.graph.output:
        o.name = rename.get(o.name, o.name)
    set_metadata(proto, metadata.with_updates(**add_embedding_output(proto)))
    onnx.checker.check_model(proto)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    os.replace(tmp, out_path)
    return out_path


EMBEDDING = "embedding"


def add_embedding_output(proto) -> dict:
    """Expose the pooled feature vector the classifier reads as an output named ``embedding``, and return the
    metadata that names it and the head's weight and bias initializers: the contract site adaptation
    (hv_desktop.core.site.adapt) relies on to refit the head on a lab's cells without TensorFlow."""
    from onnx import TensorProto, helper

    producers = {o: n for n in proto.graph.node for o in n.output}
    add = producers["logits"]
    node = add
    while node.op_type != "MatMul":
        node = producers[node.input[0]]
    pooled, weight = node.input[0], node.input[1]
    bias = next(i for i in add.input if i != node.output[0]) if add.op_type == "Add" else None
    inits = {i.name for i in proto.graph.initializer}
    if weight not in inits or bias not in inits:
        raise ValueError("the classifier's weight and bias are not initializers; cannot name the head")
    if not any(o.name == EMBEDDING for o in proto.graph.output):
        proto.graph.node.append(helper.make_node("Identity", [pooled], [EMBEDDING], name="output/embedding"))
        proto.graph.output.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["N", None]))
    return {"embedding_output": EMBEDDING, "head": {"weight": weight, "bias": bias}}


def upgrade_contract(path: Path) -> ModelMetadata:
    """Give an already exported model the embedding output and head names (no retraining; same outputs)."""
    import onnx

    proto = onnx.load(str(path))
    meta = read_metadata(proto).with_updates(**add_embedding_output(proto))
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    tmp = path.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return meta


def set_metadata(proto, metadata: ModelMetadata | dict) -> None:
    """Store the metadata in the model (a dict is validated as the app will read it: a ModelError if unusable)."""
    from onnx import helper

    meta = metadata if isinstance(metadata, ModelMetadata) else ModelMetadata.from_dict(metadata, proto.graph.name or "model")
    del proto.metadata_props[:]
    helper.set_model_props(proto, {METADATA_KEY: meta.to_json()})
    proto.producer_name = "hematovision-training"
    proto.doc_string = "HematoVision white-blood-cell classifier. " + INTENDED_USE


def _metadata_text(proto) -> str | None:
    return next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)


def get_metadata(proto) -> dict:
    """The HematoVision metadata of a loaded ONNX model as a plain object ({} when it has none)."""
    text = _metadata_text(proto)
    return json.loads(text) if text is not None else {}


def read_metadata(proto) -> ModelMetadata:
    """The HematoVision metadata of a loaded ONNX model, validated (a ModelError when missing or unusable)."""
    text = _metadata_text(proto)
    if text is None:
        raise ModelError(f"{proto.graph.name or 'the model'} has no '{METADATA_KEY}' metadata")
    return ModelMetadata.from_json(text, proto.graph.name or "model")


def update_metadata(path: Path, updates: dict) -> ModelMetadata:
    """Merge ``updates`` into a saved model's metadata (temperature, threshold, metrics)."""
    import onnx

    proto = onnx.load(str(path))
    meta = read_metadata(proto).with_updates(**updates)
    set_metadata(proto, meta)
    tmp = path.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return meta


def load_core(run: Path, weights: str = "final.weights.h5"):
    from training.model import build_core
    from training.train import load_config

    cfg = load_config(run / "config.json")
    core = build_core(
        cfg["alpha"],
        cfg["image_size"],
        cfg["dropout"],
        None,
        instance_norm_until=cfg.get("instance_norm_until"),
        lab_batch_norm=bool(cfg.get("lab_batch_norm")),
    )
    core.load_weights(run / weights)
    return core, cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/main"))
    ap.add_argument("--weights", default="final.weights.h5")
    ap.add_argument("--out", type=Path, default=Path("assets/model/hematovision.onnx"))
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    ap.add_argument(
        "--add-embedding",
        type=Path,
        metavar="MODEL",
        help="only add the embedding output and head names to an exported model, in place",
    )
    args = ap.parse_args(argv)
    if args.add_embedding:
        meta = upgrade_contract(args.add_embedding)
        print(f"{args.add_embedding}: embedding output '{meta.embedding_output}', head {meta.head}")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    core, cfg = load_core(args.run, args.weights)
    export(core, cfg, args.out, base_metadata(cfg, args.version))
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
