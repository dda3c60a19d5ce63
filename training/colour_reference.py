"""Write the training labs' colour reference into a model file (what ``calibrate`` matches a lab's colours to).

    python -m training.colour_reference --model assets/model/hematovision.onnx \\
        --sources blood-cells/TRAIN pbc/train --out assets/model/hematovision.onnx

The reference is the per-channel mean and spread of the crops the model sees (its own preprocessing) of up to
200 images of each training split, evenly spaced, each lab weighted equally (hv_desktop.core.inference.colour.mixture;
rule and figures: docs/research/rules/colour_match.txt). Only the metadata changes; the output is written
atomically (the model may be rewritten in place).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model
from hv_desktop.core.inference.colour import Accumulator, ChannelStats, mixture
from hv_desktop.core.inference.metadata import METADATA_KEY, ModelMetadata
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.system.writing import atomic_write_bytes
from training.data import list_labelled, shared_root

PER_LAB = 200


def evenly(paths: list[Path], n: int) -> list[Path]:
    if len(paths) <= n:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def lab_stats(model: Model, paths: list[Path]) -> ChannelStats:
    acc = Accumulator()
    for p in paths:
        acc.add(load_for_model(p, model.input_size, model.info.preprocessing))
    stats = acc.stats()
    if stats is None:
        raise SystemExit("no images read")
    return stats


def reference(model: Model, sources: list[str], per_lab: int = PER_LAB) -> dict:
    data = shared_root() / "data"
    labs = [lab_stats(model, evenly([p for p, _ in list_labelled(data / s)], per_lab)) for s in sources]
    return dict(mixture(labs).to_dict(), sources=list(sources))


def stamped(path: Path, ref: dict, version: str | None = None) -> bytes:
    """The model file's bytes with ``colour_reference`` set in its metadata (and its version, when given: a
    "-int8" suffix the file's version has is kept)."""
    data = path.read_bytes()
    info = Model(path).info
    changes: dict = {"colour_reference": ref}
    if version:
        changes["version"] = version + ("-int8" if info.version.endswith("-int8") else "")
    meta = info.with_updates(**changes)
    out = OnnxFile(data)
    out.set_metadata(METADATA_KEY, meta.to_json())
    blob = out.to_bytes()
    ModelMetadata.from_json(meta.to_json())  # what is written reads back
    return blob


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--sources", nargs="+", required=True, help="the model's training splits, relative to data/")
    ap.add_argument("--also", type=Path, nargs="*", default=[], help="other files of the same model (e.g. INT8) to stamp")
    ap.add_argument("--version", help="the model's new version (the weights are unchanged: a metadata release)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    ref = reference(Model(args.model), args.sources)
    print(f"colour reference: mean {ref['mean']}, std {ref['std']} ({ref['images']} images of {', '.join(args.sources)})")
    atomic_write_bytes(args.out, stamped(args.model, ref, args.version))
    for other in args.also:
        atomic_write_bytes(other, stamped(other, ref, args.version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
