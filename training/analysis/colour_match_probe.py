"""Zero-label colour matching at the network's input (issue 26; rule: docs/research/rules/colour_match.txt).

    python -m training.analysis.colour_match_probe --model runs/lolo3_no_deepbionet/model.onnx \\
        --reference blood-cells/TRAIN pbc/train --calibrate-on deepbionet/cells@val --measure deepbionet/cells@train

Classifies the measured lab's labelled images with the app's code three ways: as trained, after the app's
zero-label ``calibrate`` (magnification), and after calibrate plus colour matching (each channel of the lab's
crops shifted and scaled to the training labs' mean and spread, folded into the model file's per-channel
normalisation). Prints accuracy, the flagged share and the unflagged cells' accuracy per way. Decides nothing.
For a model that carries a colour reference the app's calibrate matches colours itself: its "calibrated" row is
then calibrate with colours, and "colour_matched" repeats it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import load_for_model
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.colour import Accumulator, ChannelStats, matched, mixture
from hv_desktop.core.inference.metadata import Preprocessing
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from training.analysis.adapt_benchmark import SYNTHETIC, _materialise
from training.colour_reference import evenly
from training.data import CLASSES, list_labelled, shared_root

PER_LAB = 200


def channel_stats(paths: list[Path], prep: Preprocessing, size: tuple[int, int]) -> ChannelStats:
    """Per-channel mean and spread of the crops the model sees (the app's own statistics); unreadable files skipped."""
    acc = Accumulator()
    for p in paths:
        try:
            acc.add(load_for_model(p, size, prep))
        except Exception:  # noqa: BLE001 - a probe skips what it cannot read
            continue
    stats = acc.stats()
    if stats is None:
        raise SystemExit("no image could be read")
    return stats


def scores(model: Model, items: list[tuple[Path, int]]) -> dict:
    got = {r.path: r for r in classify_stream([p for p, _ in items], model, batch_size=32)}
    y = np.asarray([c for _, c in items])
    pred = np.asarray([CLASSES.index(got[p].label) if p in got and got[p].label in CLASSES else -1 for p, _ in items])
    flagged = np.asarray([bool(got[p].needs_review) if p in got else True for p, _ in items])
    ok = pred == y
    return {
        "n": len(items),
        "accuracy": float(ok.mean()),
        "flagged": float(flagged.mean()),
        "unflagged_correct": float(ok[~flagged].mean()) if (~flagged).any() else float("nan"),
        "unflagged_n": int((~flagged).sum()),
    }


def lab_items(spec: str, synthetic: str | None, cache: Path) -> list[tuple[Path, int]]:
    items = list_labelled(shared_root() / "data" / spec)
    if synthetic is None:
        return items
    paths = _materialise(synthetic, [p for p, _ in items], cache)
    return list(zip(paths, [c for _, c in items], strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--reference", nargs="+", required=True, help="the model's training splits (labels unused)")
    ap.add_argument("--calibrate-on", required=True)
    ap.add_argument("--calibrate-every", type=int, default=1)
    ap.add_argument("--measure", required=True)
    ap.add_argument("--synthetic", choices=sorted(SYNTHETIC), help="the lab's images as this synthetic lab")
    ap.add_argument("--cache", type=Path, default=Path("runs/cache/adapt_benchmark"))
    ap.add_argument(
        "--means-only", action="store_true", help="shift each channel's mean, keep its spread (rules/colour_means.txt)"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    data = shared_root() / "data"
    model = Model(args.model)
    size = model.input_size
    ref_stats = [
        channel_stats(evenly([p for p, _ in list_labelled(data / s)], PER_LAB), model.info.preprocessing, size)
        for s in args.reference
    ]
    ref = mixture(ref_stats)  # the app's equal-weight mixture (hv_desktop.core.inference.colour)
    items = lab_items(args.measure, args.synthetic, args.cache)
    cal_paths = [p for p, _ in lab_items(args.calibrate_on, args.synthetic, args.cache)][:: args.calibrate_every]
    out: dict = {
        "model": str(args.model),
        "measure": args.measure,
        "synthetic": args.synthetic,
        "as_trained": scores(model, items),
    }
    cal = calibrate(model, cal_paths, site_name="colour match probe")
    with tempfile.TemporaryDirectory() as tmp:
        site = Model(cal.save(Path(tmp) / "site.onnx", model))
        out["calibrated"] = scores(site, items)
        prep = site.info.preprocessing
        lab = channel_stats(cal_paths, prep, size)
        if (site.info.site_adaptation or {}).get("colour_match"):  # the app's calibrate matched colours itself
            out["colour_matched"] = out["calibrated"]
        else:
            target = ChannelStats(lab.mean, ref.std) if args.means_only else lab  # means only: spread kept
            site.info = dataclasses.replace(site.info, preprocessing=matched(prep, target, ref))
            out["colour_matched"] = scores(site, items)
    out["stats"] = {"reference": ref.to_dict(), "lab": lab.to_dict(), "square": prep.crop_fraction}
    name = f"{args.model.parent.name} -> {args.measure}{' as ' + args.synthetic if args.synthetic else ''}"
    for way in ("as_trained", "calibrated", "colour_matched"):
        s = out[way]
        print(
            f"{name} {way}: accuracy {s['accuracy']:.3f}, flagged {s['flagged']:.3f}, "
            f"unflagged right {s['unflagged_correct']:.3f} (n={s['unflagged_n']}) of {s['n']}"
        )
    print(
        f"  reference mean/sd {np.round(ref.mean, 1)} / {np.round(ref.std, 1)}; "
        f"lab {np.round(lab.mean, 1)} / {np.round(lab.std, 1)}"
    )
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
