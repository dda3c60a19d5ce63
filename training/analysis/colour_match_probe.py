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
from hv_desktop.core.inference.metadata import Preprocessing
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from training.analysis.adapt_benchmark import SYNTHETIC, _materialise
from training.data import CLASSES, list_labelled, shared_root

PER_LAB = 200


def channel_stats(paths: list[Path], prep: Preprocessing, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and E[x^2] of the crops the model sees (RGB, 0-255)."""
    s1, s2, n = np.zeros(3), np.zeros(3), 0
    for p in paths:
        try:
            a = load_for_model(p, size, prep).reshape(-1, 3).astype(np.float64)
        except Exception:  # noqa: BLE001 - a probe skips what it cannot read
            continue
        s1 += a.sum(0)
        s2 += (a * a).sum(0)
        n += len(a)
    return s1 / n, s2 / n


def mixture(stats: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of an equal-weight mixture of labs."""
    m1 = np.mean([m for m, _ in stats], axis=0)
    m2 = np.mean([q for _, q in stats], axis=0)
    return m1, np.sqrt(np.maximum(m2 - m1 * m1, 1e-6))


def matched(
    prep: Preprocessing, lab: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray], means_only: bool = False
) -> Preprocessing:
    """The normalisation that maps the lab's channel statistics onto the reference's, then normalises as trained
    (assumes the trained normalisation is the same for the three channels, as MobileNetV2's is)."""
    (mu_l, sd_l), (mu_r, sd_r) = lab, ref
    base_mean, base_std = np.asarray(prep.mean), np.asarray(prep.std)
    ratio = np.ones(3) if means_only else sd_l / sd_r  # means only: each channel shifted, its spread kept
    std = base_std * ratio
    mean = mu_l - (mu_r - base_mean) * ratio
    return dataclasses.replace(prep, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def evenly(paths: list[Path], n: int) -> list[Path]:
    if len(paths) <= n:
        return paths
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in idx]


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
    ref = mixture(ref_stats)
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
        lab_m1, lab_m2 = channel_stats(cal_paths, prep, size)
        lab = (lab_m1, np.sqrt(np.maximum(lab_m2 - lab_m1 * lab_m1, 1e-6)))
        if (site.info.site_adaptation or {}).get("colour_match"):  # the app's calibrate matched colours itself
            out["colour_matched"] = out["calibrated"]
        else:
            site.info = dataclasses.replace(site.info, preprocessing=matched(prep, lab, ref, args.means_only))
            out["colour_matched"] = scores(site, items)
    out["stats"] = {"reference": [v.tolist() for v in ref], "lab": [v.tolist() for v in lab], "square": prep.crop_fraction}
    name = f"{args.model.parent.name} -> {args.measure}{' as ' + args.synthetic if args.synthetic else ''}"
    for way in ("as_trained", "calibrated", "colour_matched"):
        s = out[way]
        print(
            f"{name} {way}: accuracy {s['accuracy']:.3f}, flagged {s['flagged']:.3f}, "
            f"unflagged right {s['unflagged_correct']:.3f} (n={s['unflagged_n']}) of {s['n']}"
        )
    print(f"  reference mean/sd {np.round(ref[0], 1)} / {np.round(ref[1], 1)}; lab {np.round(lab[0], 1)} / {np.round(lab[1], 1)}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
