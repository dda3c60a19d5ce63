"""Measure the white-cell finder (``hv_desktop.core.imaging.detect``, issue 28) on boxed fields: recall and precision.

A found box matches a true white-cell box at IoU >= 0.3, one to one, greedily by IoU. Prints per lab, per number
of white cells in the field (0, 1, 2, 3+; for fields with none, false positives per field), and on simulated labs
made from the lab's own fields: stain shifts (hue, saturation, channel gains), 0.5-2x magnification (the field and
its boxes resized) and JPEG re-compression. Also: how often a true box at the border is found ``at_edge``, and the
finder's time per field.

    python -m training.analysis.detect_eval --lab bccd                      # all conditions
    python -m training.analysis.detect_eval --lab bccd --sims none --grid stain_frac=0.3,0.4 min_area=0.1,0.2
    python -m training.analysis.detect_eval --lab bccd --ruler              # the ruler's ratio to red-cell boxes
    python -m training.analysis.detect_eval --lab deepbionet --errors 20 --draw /tmp/draw

Labs: ``bccd`` = bccd-fields (364 fields), ``deepbionet`` = deepbionet/fields; boxes named ``WBC`` or ``W`` are
white cells. Tune on one lab only; report the other as held out (docs/research/rules/detect.txt).
Columns: P-in = precision not counting unmatched boxes the finder marked at_edge (labs often leave cut cells
unboxed); "N: R/P" = recall/precision in fields holding N white cells ("0": false boxes per field, (fields));
edge = a/b+c: of b matched true boxes at the border, a marked at_edge, and c inner ones marked at_edge;
IoU = median over matched pairs; ms = the finder's time per field.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from hv_desktop.core.imaging import detect
from hv_desktop.core.imaging.detect import FinderParams, FoundCell, find_cells, rbc_diameter

LABS = {"bccd": "bccd-fields", "deepbionet": "deepbionet/fields"}
WHITE = {"WBC", "W"}
IOU = 0.3
Box = tuple[float, float, float, float]
Field = tuple[str, Image.Image, list[Box]]
Sim = Callable[[Image.Image, list[Box]], tuple[Image.Image, list[Box]]]


def read_boxes(xml: Path, names: set[str]) -> list[Box]:
    """Pascal VOC boxes whose name is in ``names``."""
    out = []
    for obj in ET.parse(xml).getroot().iter("object"):
        if (obj.findtext("name") or "").strip() in names:
            bb = obj.find("bndbox")
            assert bb is not None
            x0, y0, x1, y1 = (float(bb.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
            out.append((x0, y0, x1, y1))
    return out


#: Label audit (by eye, 2026-12-02, of the fields where the finder and the boxes disagreed; so it can only raise
#: the finder's figures, and is reported beside the raw figures, never instead of them). "add": a white cell with
#: no WBC box (in deepbionet, every field with no WBC box holds one; five are boxed as RBC), boxed where the finder
#: put it; "drop": a WBC box around a platelet or a second box on the same cell. Not changed (uncertain):
#: deepbionet 225, 417, 430, 436, 583, 585; bccd BloodImage_00171 (a smudged cell).
AUDIT: dict[str, dict[str, list[tuple[str, Box]]]] = {
    "bccd": {
        "BloodImage_00113": [("drop", (257, 430, 288, 457))],  # a platelet
        **{
            f"BloodImage_{n}": [("add", b)]  # white cells cut by the border, unboxed
            for n, b in (
                ("00133", (140, 0, 305, 96)),
                ("00135", (42, 334, 180, 480)),
                ("00178", (202, 0, 404, 153)),
                ("00228", (252, 0, 437, 152)),
                ("00242", (143, 0, 324, 67)),
                ("00327", (0, 174, 136, 366)),
            )
        },
    },
    "deepbionet": {
        **{
            n: [("add", b)]  # whole white cells, unboxed or boxed as RBC (059, 907, 937, 1271, 1282)
            for n, b in (
                ("032", (395, 304, 487, 416)),
                ("035", (325, 21, 419, 135)),
                ("041", (362, 360, 461, 468)),
                ("059", (95, 303, 281, 457)),
                ("066", (67, 340, 205, 470)),
                ("091", (414, 148, 556, 266)),
                ("1003", (137, 35, 279, 208)),
                ("1026", (389, 297, 531, 431)),
                ("1028", (0, 353, 67, 460)),
                ("1271", (183, 133, 328, 269)),
                ("1282", (267, 139, 425, 277)),
                ("1742", (419, 99, 556, 281)),
                ("555", (320, 155, 420, 260)),
                ("812", (192, 220, 322, 350)),
                ("907", (352, 344, 478, 474)),
                ("920", (230, 321, 371, 453)),
                ("937", (243, 129, 353, 222)),
                ("947", (184, 152, 328, 280)),
            )
        },
        "043": [("drop", (393, 329, 496, 428))],  # a second box on one cell
        "260": [("drop", (60, 61, 217, 218))],  # a second box on one cell
        "1420": [("drop", (414, 457, 443, 480)), ("drop", (536, 321, 563, 348))],  # platelets, as below
        "1502": [("drop", (277, 1, 305, 26))],
        "1673": [("drop", (351, 364, 414, 407))],
        "1676": [("drop", (293, 44, 348, 98))],
        "1697": [("drop", (456, 189, 488, 223)), ("drop", (1, 384, 38, 435)), ("drop", (24, 429, 62, 480))],
        "187": [("drop", (1, 180, 39, 223))],
        "204": [("drop", (613, 1, 640, 33))],
    },
}


def audited(lab: str, name: str, boxes: list[Box]) -> list[Box]:
    """``boxes`` with AUDIT's corrections for this field (a dropped box is the true box at IoU >= 0.9 with it)."""
    out = list(boxes)
    for action, box in AUDIT.get(lab, {}).get(name, []):
        if action == "add":
            out.append(tuple(map(float, box)))  # type: ignore[arg-type]
        else:
            hit = [b for b in out if iou(b, tuple(map(float, box))) >= 0.9]  # type: ignore[arg-type]
            assert hit, f"audit: no box {box} in {lab} {name}"
            out.remove(hit[0])
    return out


def load_lab(data: Path, lab: str, limit: int | None = None, audit: bool = False) -> list[Field]:
    files = sorted((data / LABS[lab]).glob("*.xml"))[:limit]
    fields = [(x.stem, Image.open(x.with_suffix(".jpg")).convert("RGB"), read_boxes(x, WHITE)) for x in files]
    return [(n, im, audited(lab, n, b)) for n, im, b in fields] if audit else fields


def iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(found: list[Box], truth: list[Box], thr: float = IOU) -> list[tuple[int, int]]:
    """One-to-one (found index, true index) pairs at IoU >= thr, the best pairs first."""
    pairs = sorted(((iou(f, t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)), reverse=True)
    used_f: set[int] = set()
    used_t: set[int] = set()
    out = []
    for v, i, j in pairs:
        if v < thr:
            break
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


# ---- simulated labs ---------------------------------------------------------------------------------------------


def _gains(r: float, g: float, b: float) -> Sim:
    def sim(im: Image.Image, boxes: list[Box]) -> tuple[Image.Image, list[Box]]:
        a = np.asarray(im, dtype=np.float32) * np.array([r, g, b], np.float32)
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)), boxes

    return sim


def _hue(shift_deg: float) -> Sim:
    def sim(im: Image.Image, boxes: list[Box]) -> tuple[Image.Image, list[Box]]:
        hsv = np.asarray(im.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift_deg * 256 / 360)) % 256
        return Image.fromarray(hsv, "HSV").convert("RGB"), boxes

    return sim


def _saturation(factor: float) -> Sim:
    return lambda im, boxes: (ImageEnhance.Color(im).enhance(factor), boxes)


def _magnification(s: float) -> Sim:
    def sim(im: Image.Image, boxes: list[Box]) -> tuple[Image.Image, list[Box]]:
        w, h = im.size
        out = im.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
        return out, [(b[0] * s, b[1] * s, b[2] * s, b[3] * s) for b in boxes]

    return sim


def _jpeg(quality: int) -> Sim:
    def sim(im: Image.Image, boxes: list[Box]) -> tuple[Image.Image, list[Box]]:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf).convert("RGB"), boxes

    return sim


SIMS: dict[str, Sim | None] = {
    "as captured": None,
    "hue +15deg": _hue(15),
    "hue -15deg": _hue(-15),
    "saturation x0.6": _saturation(0.6),
    "saturation x1.4": _saturation(1.4),
    "gains warm 1.15/1/0.85": _gains(1.15, 1.0, 0.85),
    "gains blue 0.85/1/1.15": _gains(0.85, 1.0, 1.15),
    "gains green 0.9/1.1/0.9": _gains(0.9, 1.1, 0.9),
    "dim x0.7": _gains(0.7, 0.7, 0.7),
    "magnification 0.5x": _magnification(0.5),
    "magnification 0.75x": _magnification(0.75),
    "magnification 1.5x": _magnification(1.5),
    "magnification 2x": _magnification(2.0),
    "jpeg q40": _jpeg(40),
}


# ---- tallies ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    fields: int = 0
    true: int = 0
    found: int = 0
    hit: int = 0
    edge_true: int = 0  # matched true boxes at the border
    edge_marked: int = 0  # ... of which the finder marked at_edge
    inner_marked: int = 0  # matched true boxes inside the image the finder marked at_edge
    inner: int = 0
    edge_unmatched: int = 0  # found boxes at_edge that match no true box (labs often leave cut cells unboxed)
    ious: list[float] = dataclasses.field(default_factory=list)  # of the matched pairs

    def add(self, other: Tally) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def recall(self) -> float:
        return self.hit / self.true if self.true else float("nan")

    def precision(self) -> float:
        return self.hit / self.found if self.found else float("nan")

    def precision_inside(self) -> float:
        """Precision not counting unmatched boxes the finder itself marked at_edge."""
        n = self.found - self.edge_unmatched
        return self.hit / n if n else float("nan")


def score_field(found: list[FoundCell], truth: list[Box], size: tuple[int, int]) -> Tally:
    boxes = [tuple(map(float, c.box)) for c in found]
    pairs = match(boxes, truth)  # type: ignore[arg-type]
    t = Tally(1, len(truth), len(found), len(pairs))
    w, h = size
    matched = {i for i, _ in pairs}
    t.edge_unmatched = sum(1 for i, c in enumerate(found) if c.at_edge and i not in matched)
    for i, j in pairs:
        t.ious.append(iou(boxes[i], truth[j]))  # type: ignore[arg-type]
        x0, y0, x1, y1 = truth[j]
        at_border = x0 <= 2 or y0 <= 2 or x1 >= w - 2 or y1 >= h - 2
        t.edge_true += at_border
        t.edge_marked += at_border and found[i].at_edge
        t.inner += not at_border
        t.inner_marked += (not at_border) and found[i].at_edge
    return t


def bucket(n: int) -> str:
    return "3+" if n >= 3 else str(n)


def evaluate(fields: Iterable[Field], sim: Sim | None, params: FinderParams, errors: list | None = None):
    """Tallies per bucket of white cells in the field ('all', '0', '1', '2', '3+') and seconds spent finding."""
    tallies = {k: Tally() for k in ("all", "0", "1", "2", "3+")}
    spent = 0.0
    for name, im, truth in fields:
        if sim is not None:
            im, truth = sim(im, truth)
        t0 = time.perf_counter()
        found = find_cells(im, params)
        spent += time.perf_counter() - t0
        t = score_field(found, truth, im.size)
        tallies["all"].add(t)
        tallies[bucket(len(truth))].add(t)
        if errors is not None and (t.hit < t.true or t.hit < t.found):
            errors.append((name, im, truth, found, t))
    return tallies, spent


def fmt(v: float) -> str:
    return "  -  " if v != v else f"{100 * v:5.1f}"


HEADER = (
    f"{'condition':28s} {'fields':>6s} {'true':>5s} {'found':>5s} {'recall':>6s} {'prec':>6s} {'P-in':>5s} | "
    f"{'0: FP/field':>11s} | {'1: R/P':>11s} | {'2: R/P':>11s} | {'3+: R/P':>11s} | {'edge':>10s} {'IoU':>4s} {'ms':>5s}"
)


def row(name: str, tallies: dict[str, Tally], spent: float) -> str:
    a = tallies["all"]
    z = tallies["0"]
    fp0 = f"{z.found / z.fields:.2f} ({z.fields})" if z.fields else "-"
    parts = [f"{fmt(tallies[k].recall())}/{fmt(tallies[k].precision())}" for k in ("1", "2", "3+")]
    edge = f"{a.edge_marked}/{a.edge_true}+{a.inner_marked}"
    med = f"{np.median(a.ious):.2f}" if a.ious else "-"
    rates = f"{fmt(a.recall()):>6s} {fmt(a.precision()):>6s} {fmt(a.precision_inside()):>5s}"
    counts = f"{fp0:>11s} | {parts[0]:>11s} | {parts[1]:>11s} | {parts[2]:>11s}"
    ms = 1000 * spent / max(a.fields, 1)
    return f"{name:28s} {a.fields:6d} {a.true:5d} {a.found:5d} {rates} | {counts} | {edge:>10s} {med:>4s} {ms:5.1f}"


def parse_params(items: list[str], base: FinderParams) -> FinderParams:
    kinds = {f.name: f.type for f in dataclasses.fields(FinderParams)}
    values: dict = {}
    for item in items:
        key, _, val = item.partition("=")
        if key not in kinds:
            raise SystemExit(f"unknown parameter {key!r}; known: {', '.join(kinds)}")
        values[key] = int(val) if kinds[key] in ("int", int) else float(val)
    return dataclasses.replace(base, **values)


def grid(items: list[str]) -> list[dict[str, str]]:
    keys, choices = [], []
    for item in items:
        key, _, vals = item.partition("=")
        keys.append(key)
        choices.append(vals.split(","))
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def ruler_ratio(field: Field, data: Path, lab: str) -> float | None:
    """The ruler's lag (diameter / RULER_TO_RBC) over the field's median untruncated red-cell box side (None: fewer
    than three such boxes)."""
    name, im, _ = field
    rbc = read_boxes(data / LABS[lab] / f"{name}.xml", {"RBC"})
    w, h = im.size
    sides = [(b[2] - b[0] + b[3] - b[1]) / 2 for b in rbc if b[0] > 2 and b[1] > 2 and b[2] < w - 2 and b[3] < h - 2]
    if len(sides) < 3:
        return None
    return rbc_diameter(im) / detect.RULER_TO_RBC / float(np.median(sides))


def ruler_report(fields: list[Field], data: Path, lab: str) -> None:
    ratios = [r for f in fields if (r := ruler_ratio(f, data, lab)) is not None]
    q = np.percentile(ratios, [5, 25, 50, 75, 95])
    print(f"{lab}: lag / median red-cell box side over {len(ratios)} fields: 5/25/50/75/95 % = {np.round(q, 3)}")


def crops_report(data: Path, folders: list[str], params: FinderParams) -> None:
    """Single-cell crops from a lab with no boxes (e.g. pbc/val/*: one white cell in the middle of each image;
    pbc/other/platelet: none): how often a box holds the image's centre, and how often some other box is found
    that is not at the edge (an upper bound on false boxes: a crop may hold a second white cell)."""
    print(f"{'folder':28s} {'images':>6s} {'centre found':>12s} {'other inner box':>15s} {'no inner box':>12s} {'boxes/img':>9s}")
    for folder in folders:
        files = sorted(f for f in (data / folder).rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif"))
        centre = other = empty = boxes = 0
        for f in files:
            im = Image.open(f).convert("RGB")
            cx, cy = im.size[0] / 2, im.size[1] / 2
            found = find_cells(im, params)
            hit = [c for c in found if c.box[0] <= cx < c.box[2] and c.box[1] <= cy < c.box[3]]
            inner = [c for c in found if not c.at_edge]
            centre += bool(hit)
            other += any(c not in hit for c in inner)
            empty += not inner
            boxes += len(found)
        n = max(len(files), 1)
        print(f"{folder:28s} {len(files):6d} {fmt(centre / n):>12s} {fmt(other / n):>15s} {fmt(empty / n):>12s} {boxes / n:9.2f}")


def draw(errors: list, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, im, truth, found, _ in errors:
        im = im.copy()
        d = ImageDraw.Draw(im)
        for b in truth:
            d.rectangle(b, outline=(0, 255, 0), width=3)
        for c in found:
            d.rectangle(c.box, outline=(255, 0, 0) if not c.at_edge else (255, 160, 0), width=2)
        im.save(folder / f"{name}.jpg", quality=85)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--lab", choices=sorted(LABS), default="bccd")
    ap.add_argument("--limit", type=int, help="first N fields only")
    ap.add_argument("--audited", action="store_true", help="with the label audit (AUDIT) applied")
    ap.add_argument("--sims", nargs="*", help="simulated labs by name prefix ('none': as captured only)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="finder parameters")
    ap.add_argument("--grid", nargs="*", metavar="KEY=V1,V2", help="every combination, as captured only")
    ap.add_argument("--crops", nargs="*", metavar="FOLDER", help="single-cell crops under --data (see crops_report)")
    ap.add_argument("--ruler", action="store_true", help="the ruler's ratio to the red-cell boxes, then stop")
    ap.add_argument("--ruler-ratio", type=float, help="the ruler's lag / red-cell box to use (detect_fit prints a fit's)")
    ap.add_argument("--errors", type=int, default=0, help="list this many fields with a miss or a false box")
    ap.add_argument("--draw", type=Path, help="draw those fields here (green: true, red: found, orange: at edge)")
    args = ap.parse_args(argv)
    params = parse_params(args.set, FinderParams())
    if args.ruler_ratio:
        detect.RULER_TO_RBC = 1 / args.ruler_ratio  # read by rbc_diameter at call time
    if args.crops:
        crops_report(args.data, args.crops, params)
        return
    fields = load_lab(args.data, args.lab, args.limit, args.audited)
    if args.ruler:
        ruler_report(fields, args.data, args.lab)
        return
    print(f"{args.lab}{' (audited labels)' if args.audited else ''}: {len(fields)} fields; params {params}")
    print(HEADER)
    if args.grid:
        for combo in grid(args.grid):
            p = parse_params([f"{k}={v}" for k, v in combo.items()], params)
            tallies, spent = evaluate(fields, None, p)
            print(row(" ".join(f"{k}={v}" for k, v in combo.items())[:28], tallies, spent))
        return
    names = list(SIMS) if args.sims is None else ["as captured"] + [n for n in SIMS if any(n.startswith(s) for s in args.sims)]
    errors: list = []
    for name in names:
        tallies, spent = evaluate(fields, SIMS[name], params, errors if name == "as captured" else None)
        print(row(name, tallies, spent), flush=True)
    for name, _, truth, found, t in errors[: args.errors]:
        print(f"  {name}: true {len(truth)}, found {len(found)}, matched {t.hit}")
    if args.draw:
        draw(errors, args.draw)


if __name__ == "__main__":
    main()
