"""The Qt-free workspace over the case archive (issue 29): every change reaches the archive as it happens, a
listener hears it, and a new process finds the case again."""

from __future__ import annotations

from pathlib import Path

import pytest

from hv_desktop.core.cases.review import CaseLocked
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.workspace import Workspace

LABELS = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def _cells(n: int, tag: str) -> list[Result]:
    return [
        Result(
            Path(f"/images/{tag}/cell_{i}.png"),
            LABELS[i % 4],
            0.9,
            {lab: (0.9 if j == i % 4 else 0.1 / 3) for j, lab in enumerate(LABELS)},
            needs_review=i % 3 == 0,
            typicality=0.5,
            sha256=f"{tag}{i}".ljust(64, "0"),
            timestamp="2026-12-02T10:00:00",
            model_name="M",
            model_version="1",
        )
        for i in range(n)
    ]


@pytest.fixture
def archive(tmp_path):
    with CaseArchive.open(tmp_path / "cases.sqlite") as a:
        yield a


def test_two_cases_reviews_and_a_sign_off_reach_the_archive_and_a_new_process_finds_them(archive, tmp_path):
    ws = Workspace(archive)
    heard = []
    ws.subscribe(lambda change: heard.append(change.kind))
    ws.new_case("S-1", "A. Tech", "ward 3")
    ws.add_results(_cells(6, "a"))
    ws.new_case("S-2", "A. Tech")
    ws.add_results(_cells(3, "b"))
    ws.review.current = "S-1"
    ws.assign(0, "basophil")
    assert ws.accept_unflagged() == [1, 2, 4, 5]
    ws.sign_off("A. Tech", "2026-12-02T11:00", "row 4 left for the consultant")  # flagged row 3 not reviewed
    assert "signed" in heard and heard.count("cases") == 2 and "added" in heard and "reviews" in heard
    with pytest.raises(CaseLocked):
        ws.assign(1, "monocyte")
    with CaseArchive.open(tmp_path / "cases.sqlite") as other:  # another connection: what a restart would read
        s1 = other.load_case("S-1")
        assert s1.sign_off is not None and s1.sign_off.operator == "A. Tech"
        assert [r.reviewer_label for r in s1.results] == ["basophil", "lymphocyte", "monocyte", None, "eosinophil", "lymphocyte"]
        assert s1.info.note == "ward 3" and other.load_case("S-2").sign_off is None
        fresh = Workspace(other)
        fresh.open_archived("S-1")
        assert fresh.review.current == "S-1" and fresh.review.locked() and len(fresh.results) == 6
        with pytest.raises(CaseLocked):
            fresh.add_results(_cells(1, "c"))


def test_a_refused_change_changes_nothing(archive):
    ws = Workspace(archive)
    ws.new_case("S-3")
    ws.add_results(_cells(4, "d"))
    with pytest.raises(ValueError):
        ws.new_case("S-4", note="x" * 5000)
    assert ws.review.current == "S-3" and "S-4" not in ws.review.cases
    assert [c.case_id for c in archive.find_cases()] == ["S-3"]
    with pytest.raises(ValueError):
        ws.sign_off("A. Tech", "2026-12-02T11:00", "")  # a flagged cell unreviewed, no reason
    assert ws.review.signed is None and archive.load_case("S-3").sign_off is None


def test_undo_and_unlock_are_archived(archive):
    ws = Workspace(archive)
    ws.new_case("S-5")
    ws.add_results(_cells(2, "e"))
    ws.assign(1, "monocyte")
    ws.undo()
    assert archive.load_case("S-5").results[1].reviewer_label is None
    ws.assign(0, "eosinophil")
    ws.sign_off("B. Tech", "2026-12-02T12:00")
    ws.unlock("a cell was misread", "2026-12-02T12:05")
    case = archive.load_case("S-5")
    assert case.sign_off is None and case.audit[-1]["event"] == "unlocked" and case.audit[-1]["reason"] == "a cell was misread"


def test_a_model_change_reaches_open_cases_only(archive):
    ws = Workspace(archive)
    ws.new_case("S-6")
    ws.add_results(_cells(2, "f"))
    ws.assign(0, "eosinophil")
    ws.sign_off("A. Tech", "t", "reviewed enough")
    ws.new_case("S-7")
    ws.add_results(_cells(2, "g"))
    fresh = _cells(2, "f") + _cells(2, "g")
    for r in fresh:
        r.label, r.model_name = "monocyte", "Site"
    assert ws.apply_reclassified(fresh) == [2, 3]
    assert {r.label for r in archive.load_case("S-6").results} != {"monocyte"}
    assert {r.model_name for r in archive.load_case("S-7").results} == {"Site"}


def test_the_cli_adds_to_an_archived_case_and_writes_its_report(tmp_path, tiny_model_path):
    from PIL import Image
    from pypdf import PdfReader

    from tests.support.cli import run_module

    folder = tmp_path / "smear"
    folder.mkdir()
    for i, colour in enumerate([(250, 5, 5), (5, 5, 250), (5, 250, 5)]):
        Image.new("RGB", (24, 24), colour).save(folder / f"cell_{i}.png")
    env = {"HV_DATA_DIR": str(tmp_path / "data"), "QT_QPA_PLATFORM": "offscreen"}

    def hv(*args):
        return run_module("hv_desktop", "--model", tiny_model_path, *args, env=env, timeout=120)

    r = hv("classify", folder, "--csv", tmp_path / "a.csv", "--case", "S-200", "--operator", "A. Tech", "-q")
    assert r.returncode == 0, r.stderr
    r = hv("classify", folder, "--csv", tmp_path / "b.csv", "--case", "S-200")
    assert r.returncode == 0 and "0 cells added (3 in all; 3 already in it)" in r.stderr, r.stderr
    with CaseArchive.open(tmp_path / "data" / "cases.sqlite") as archive:
        case = archive.load_case("S-200")
        assert case.info.operator == "A. Tech" and len(case.results) == 3
        ws = Workspace(archive)
        ws.open_archived("S-200")
        ws.accept_unflagged()
        ws.sign_off("A. Tech", "2026-12-02T12:00", "all reviewed")
    r = hv("report", "--case", "S-200", "--out", tmp_path / "s200.pdf")
    assert r.returncode == 0, r.stderr
    text = " ".join(PdfReader(str(tmp_path / "s200.pdf")).pages[0].extract_text().split())
    assert "S-200" in text and "FINAL" in text and "A. Tech" in text
    r = hv("classify", folder, "--csv", tmp_path / "c.csv", "--case", "S-200", "-q")  # signed off: refused
    assert r.returncode != 0 and "signed off" in r.stderr and (tmp_path / "c.csv").exists()
    r = hv("report", "--case", "NO-SUCH", "--out", tmp_path / "x.pdf")
    assert r.returncode == 2 and "no case" in r.stderr and not (tmp_path / "x.pdf").exists()
