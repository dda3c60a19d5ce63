"""Which square to classify each found white cell in (issue 28, step 2): the rule is
docs/research/rules/fields_square.txt, written before this was first run.

With the shipped model, on deepbionet/cells (361 labelled fields; the labelled cell is the single found cell, else
the found cell nearest the field's centre): accuracy of today's whole-image path and of ``core.inference.fields``'s square
at several multiples of the found cell's box; the training view (the model's square / the found cell's box on
blood-cells/TEST_SIMPLE and pbc/val, no labels used); and, at the chosen multiple, rows per field against the WBC
boxes of bccd-fields (no class labels there).

    python -m training.analysis.fields_square [--multiples 1.4 1.8 2.2 2.6 3.0 3.4] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.detect import FoundCell, find_cells
from hv_desktop.core.imaging.preprocess import model_box_and_centre, normalise, open_image
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.fields import cut_cells, field_results
from hv_desktop.core.inference.model import Model, bundled_model_path
from hv_desktop.core.system.runtime import configure_process
from training.analysis.detect_eval import WHITE, read_boxes

MULTIPLES = (1.4, 1.8, 2.2, 2.6, 3.0, 3.4)
TIE = 0.02  # accuracy within this of the best: tied (the rule)


def labelled_fields(data: Path, limit: int | None) -> list[tuple[Path, str]]:
    root = data / "deepbionet" / "cells"
    files = [(f, d.name.lower()) for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.glob("*.jpg"))]
    return files[:: max(1, len(files) // limit)] if limit else files


def nearest_centre(cells: list[FoundCell], size: tuple[int, int]) -> FoundCell | None:
    """The single found cell, else the one whose box centre is nearest ``size``'s centre (None: nothing found)."""
    if not cells:
        return None
    cx, cy = size[0] / 2, size[1] / 2
    return min(cells, key=lambda c: ((c.box[0] + c.box[2]) / 2 - cx) ** 2 + ((c.box[1] + c.box[3]) / 2 - cy) ** 2)


def figures(pred: list[str | None], truth: list[str], flagged: list[bool], labels) -> dict[str, float]:
    ok = [p == t for p, t in zip(pred, truth, strict=True)]
    recall = {lab: float(np.mean([o for o, t in zip(ok, truth, strict=True) if t == lab])) for lab in labels if lab in truth}
    return {
        "acc": float(np.mean(ok)),
        "bal": float(np.mean(list(recall.values()))),
        **{f"r_{lab[:3]}": v for lab, v in recall.items()},
        "flag": float(np.mean(flagged)),
    }


def measure_deepbionet(model: Model, data: Path, multiples, limit: int | None) -> dict[str, dict[str, float]]:
    files = labelled_fields(data, limit)
    truth = [t for _, t in files]
    out: dict[str, dict[str, float]] = {}
    whole = list(classify_stream([f for f, _ in files], model))
    out["whole"] = figures([r.label for r in whole], truth, [r.needs_review for r in whole], model.labels)
    prep = model.info.preprocessing
    chosen: list[tuple[object, FoundCell | None]] = []
    found_n = Counter()
    for f, _ in files:
        im = open_image(f)
        cells = find_cells(im)
        found_n["0" if not cells else "1" if len(cells) == 1 else "2+"] += 1
        chosen.append((im, nearest_centre(cells, im.size)))
    print(f"deepbionet/cells: {len(files)} fields; found cells per field: {dict(found_n)}")
    for m in multiples:
        pred: list[str | None] = []
        flagged: list[bool] = []
        for im, cell in chosen:
            if cell is None:
                pred.append(None)
                flagged.append(True)
                continue
            x, _ = cut_cells(im, [cell], prep, m)  # type: ignore[arg-type]
            p, typical = model.assess(normalise(x, prep))
            pred.append(model.labels[int(np.argmax(p[0]))])
            flagged.append(bool(typical[0] < model.info.review_threshold))
        out[f"cells x{m}"] = figures(pred, truth, flagged, model.labels)
    return out


def training_view(model: Model, data: Path, limit: int | None) -> dict[str, float]:
    """Median (model square side / longer side of the found cell under the square's centre) per training lab."""
    prep = model.info.preprocessing
    view = {}
    for lab, root in (("blood-cells/TEST_SIMPLE", data / "blood-cells" / "TEST_SIMPLE"), ("pbc/val", data / "pbc" / "val")):
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        files = files[:: max(1, len(files) // limit)] if limit else files
        ratios = []
        for f in files:
            im = open_image(f)
            box, centre = model_box_and_centre(im, prep)
            cells = find_cells(im)
            if not cells or centre is None:
                continue
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            c = min(cells, key=lambda c: ((c.box[0] + c.box[2]) / 2 - cx) ** 2 + ((c.box[1] + c.box[3]) / 2 - cy) ** 2)
            ratios.append((box[2] - box[0]) / max(c.box[2] - c.box[0], c.box[3] - c.box[1]))
        view[lab] = statistics.median(ratios)
        print(f"training view {lab}: {len(ratios)}/{len(files)} images with a found cell, median ratio {view[lab]:.2f}")
    return view


def choose(table: dict[str, dict[str, float]], multiples, target: float) -> float:
    best = max(table[f"cells x{m}"]["acc"] for m in multiples)
    tied = [m for m in multiples if table[f"cells x{m}"]["acc"] >= best - TIE - 1e-9]
    return min(tied, key=lambda m: abs(m - target))


def bccd_counts(model: Model, data: Path, multiple: float, limit: int | None) -> None:
    xmls = sorted((data / "bccd-fields").glob("*.xml"))
    xmls = xmls[:: max(1, len(xmls) // limit)] if limit else xmls
    boxes = {x.with_suffix(".jpg"): len(read_boxes(x, WHITE)) for x in xmls}
    pairs: Counter[tuple[int, int]] = Counter()
    classes: Counter[str] = Counter()
    for rows in field_results(list(boxes), model, multiple=multiple):
        n = 0 if rows[0].no_cell or not rows[0].ok else len(rows)
        pairs[(boxes[rows[0].path], n)] += 1
        classes.update(r.label for r in rows if r.label)
    print(f"bccd-fields ({len(boxes)} fields), cells x{multiple}: fields by (WBC boxes, rows classified):")
    for (t, n), k in sorted(pairs.items()):
        print(f"  boxes {t} -> classified {n}: {k}")
    total = sum(classes.values())
    print("  class shares: " + ", ".join(f"{c} {100 * k / total:.1f} %" for c, k in sorted(classes.items())))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2].parent / "shared" / "data")
    ap.add_argument("--multiples", type=float, nargs="+", default=list(MULTIPLES))
    ap.add_argument("--limit", type=int, default=None, help="about this many images per set (a smoke run)")
    args = ap.parse_args(argv)
    configure_process()
    model = Model(bundled_model_path())
    print(f"model {model.info.name} v{model.info.version}")
    table = measure_deepbionet(model, args.data, args.multiples, args.limit)
    keys = list(next(iter(table.values())))
    print(f"{'path':>12s} " + " ".join(f"{k:>6s}" for k in keys))
    for name, row in table.items():
        print(f"{name:>12s} " + " ".join(f"{100 * row[k]:6.1f}" for k in keys))
    view = training_view(model, args.data, args.limit)
    target = statistics.mean(view.values())
    m = choose(table, args.multiples, target)
    print(f"training view (mean of the two labs' medians): {target:.2f}; chosen multiple: {m}")
    bccd_counts(model, args.data, m, args.limit)


if __name__ == "__main__":
    main()
