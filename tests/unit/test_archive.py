"""The case archive (issue 29): cases, cells, reviews, sign-off and audit as SQLite rows, each change a transaction;
found again by sample ID, operator, status and date; reopened from another connection. No Qt.

The file-level guarantees (migrations, a newer file refused, kill -9, the JSON import) are in
test_archive_files.py."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from hv_desktop.core.cases.review import MAX_NAME, MAX_NOTE, MAX_REASON, CaseInfo, SignOff
from hv_desktop.core.inference.result import Result, encode
from hv_desktop.core.storage.archive import ArchiveError, ArchiveLocked, CaseArchive


def cell(name: str, label: str = "neutrophil", flagged: bool = False, error: str | None = None, **kw) -> Result:
    if error:
        return Result(Path(f"/slides/{name}"), error=error, timestamp="2026-11-26T09:00:00+01:00")
    return Result(
        Path(f"/slides/{name}"),
        label=label,
        confidence=0.62 if flagged else 0.97,
        probabilities={"neutrophil": 0.97, "lymphocyte": 0.03} if not flagged else {"neutrophil": 0.62, "monocyte": 0.38},
        needs_review=flagged,
        typicality=0.4 if flagged else 0.9,
        sha256=f"{abs(hash(name)):064x}"[:64],
        timestamp="2026-11-26T09:00:00+01:00",
        model_name="HematoVision",
        model_version="1.2.2",
        **kw,
    )


@pytest.fixture
def archive(tmp_path):
    with CaseArchive.open(tmp_path / "archive.sqlite") as a:
        yield a


def two_cases(a: CaseArchive) -> tuple[list[str], list[str]]:
    a.upsert_case(CaseInfo("S-001 Alpha", "Ann Lee", "left arm"), created_at="2026-11-20T08:00:00+01:00")
    a.upsert_case(CaseInfo("s-002 beta", "Bob Roe", ""), created_at="2026-11-26T10:30:00+01:00")
    one = a.add_cells("S-001 Alpha", [cell("a1.jpg"), cell("a2.jpg", flagged=True), cell("a3.jpg", error="empty file")])
    two = a.add_cells("s-002 beta", [cell("b1.jpg", "lymphocyte"), cell("b2.jpg", flagged=True)])
    return one, two


def test_two_cases_reviews_sign_off_locks_unlock_is_audited_and_a_new_connection_sees_it_all(tmp_path, archive):
    one, two = two_cases(archive)
    assert len(set(one + two)) == 5
    archive.set_review(one[1], "monocyte")
    archive.set_review(two[0], "lymphocyte")
    signed = archive.sign_off("S-001 Alpha", SignOff("Ann Lee", "2026-11-26T11:00"))
    assert signed == SignOff("Ann Lee", "2026-11-26T11:00", "", 0)
    with pytest.raises(ArchiveLocked, match="signed off by Ann Lee"):
        archive.set_review(one[0], "eosinophil")
    with pytest.raises(ArchiveLocked):
        archive.add_cells("S-001 Alpha", [cell("late.jpg")])
    with pytest.raises(ArchiveLocked):
        archive.upsert_case(CaseInfo("S-001 Alpha", "Someone else", "changed"))
    with pytest.raises(ArchiveLocked):
        archive.sign_off("S-001 Alpha", SignOff("Ann Lee", "again"))
    archive.set_review(two[1], "monocyte")  # the other case is not locked

    with CaseArchive.open(tmp_path / "archive.sqlite") as other:  # a second connection, while the first is open
        case = other.load_case("S-001 Alpha")
        assert case.locked and case.status == "signed" and case.sign_off == signed
        assert [r.reviewer_label for r in case.results] == [None, "monocyte", None]
        assert [r.path.name for r in case.results] == ["a1.jpg", "a2.jpg", "a3.jpg"]
        assert case.info == CaseInfo("S-001 Alpha", "Ann Lee", "left arm")
        assert [e["event"] for e in case.audit] == ["signed off"]

    assert archive.unlock("S-001 Alpha", "  wrong slide ID  ", "2026-11-26T12:00") is True
    assert archive.unlock("S-001 Alpha", "again", "2026-11-26T12:01") is False  # not signed off any more
    archive.set_review(one[0], "eosinophil")  # unlocked: reviews are accepted again
    archive.close()

    with CaseArchive.open(tmp_path / "archive.sqlite") as reopened:
        case = reopened.load_case("S-001 Alpha")
        assert case.status == "open" and case.sign_off is None
        assert [r.reviewer_label for r in case.results] == ["eosinophil", "monocyte", None]
        assert case.audit[-1] == {
            "event": "unlocked", "case": "S-001 Alpha", "at": "2026-11-26T12:00", "reason": "wrong slide ID",
            "was_signed_by": "Ann Lee",
        }  # fmt: skip
        assert [r.reviewer_label for r in reopened.load_case("s-002 beta").results] == ["lymphocyte", "monocyte"]


def test_cells_come_back_exactly_as_they_went_in(archive):
    archive.upsert_case(CaseInfo("C"))
    originals = [cell("a.jpg", reviewer_label="band neutrophil"), cell("b.jpg", flagged=True), cell("c", error="bad")]
    ids = archive.add_cells("C", originals)
    back = archive.load_case("C").results
    for r in originals:
        r.case = "C"
    assert [encode(r) for r in back] == [encode(r) for r in originals]
    attr = "cell_id"  # the cells-in-a-field work gives every Result its own ID: the archive keys cells by it
    if hasattr(Result(Path("x")), attr):
        assert [getattr(r, attr) for r in back] == ids
    assert [archive.case_of(i) for i in ids] == ["C"] * 3


def test_cells_added_later_follow_in_order_and_a_batch_is_all_or_nothing(archive):
    archive.upsert_case(CaseInfo("C"))
    archive.add_cells("C", [cell("1.jpg"), cell("2.jpg")])
    bad = cell("bad.jpg")
    bad.confidence = float("nan")
    with pytest.raises(ArchiveError, match="finite number"):
        archive.add_cells("C", [cell("3.jpg"), bad])
    archive.add_cells("C", [cell("3.jpg")])
    assert [r.path.name for r in archive.load_case("C").results] == ["1.jpg", "2.jpg", "3.jpg"]
    with pytest.raises(ArchiveError, match="no case"):
        archive.add_cells("nowhere", [cell("x.jpg")])


def test_sign_off_applies_the_review_rule_to_the_archived_cells(archive):
    _, two = two_cases(archive)
    with pytest.raises(ArchiveError, match="1 flagged cell not reviewed"):
        archive.sign_off("s-002 beta", SignOff("Bob Roe", "t"))
    with pytest.raises(ArchiveError, match="name of the person"):
        archive.sign_off("s-002 beta", SignOff(" ", "t", "reason"))
    reason = "r" * MAX_REASON
    s = archive.sign_off("s-002 beta", SignOff("Bob Roe", "t", reason))
    assert (s.override_reason, s.unreviewed_flagged) == (reason, 1)
    assert archive.load_case("s-002 beta").sign_off == s


def test_unlock_needs_a_reason_within_the_limit(archive):
    two_cases(archive)
    archive.sign_off("S-001 Alpha", SignOff("Ann", "t", "ok"))
    with pytest.raises(ArchiveError, match="give a reason"):
        archive.unlock("S-001 Alpha", "  ", "t2")
    with pytest.raises(ArchiveError, match="at most 2,000"):
        archive.unlock("S-001 Alpha", "x" * (MAX_REASON + 1), "t2")
    assert archive.load_case("S-001 Alpha").locked  # refused unlocks changed nothing
    with pytest.raises(ArchiveError, match="no case"):
        archive.unlock("nowhere", "why", "t")


def test_limits_are_enforced_when_data_enters_and_a_refusal_writes_nothing(archive):
    with pytest.raises(ArchiveError, match="at most 4,000"):
        archive.upsert_case(CaseInfo("C", "Ann", "n" * (MAX_NOTE + 1)))
    with pytest.raises(ArchiveError, match="at most 200"):
        archive.upsert_case(CaseInfo("C", "a" * (MAX_NAME + 1)))
    with pytest.raises(ArchiveError, match="needs an ID"):
        archive.upsert_case(CaseInfo("   "))
    assert archive.find_cases() == []
    archive.upsert_case(CaseInfo("C", "a" * MAX_NAME, "n" * MAX_NOTE))  # at the limit: kept whole
    assert archive.load_case("C").info.note == "n" * MAX_NOTE
    (cid,) = archive.add_cells("C", [cell("a.jpg")])
    with pytest.raises(ArchiveError, match="label"):
        archive.set_review(cid, "x" * (MAX_NAME + 1))
    with pytest.raises(ArchiveError, match="not plain data"):
        archive.add_audit("C", {"event": "x", "when": object()})


def test_reviews_are_refused_for_unclassified_or_unknown_cells_and_a_burst_is_all_or_nothing(archive):
    one, _ = two_cases(archive)
    with pytest.raises(ArchiveError, match="nothing to review"):
        archive.set_review(one[2], "neutrophil")
    with pytest.raises(ArchiveError, match="no cell"):
        archive.set_review("missing", "neutrophil")
    with pytest.raises(ArchiveError, match="no cell"):
        archive.set_reviews([(one[0], "eosinophil"), ("missing", "eosinophil")])
    assert archive.load_case("S-001 Alpha").results[0].reviewer_label is None
    archive.set_reviews([(one[0], "eosinophil"), (one[1], "monocyte")])
    archive.set_review(one[0], None)  # cleared
    assert [r.reviewer_label for r in archive.load_case("S-001 Alpha").results] == [None, "monocyte", None]


def test_reclassification_keeps_position_and_review_and_spares_signed_cases(archive):
    one, two = two_cases(archive)
    archive.set_review(two[0], "monocyte")
    fresh = cell("b1.jpg", "monocyte")
    fresh.model_version = "2.0.0"
    archive.reclassify([(two[0], fresh)])
    r = archive.load_case("s-002 beta").results[0]
    assert (r.label, r.model_version, r.reviewer_label, r.path.name) == ("monocyte", "2.0.0", "monocyte", "b1.jpg")
    archive.set_review(one[1], "monocyte")
    archive.sign_off("S-001 Alpha", SignOff("Ann", "t"))
    with pytest.raises(ArchiveLocked):
        archive.reclassify([(one[0], fresh)])
    assert archive.load_case("S-001 Alpha").results[0].label == "neutrophil"


def test_find_cases_by_id_operator_status_and_date(archive):
    one, _ = two_cases(archive)
    archive.upsert_case(CaseInfo("ÄRZTIN-STRAßE 7", "Zoë", ""), created_at="2026-12-01T09:00:00+01:00")
    archive.set_review(one[1], "monocyte")
    archive.sign_off("S-001 Alpha", SignOff("Carla Diaz", "2026-11-26T11:00"))

    def ids(**kw) -> list[str]:
        return [c.case_id for c in archive.find_cases(**kw)]

    assert ids() == ["ÄRZTIN-STRAßE 7", "s-002 beta", "S-001 Alpha"]  # newest first
    assert ids(text="s-00") == ["s-002 beta", "S-001 Alpha"]  # case-insensitive
    assert ids(text="ALPHA") == ["S-001 Alpha"]  # anywhere in the ID
    assert ids(text="ärztin-strasse") == ["ÄRZTIN-STRAßE 7"]  # any script, ß folds to ss
    assert ids(text="alpha", prefix=True) == [] and ids(text="S-001", prefix=True) == ["S-001 Alpha"]
    assert ids(text="%") == [] and ids(text="_") == []  # LIKE's wildcards are plain characters here
    assert ids(operator="bob roe") == ["s-002 beta"]
    assert ids(operator="carla diaz") == ["S-001 Alpha"]  # who signed it off
    assert ids(operator="ann lee") == ["S-001 Alpha"] and ids(operator="ann") == []
    assert ids(status="signed") == ["S-001 Alpha"]
    assert ids(status="open") == ["ÄRZTIN-STRAßE 7", "s-002 beta"]
    assert ids(date_from="2026-11-21", date_to="2026-11-26") == ["s-002 beta"]  # both days included
    assert ids(date_to="2026-11-20") == ["S-001 Alpha"]
    assert ids(date_from="2026-12") == ["ÄRZTIN-STRAßE 7"]
    assert ids(date_from="2026-11", date_to="2026-11") == ["s-002 beta", "S-001 Alpha"]  # a whole month
    assert ids(text="s-", status="open", operator="BOB ROE") == ["s-002 beta"]
    assert ids(limit=1) == ["ÄRZTIN-STRAßE 7"]
    (summary,) = archive.find_cases(text="alpha")
    assert (summary.n_cells, summary.n_reviewed, summary.signed_by, summary.signed_at) == (3, 1, "Carla Diaz", "2026-11-26T11:00")
    assert summary.operator == "Ann Lee" and summary.status == "signed"
    with pytest.raises(ArchiveError, match="no such case status"):
        archive.find_cases(status="closed")


def test_audit_events_are_kept_in_order_with_the_case(archive):
    archive.upsert_case(CaseInfo("C"))
    for i in range(5):
        archive.add_audit("C", {"event": "exported", "at": f"t{i}", "file": f"report {i}.pdf"})
    assert [e["file"] for e in archive.load_case("C").audit] == [f"report {i}.pdf" for i in range(5)]
    with pytest.raises(ArchiveError, match="no case"):
        archive.add_audit("nowhere", {"event": "x"})


def test_a_name_that_is_not_utf8_round_trips(tmp_path):
    folder = Path(os.fsdecode(tmp_path.as_posix().encode() + b"/caf\xe9 archive"))  # the archive's own folder too
    try:
        folder.mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    name = Path(os.fsdecode(b"/mnt/usb/caf\xe9 \xff.jpg"))
    with CaseArchive.open(folder / "archive.sqlite") as a:
        a.upsert_case(CaseInfo("C"))
        a.add_cells("C", [cell("x.jpg")])
        a.add_cells("C", [Result(name, label="neutrophil", confidence=0.9, probabilities={"neutrophil": 0.9})])
    with CaseArchive.open(folder / "archive.sqlite") as a:
        back = a.load_case("C").results[1].path
    assert os.fsencode(back) == b"/mnt/usb/caf\xe9 \xff.jpg"


def test_the_file_is_in_wal_mode_with_foreign_keys_and_the_chosen_durability(tmp_path):
    from hv_desktop.core.storage import archive_schema

    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        conn = a._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == {"NORMAL": 1, "FULL": 2}[archive_schema.SYNCHRONOUS]
    raw = sqlite3.connect(tmp_path / "a.sqlite")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == archive_schema.VERSION
    assert raw.execute("PRAGMA application_id").fetchone()[0] == archive_schema.APPLICATION_ID
    raw.close()


def test_a_camera_fields_cells_keep_their_number_box_edge_and_no_cell_mark(tmp_path):
    """Issue 28: a reopened case counts the cells of a field as it did when they were classified."""
    field = Path("/fields/f1.jpg")
    cells = [
        Result(field, label="neutrophil", confidence=0.9, cell_index=1, cell_box=(10, 20, 110, 130)),
        Result(field, label="lymphocyte", confidence=0.8, cell_index=2, cell_box=(500, 0, 600, 60), cell_at_edge=True),
        Result(Path("/fields/empty.jpg"), no_cell=True),
    ]
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        a.upsert_case(CaseInfo("F-1", "Ann", ""))
        a.add_cells("F-1", cells)
    with CaseArchive.open(tmp_path / "a.sqlite") as again:
        back = again.load_case("F-1").results
    assert [(r.cell_index, r.cell_box, r.cell_at_edge, r.no_cell) for r in back] == [
        (1, (10, 20, 110, 130), False, False),
        (2, (500, 0, 600, 60), True, False),
        (None, None, False, True),
    ]


@pytest.mark.parametrize("bad", [{"cell_index": -1}, {"cell_box": (1, 2, 3)}, {"cell_box": (1.5, 2, 3, 4)}])
def test_a_cell_number_or_box_that_is_not_whole_numbers_is_refused_as_it_enters(tmp_path, bad):
    with CaseArchive.open(tmp_path / "a.sqlite") as a:
        a.upsert_case(CaseInfo("F-1", "Ann", ""))
        with pytest.raises(ArchiveError, match="cell number|box"):
            a.add_cells("F-1", [Result(Path("/fields/f.jpg"), label="neutrophil", confidence=0.9, **bad)])
        assert a.load_case("F-1").results == []
