"""``classify --cells all`` on real camera fields holding two to four white cells (issue 28, step 2): a row per boxed
cell, each row's box on one of the field's boxed cells, with the shipped model and finder.

Measured 2026-12-02 over all 117 deepbionet fields with 2+ white cells (boxes audited as in
training.analysis.detect_eval.AUDIT): 111 give exactly one row per boxed cell, each matched at IoU >= 0.3; the six
others are touching cells the finder merges into one row (225, 417, 430, 436, 583, 585)."""

from __future__ import annotations

import csv
from collections import defaultdict

from tests.support.cli import run_module
from training.analysis.detect_eval import WHITE, audited, match, read_boxes

FLOOR = 0.9  # share of fields whose rows are exactly their boxed cells (measured: 111 / 117 = 0.95)


def test_fields_with_several_white_cells_give_a_row_per_cell(tmp_path, shared_data):
    xmls = sorted((shared_data / "deepbionet" / "fields").glob("*.xml"))
    several = [(x.with_suffix(".jpg"), audited("deepbionet", x.stem, read_boxes(x, WHITE))) for x in xmls]
    several = [(p, b) for p, b in several if len(b) >= 2][::4]
    assert len(several) >= 25
    out = tmp_path / "cells.csv"
    r = run_module("hv_desktop", "classify", *[p for p, _ in several], "--csv", out, "--cells", "all", "-q", timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    with open(out, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_file: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_file[row["file_name"]].append(row)
    exact = []
    for path, boxes in several:
        got = by_file[path.name]
        assert got and all(row["predicted_label"] and not row["error"] for row in got), got  # every cell classified
        found = [tuple(float(row[k]) for k in ("cell_x0", "cell_y0", "cell_x1", "cell_y1")) for row in got]
        assert [row["cell_index"] for row in got] == [str(i + 1) for i in range(len(got))]
        exact.append(len(got) == len(boxes) and len(match(found, boxes)) == len(boxes))  # type: ignore[arg-type]
    assert sum(exact) >= FLOOR * len(several), [p.name for (p, _), ok in zip(several, exact, strict=True) if not ok]
