"""The lab's reviews as they accumulate in the archive, across cases and sessions (issue 27 item 2). No Qt."""

from __future__ import annotations

from pathlib import Path

from hv_desktop.core.cases.review import CaseInfo, SignOff
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.storage.archive_reviews import ReviewedCell, merged, reviewed_cells, reviewed_counts
from tests.unit.test_archive import cell


def test_reviews_of_every_case_count_signed_or_not_newest_case_first(tmp_path):
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        a.upsert_case(CaseInfo("old", "Ann", ""), created_at="2026-11-20T08:00:00+01:00")
        a.upsert_case(CaseInfo("new", "Ann", ""), created_at="2026-11-26T08:00:00+01:00")
        old = a.add_cells("old", [cell("o1.jpg"), cell("o2.jpg"), cell("o3.jpg", error="empty file")])
        new = a.add_cells("new", [cell("n1.jpg", "lymphocyte"), cell("n2.jpg")])
        a.set_review(old[0], "neutrophil")
        a.set_review(old[1], "monocyte")
        a.sign_off("old", SignOff("Ann", "2026-11-20T12:00"))
        a.set_review(new[0], "lymphocyte")
    with CaseArchive.open(tmp_path / "a.sqlite") as again:  # another day, another connection
        assert reviewed_counts(again) == {"neutrophil": 1, "monocyte": 1, "lymphocyte": 1}
        cells = reviewed_cells(again)
        assert [(c.path.name, c.label) for c in cells] == [
            ("n1.jpg", "lymphocyte"),
            ("o1.jpg", "neutrophil"),
            ("o2.jpg", "monocyte"),
        ]
        assert [c.path.name for c in reviewed_cells(again, limit=1)] == ["n1.jpg"]


def test_another_labs_cells_unpacked_from_a_package_do_not_count(tmp_path):
    packages = tmp_path / "data" / "consultations"
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        a.upsert_case(CaseInfo("ours", "Ann", ""), created_at="2026-11-20T08:00:00+01:00")
        a.upsert_case(CaseInfo("theirs", "Ann", ""), created_at="2026-11-21T08:00:00+01:00")
        ours = a.add_cells("ours", [cell("o1.jpg")])
        theirs = a.add_cells("theirs", [Result(packages / "pkg-1" / "t1.jpg", label="monocyte")])
        a.set_review(ours[0], "neutrophil")
        a.set_review(theirs[0], "monocyte")
        assert reviewed_counts(a) == {"neutrophil": 1, "monocyte": 1}
        assert reviewed_counts(a, leave_out=packages) == {"neutrophil": 1}
        assert [c.path.name for c in reviewed_cells(a, leave_out=packages)] == ["o1.jpg"]
        assert reviewed_counts(a, leave_out=tmp_path / "data" / "consult") == {"neutrophil": 1, "monocyte": 1}


def test_merged_keeps_each_cell_once_the_first_source_winning():
    a = ReviewedCell("c1", Path("x.jpg"), "monocyte")
    b = ReviewedCell("c1", Path("x.jpg"), "neutrophil")
    c = ReviewedCell("c2", Path("y.jpg"), "lymphocyte")
    assert merged([a], [b, c]) == [a, c]
