"""A blind second look at detect_eval's label AUDIT (issue 28): shuffled, numbered tiles for a reader who does not know
which tiles the audit changed.

    python -m training.analysis.audit_blind --out /tmp/audit_blind --key /tmp/audit_blind_key.json
    python -m training.analysis.audit_blind --score ANSWERS.json --key /tmp/audit_blind_key.json

The audit was made by the person who built the finder, looking only where the finder and the boxes disagreed, so it
can only raise the finder's figures. Here its claims are mixed with the labels' own boxes (white cells, red cells,
platelets, drawn at random with a fixed seed) and shown as numbered tiles, the object framed in yellow and named by
nothing else. A reader answers, per tile, "white" (a nucleated white blood cell), "not" or "unsure"; --score then
reports agreement per group: the audit's additions, its dropped platelets, and the labels' own boxes as controls.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from training.analysis.detect_eval import AUDIT, LABS, WHITE, Box, iou, read_boxes

TILE, COLS, ROWS = 240, 4, 3


def _iou_any(box: Box, others: list[Box]) -> float:
    return max((iou(box, o) for o in others), default=0.0)


def items(data: Path, per_group: int, seed: int) -> list[dict]:
    """The audit's additions and dropped platelets, and ``per_group`` of the labels' own white, red and platelet
    boxes per lab (red and platelet boxes clear of every white box)."""
    rng = random.Random(seed)
    out: list[dict] = []
    for lab, folder in LABS.items():
        for name, changes in AUDIT.get(lab, {}).items():
            for action, box in changes:
                if action == "add":
                    out.append({"lab": lab, "field": name, "box": list(box), "group": "audit added a white cell"})
                elif (box[2] - box[0]) * (box[3] - box[1]) < 4000:  # the dropped platelets; a second box on one
                    # cell is a white cell either way and says nothing here
                    out.append({"lab": lab, "field": name, "box": list(box), "group": "audit dropped (platelet)"})
        kinds = ((WHITE, "label: white"), ({"RBC"}, "label: red"), ({"Platelets", "platelets"}, "label: platelet"))
        pools: dict[str, list[dict]] = {group: [] for _, group in kinds}
        for x in sorted((data / folder).glob("*.xml")):
            whites = read_boxes(x, WHITE)  # each field's labels read once, for all three groups
            for names, group in kinds:
                for b in whites if names is WHITE else read_boxes(x, names):
                    if names is WHITE or _iou_any(b, whites) == 0:
                        pools[group].append({"lab": lab, "field": x.stem, "box": list(b), "group": group})
        for _, group in kinds:
            out += rng.sample(pools[group], min(per_group, len(pools[group])))
    rng.shuffle(out)
    for i, it in enumerate(out, 1):
        it["tile"] = i
    return out


def tile(data: Path, it: dict) -> Image.Image:
    im = Image.open(data / LABS[it["lab"]] / f"{it['field']}.jpg").convert("RGB")
    x0, y0, x1, y1 = it["box"]
    side = max(x1 - x0, y1 - y0, 60) * 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    crop = Image.new("RGB", (int(side), int(side)), (128, 128, 128))
    crop.paste(im, (int(side / 2 - cx), int(side / 2 - cy)))
    d = ImageDraw.Draw(crop)
    ox, oy = side / 2 - cx, side / 2 - cy
    d.rectangle((x0 + ox, y0 + oy, x1 + ox, y1 + oy), outline=(255, 230, 0), width=max(1, int(side / 120)))
    return crop.resize((TILE, TILE), Image.Resampling.BILINEAR)


def sheets(data: Path, its: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()
    per = COLS * ROWS
    for s in range(0, len(its), per):
        sheet = Image.new("RGB", (COLS * TILE, ROWS * TILE), (255, 255, 255))
        d = ImageDraw.Draw(sheet)
        for k, it in enumerate(its[s : s + per]):
            x, y = (k % COLS) * TILE, (k // COLS) * TILE
            sheet.paste(tile(data, it), (x, y))
            d.rectangle((x, y, x + 34, y + 16), fill=(0, 0, 0))
            d.text((x + 3, y + 2), str(it["tile"]), fill=(255, 255, 255), font=font)
        sheet.save(out / f"sheet_{s // per + 1:02d}.png")


def score(key: list[dict], answers: dict[str, str]) -> None:
    groups: dict[str, dict[str, int]] = {}
    for it in key:
        a = answers.get(str(it["tile"]), "missing")
        groups.setdefault(it["group"], {}).setdefault(a, 0)
        groups[it["group"]][a] += 1
    for g, counts in sorted(groups.items()):
        print(f"{g:28s} n={sum(counts.values()):3d}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    for it in key:
        a = answers.get(str(it["tile"]), "missing")
        want = "white" if it["group"] in ("audit added a white cell", "label: white") else "not"
        if a != want:
            print(f"  tile {it['tile']:3d} {it['group']:26s} {it['lab']} {it['field']} {it['box']}: read {a}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--score", type=Path, help="the reader's answers: {tile number: white|not|unsure}")
    ap.add_argument("--per-group", type=int, default=10)
    ap.add_argument("--seed", type=int, default=28)
    args = ap.parse_args(argv)
    if args.score:
        score(json.loads(args.key.read_text()), json.loads(args.score.read_text()))
        return 0
    its = items(args.data, args.per_group, args.seed)
    args.key.write_text(json.dumps(its, indent=1))
    sheets(args.data, its, args.out)
    print(f"{len(its)} tiles in {(len(its) + COLS * ROWS - 1) // (COLS * ROWS)} sheets under {args.out}; key {args.key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
