"""Calibrate with and without re-normalising (docs/research/rules/renorm.txt), scored as `classify --model` would.

    python -m training.analysis.renorm_benchmark --model /tmp/rn/lolo_bccd.onnx --lab pbc
    python -m training.analysis.renorm_benchmark --model /tmp/rn/shipped.onnx --lab pbc --synthetic yellow mag2

The model must carry its training statistics (training.analysis.source_stats). "renormalised" is the calibrated
file re-normalised on up to 128 of the same images at its square, with the threshold at the reference flag rate;
"renormalised_kept" the same with the calibrated file's threshold (rules/renorm_lolo.txt).
The lab's unlabelled images are the 400 of training.analysis.adapt_benchmark's pool (100 per class of its
training split); genuine cells are scored on its validation split, non-target cells (pbc only) on both halves
of pbc/other, the even half deciding.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model, normalise
from hv_desktop.core.inference.metadata import METADATA_KEY
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.site.calibrate import calibrate
from training import renormalise as rn
from training.analysis import adapt_benchmark as bench
from training.data import list_labelled, list_other, shared_root


def lab_sets(
    lab: str, synthetic: str | None, cache: Path, odd_half: bool = True
) -> tuple[list[Path], list[tuple[Path, int]], list[Path], list[Path]]:
    data = shared_root() / "data"
    pool_rel, eval_rel, has_other = bench.LABS[lab]
    pool = [p for p, _ in bench.reviewed_pool(data / pool_rel)]
    ev = list_labelled(data / eval_rel)
    other = list_other(data) if has_other else []
    even, odd = list(other[0::2]), list(other[1::2]) if odd_half else []
    ev_paths = [p for p, _ in ev]
    if synthetic:
        pool, ev_paths = bench._materialise(synthetic, pool, cache), bench._materialise(synthetic, ev_paths, cache)
        even, odd = bench._materialise(synthetic, even, cache), bench._materialise(synthetic, odd, cache) if odd else []
    return pool, list(zip(ev_paths, [y for _, y in ev], strict=True)), even, odd


def score(model: Model, ev: list[tuple[Path, int]], even: list[Path], odd: list[Path]) -> dict:
    out = bench._score(model, [p for p, _ in ev], [y for _, y in ev])
    if even:
        out["other_even_flagged"] = bench._score(model, even, None)["flagged"]
    if odd:
        out["other_odd_flagged"] = bench._score(model, odd, None)["flagged"]
    return {k: round(v, 4) for k, v in out.items()}


def renormalised_file(base: Model, calibrated: Model, pool: list[Path], move_threshold: bool = True) -> bytes:
    """The calibrated file re-normalised on up to rn.MAX_IMAGES of the lab's images at its square (the method of
    rules/renorm.txt: calibrate measured the same images); ``move_threshold=False`` keeps the calibrated file's
    threshold (N1 of rules/renorm_lolo.txt)."""
    f = OnnxFile(calibrated.path.read_bytes())
    record = rn.read_record(base.info.extra, f)
    if record is None:
        raise SystemExit(f"{base.path.name} carries no training statistics (training.analysis.source_stats)")
    prep = calibrated.info.preprocessing
    chosen = pool[:: max(1, -(-len(pool) // rn.MAX_IMAGES))]
    x = normalise(np.stack([load_for_model(p, calibrated.input_size, prep) for p in chosen]), prep)
    out = rn.renormalise(f, record, x, base.input_name)
    values = rn.review_values(out, x, base.input_name, base.review_name)
    meta = calibrated.info
    if values is not None and move_threshold:
        meta = meta.with_updates(review_threshold=rn.threshold_at_rate(values, record.reference_flag_rate))
    out.set_metadata(METADATA_KEY, meta.to_json())
    return out.to_bytes()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lab", choices=sorted(bench.LABS), required=True)
    ap.add_argument("--synthetic", nargs="*", default=[None])
    ap.add_argument("--cache", default="runs/synthetic_labs")
    ap.add_argument("--save", help="keep the re-normalised file here (one lab only)")
    ap.add_argument(
        "--no-odd-half", action="store_true", help="do not score the odd (held-out) half of pbc/other (decisions on validation)"
    )
    ap.add_argument(
        "--no-other", action="store_true", help="score no non-target cell (a network trained without PBC: record only)"
    )
    args = ap.parse_args(argv)
    base = Model(args.model)
    for syn in args.synthetic:
        pool, ev, even, odd = lab_sets(args.lab, syn, Path(args.cache), not args.no_odd_half)
        if args.no_other:
            even, odd = [], []
        row: dict = {"model": args.model, "lab": args.lab, "synthetic": syn, "base": score(base, ev, even, odd)}
        with tempfile.TemporaryDirectory() as tmp:
            calibrated = Path(tmp) / "calibrated.onnx"
            calibrate(base, pool, site_name="bench").save(calibrated, base)
            m = Model(calibrated)
            row["calibrated"] = {"crop": round(m.info.preprocessing.crop_fraction, 3), **score(m, ev, even, odd)}
            renormalised = Path(tmp) / "renormalised.onnx"
            renormalised.write_bytes(renormalised_file(base, m, pool))
            m = Model(renormalised)
            row["renormalised"] = {"threshold": round(m.info.review_threshold, 4), **score(m, ev, even, odd)}
            kept = Path(tmp) / "renormalised_kept.onnx"
            kept.write_bytes(renormalised_file(base, Model(calibrated), pool, move_threshold=False))
            m = Model(kept)
            row["renormalised_kept"] = {"threshold": round(m.info.review_threshold, 4), **score(m, ev, even, odd)}
            if args.save:
                Path(args.save).write_bytes(renormalised.read_bytes())
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
