"""``hematovision classify --cells all`` with the outputs that were refused before (issue 28, item 3): heatmaps, the
PDF report and ``--case`` work per cell, and ``report --case`` reports a case of camera fields per cell."""

from __future__ import annotations

import csv
import subprocess
import unicodedata
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from hv_desktop.core.inference.fields import cell_square
from hv_desktop.core.storage.archive import CaseArchive
from tests.support.cli import run_module
from tests.unit.test_detect import field


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two white cells; none; one inside and one cut by the right border."""
    folder = tmp_path_factory.mktemp("fields")
    field(nuclei=[(180, 200), (450, 300)]).save(folder / "a_two.png")
    field(seed=1).save(folder / "b_none.png")
    field(nuclei=[(300, 240), (630, 100)], seed=2).save(folder / "c_edge.png")
    return folder


def hv(tmp_path: Path, model: Path, *args: object) -> subprocess.CompletedProcess:
    env = {"HV_DATA_DIR": str(tmp_path / "data"), "QT_QPA_PLATFORM": "offscreen"}
    return run_module("hv_desktop", *args, "--model", model, env=env, timeout=300)


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def pdf_text(path: Path) -> str:
    reader = PdfReader(str(path))
    return " ".join(unicodedata.normalize("NFKC", " ".join(p.extract_text() for p in reader.pages)).split())


def test_heatmaps_with_cells_all_write_one_png_per_cell_of_its_square(
    tmp_path: Path, fields: Path, tiny_model_path: Path
) -> None:
    out, heat = tmp_path / "o.csv", tmp_path / "heat"
    r = hv(tmp_path, tiny_model_path, "classify", fields, "--csv", out, "--cells", "all", "--heatmaps", heat, "-q")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = rows_of(out)
    cells = [row for row in rows if row["cell_index"]]
    assert len(cells) == 4 and len({row["heatmap"] for row in cells}) == 4  # each cell its own file
    assert all(Path(row["heatmap"]).is_file() for row in cells)
    assert [row["heatmap"] for row in rows if not row["cell_index"]] == [""]  # the field with no white cell: none
    two = sorted(p.name.split(".")[2] for p in heat.iterdir() if p.name.startswith("a_two"))
    assert two == ["cell1", "cell2"]
    for row in cells:
        x0_, y0_, x1_, y1_ = (int(row[k]) for k in ("cell_x0", "cell_y0", "cell_x1", "cell_y1"))
        box = (x0_, y0_, x1_, y1_)
        x0, _, x1, _ = cell_square(box)
        with Image.open(row["heatmap"]) as im:
            assert im.size == (x1 - x0, x1 - x0 + 22)  # the cell's square and the legend, not the field


def test_report_with_cells_all_shows_each_cell_and_counts_cells_from_fields(
    tmp_path: Path, fields: Path, tiny_model_path: Path
) -> None:
    out, pdf = tmp_path / "o.csv", tmp_path / "r.pdf"
    r = hv(tmp_path, tiny_model_path, "classify", fields, "--csv", out, "--cells", "all", "--report", pdf, "--case-id", "F-1")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    text = pdf_text(pdf)
    assert "3 cells from 2 fields · 1 edge cell left out · 1 field with no white cell" in text
    assert "cell 1 of 2" in text and "cell 2 of 2" in text and "at edge" in text
    assert "b_none.png" not in text  # a field with no white cell is no cell of the gallery
    assert "Cells classified: 3" in text
    r = hv(
        tmp_path, tiny_model_path, "classify", fields, "--csv", out, "--cells", "all", "--report", pdf, "--edge-cells", "count"
    )
    assert r.returncode == 0, r.stderr
    assert "4 cells from 2 fields · 1 edge cell counted" in pdf_text(pdf)


def test_case_with_cells_all_keeps_every_cell_and_reports_them(tmp_path: Path, fields: Path, tiny_model_path: Path) -> None:
    r = hv(tmp_path, tiny_model_path, "classify", fields, "--csv", tmp_path / "o.csv", "--cells", "all", "--case", "F-2")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "5 cells added (5 in all)" in r.stderr  # four cells and the one row of the field without one
    with CaseArchive.open(tmp_path / "data" / "cases.sqlite") as archive:
        held = archive.load_case("F-2").results
    by_name = sorted((x.path.name, x.cell_index, x.no_cell, x.cell_box is not None) for x in held)
    assert by_name == [
        ("a_two.png", 1, False, True),
        ("a_two.png", 2, False, True),
        ("b_none.png", None, True, False),
        ("c_edge.png", 1, False, True),
        ("c_edge.png", 2, False, True),
    ]
    r = hv(tmp_path, tiny_model_path, "classify", fields, "--csv", tmp_path / "p.csv", "--cells", "all", "--case", "F-2")
    assert r.returncode == 0 and "0 cells added (5 in all; 5 already in it)" in r.stderr, r.stderr
    pdf = tmp_path / "f2.pdf"
    r = hv(tmp_path, tiny_model_path, "report", "--case", "F-2", "--out", pdf, "--heatmaps")
    assert r.returncode == 0, r.stderr
    text = pdf_text(pdf)
    assert "F-2" in text and "3 cells from 2 fields" in text and "cell 2 of 2" in text
    r = hv(tmp_path, tiny_model_path, "report", "--case", "F-2", "--out", pdf, "--edge-cells", "count")
    assert r.returncode == 0 and "4 cells from 2 fields" in pdf_text(pdf), r.stderr
