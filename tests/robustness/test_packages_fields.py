"""A consultation of camera fields (issue 28, item 3): request and reply keep each cell's number, box, edge mark
and the field with no white cell; the reply is matched cell by cell (a field's cells share their image's bytes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hv_desktop.core.inference.fields import classify_fields
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.package import read_package, write_package
from hv_desktop.core.io.reply import disagreeing, disagreements, reply_summary
from tests.unit.test_detect import field


def test_a_request_and_its_reply_keep_every_cell_of_the_fields(tmp_path: Path, tiny_model_path: Path) -> None:
    folder = tmp_path / "fields"
    folder.mkdir()
    field(nuclei=[(180, 200), (450, 300)]).save(folder / "a_two.png")
    field(seed=1).save(folder / "b_none.png")
    field(nuclei=[(300, 240), (630, 100)], seed=2).save(folder / "c_edge.png")
    model = Model(tiny_model_path)
    mine = list(classify_fields(sorted(folder.iterdir()), model))
    shape = [(r.path.name, r.cell_index, r.cell_box, r.cell_at_edge, r.no_cell) for r in mine]
    assert len(mine) == 5 and sum(r.no_cell for r in mine) == 1

    def package(results: list[Result], name: str, kind: str = "request", package_id: str = "") -> Path:
        info = model.info
        return write_package(tmp_path / name, results, model.labels, info.name, info.version, {"case_id": "F"}, kind, package_id)

    opened = read_package(package(mine, "req.zip"), tmp_path / "consultant")
    assert [(r.path.name, r.cell_index, r.cell_box, r.cell_at_edge, r.no_cell) for r in opened.results] == shape
    assert [r.cell_id for r in opened.results] == [r.cell_id for r in mine]
    # A field's image travels once and its cells open on the one file: the window shows them as one field.
    assert len({r.path for r in opened.results}) == 3 and len(list((tmp_path / "consultant" / "images").iterdir())) == 3
    assert opened.results[0].path == opened.results[1].path and opened.results[3].path == opened.results[4].path
    # The consultant classes the field's second cell otherwise; the first, and nothing else, they confirm.
    first, second = opened.results[0], opened.results[1]
    first.reviewer_label = first.label
    second.reviewer_label = next(k for k in model.labels if k != second.label)
    back = read_package(package(opened.results, "reply.zip", kind="reply", package_id=opened.package_id), tmp_path / "r")
    assert [(r.path.name, r.cell_index, r.cell_box, r.cell_at_edge, r.no_cell) for r in back.results] == shape
    assert disagreeing(mine, back) == [(1, second.reviewer_label)]
    assert disagreements(mine, back) == [("a_two.png · cell 2", None, second.reviewer_label)]
    summary = reply_summary(mine, back, "F")
    assert "reviewed 2 of 4 cells (2 not reviewed)" in summary  # four cells: the field without one is none


def _rewritten(src: Path, dst: Path, change: Callable[[dict], None]) -> None:
    """``src`` with its case file changed by ``change(case)`` and the manifest made to match (a forged package)."""
    import hashlib
    import json
    import zipfile

    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "MANIFEST.sha256"}
    case = json.loads(members["case.json"])
    change(case)
    members["case.json"] = json.dumps(case).encode()
    lines = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(members.items()))
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in {**members, "MANIFEST.sha256": lines.encode()}.items():
            z.writestr(n, d)


def test_one_image_for_two_cells_is_refused_unless_they_are_cells_of_one_field(tmp_path: Path) -> None:
    import hashlib

    import pytest
    from PIL import Image

    from hv_desktop.core.inference.result import Result
    from hv_desktop.core.io.package import PackageError

    img = tmp_path / "field.png"
    Image.new("RGB", (64, 48), (200, 150, 150)).save(img)
    sha = hashlib.sha256(img.read_bytes()).hexdigest()
    probs = {"eosinophil": 0.1, "lymphocyte": 0.7, "monocyte": 0.1, "neutrophil": 0.1}
    cells = [
        Result(img, "lymphocyte", 0.7, probs, sha256=sha, cell_index=1, cell_box=(1, 2, 30, 31)),
        Result(img, "lymphocyte", 0.7, probs, sha256=sha, cell_index=2, cell_box=(40, 0, 64, 20)),
    ]
    good = write_package(tmp_path / "p.zip", cells, list(probs), "M", "1", {"case_id": "F"})
    assert len(read_package(good, tmp_path / "ok").results) == 2

    def not_cells(case: dict) -> None:
        for d in case["results"]:
            d.pop("cell_index"), d.pop("cell_box")

    def same_number(case: dict) -> None:
        case["results"][1]["cell_index"] = 1

    def other_bytes(case: dict) -> None:
        case["results"][1]["sha256"] = "0" * 64

    for n, change in enumerate((not_cells, same_number, other_bytes)):
        _rewritten(good, tmp_path / f"bad{n}.zip", change)
        with pytest.raises(PackageError, match="one image for two cells"):
            read_package(tmp_path / f"bad{n}.zip", tmp_path / f"out{n}")
        assert not (tmp_path / f"out{n}").exists()
