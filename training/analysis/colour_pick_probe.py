"""Which colour reference a lab's cells look most typical under (issue 26; rule: docs/research/rules/colour_pick.txt).

    python -m training.analysis.colour_pick_probe --model runs/lolo_nols_no_bccd/R4.onnx \\
        --references pbc/train deepbionet/cells@train --calibrate-on blood-cells/TRAIN --calibrate-every 25 \\
        --measure blood-cells/TEST_SIMPLE blood-cells/TEST

The app's ``calibrate`` sets the lab's square; then each colour candidate is tried on that square: no match, the match
to the model's own reference (the training labs' mixture, what calibrate uses today) and the match to each training
lab's own colours. Per candidate: the median review value (typicality) of the calibrate images, which needs no label,
and on the measured labelled images accuracy, flagged share and the unflagged cells' accuracy. Prints which candidate
PICK-ALL (highest median over ALL the calibrate images) and app 1.10.0's calibrate (the mixture unless the colours
as captured flag clearly fewer of the calibrate images) choose. The rule's PICK takes the median over the images
whose nucleus the ruler measured, as calibrate would; at deepbionet that chose otherwise (rules/colour_pick.txt).
Labels are read only to score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from hv_desktop.core.inference.colour import ChannelStats, matched
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from hv_desktop.core.site.lab_preview import clearly_fewer, preview_model
from hv_desktop.core.site.site_model import AdaptError
from training.analysis.colour_match_probe import PER_LAB, channel_stats, lab_items, scores
from training.colour_reference import evenly
from training.data import list_labelled, shared_root


def candidates(model: Model, references: list[str]) -> dict[str, ChannelStats | None]:
    """name -> the reference a lab's colours are matched to (None: not matched)."""
    data = shared_root() / "data"
    prep, size = model.info.preprocessing, model.input_size
    out: dict[str, ChannelStats | None] = {"none": None}
    own = model.info.colour()
    if own is not None:
        out["mixture"] = own
    for spec in references:
        out[spec] = channel_stats(evenly([p for p, _ in list_labelled(data / spec)], PER_LAB), prep, size)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--references", nargs="+", required=True, help="the model's training splits, one per lab")
    ap.add_argument("--calibrate-on", required=True)
    ap.add_argument("--calibrate-every", type=int, default=1)
    ap.add_argument("--measure", nargs="+", required=True)
    ap.add_argument("--synthetic", help="the lab's images as this synthetic lab (training.analysis.adapt_benchmark)")
    ap.add_argument("--cache", type=Path, default=Path("runs/cache/adapt_benchmark"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    model = Model(args.model)
    refs = candidates(model, args.references)
    cal_paths = [p for p, _ in lab_items(args.calibrate_on, args.synthetic, args.cache)][:: args.calibrate_every]
    measured = {spec: lab_items(spec, args.synthetic, args.cache) for spec in args.measure}
    try:
        cal = calibrate(model, cal_paths, site_name="colour pick probe")
    except AdaptError as exc:  # e.g. a red/blue-swapped lab: nothing is calibrated, nothing to pick
        print(f"{args.model.parent.name} {args.synthetic or ''}: calibrate refused ({exc})")
        return 0
    out: dict = {"model": str(args.model), "synthetic": args.synthetic}
    out["as_trained"] = {spec: scores(model, items) for spec, items in measured.items()}
    with tempfile.TemporaryDirectory() as tmp:
        site = Model(cal.save(Path(tmp) / "site.onnx", model))
        base_prep = model.info.preprocessing
        square = dataclasses.replace(site.info.preprocessing, mean=base_prep.mean, std=base_prep.std)
        lab = channel_stats(cal_paths, square, model.input_size)
        rows = {}
        previews = {}
        for name, ref in refs.items():
            prep = square if ref is None else matched(square, lab, ref)
            site.info = dataclasses.replace(site.info, preprocessing=prep)
            seen = preview_model(site, cal_paths)  # the calibrate images, as calibrate checks them
            previews[name] = seen
            rows[name] = {
                "median_typicality": float("nan") if seen.median_review is None else seen.median_review,
                "calibrate_flagged": seen.flagged / max(1, seen.classified),
                **{spec: scores(site, items) for spec, items in measured.items()},
            }
    out["candidates"] = rows
    # session 15's calibrate (app 1.10.0): the mixture, unless the colours as captured flag clearly fewer
    old = "mixture" in previews and not clearly_fewer(previews["none"], previews["mixture"])
    out["today"] = "mixture" if old else "none"
    out["pick"] = max(rows, key=lambda k: rows[k]["median_typicality"])
    label = f"{args.model.parent.name}{' as ' + args.synthetic if args.synthetic else ''}"
    for spec, s in out["as_trained"].items():
        print(f"{label} as trained {spec}: {s['accuracy']:.3f} / flagged {s['flagged']:.3f}")
    for name, row in rows.items():
        marks = ("  <- PICK-ALL" if name == out["pick"] else "") + ("  <- today" if name == out["today"] else "")
        cells = "; ".join(
            f"{spec} {row[spec]['accuracy']:.3f} / flagged {row[spec]['flagged']:.3f} / unflagged right "
            f"{row[spec]['unflagged_correct']:.3f} (n={row[spec]['unflagged_n']})"
            for spec in args.measure
        )
        print(f"  {name:24s} median typicality {row['median_typicality']:.3f}: {cells}{marks}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
