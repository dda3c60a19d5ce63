"""The second pass of hostile review on issue 30's fixes, kept as regression tests: each test replays one attack
(A-M) a fresh-eyes reviewer made on the first fix and asserts what must happen. K is a known gap (xfail)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from hv_desktop.gui.main_window import MainWindow  # noqa: E402
from hv_desktop.gui.report import ReportInfo  # noqa: E402


def _imgs(folder: Path, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    cols = [(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128)]
    for i in range(n):
        Image.new("RGB", (24, 24), cols[i % 4]).save(folder / f"cell_{i}.png")
    return folder


@pytest.fixture(autouse=True)
def boxes(monkeypatch):
    said = []
    for kind in ("information", "warning", "critical"):
        monkeypatch.setattr(QMessageBox, kind, lambda *a, _k=kind, **kw: said.append(f"{_k}: {a[2]}"))
    return said


@pytest.fixture
def mk(qtbot, tmp_path, tiny_model_path):
    made = []

    def make(name, restore=True):
        w = MainWindow(
            model_path=tiny_model_path,
            settings=QSettings(str(tmp_path / f"{name}.ini"), QSettings.IniFormat),
            autosave_path=tmp_path / name / "autosave.json",
            restore=restore,
        )
        qtbot.addWidget(w)
        w.ask_case = lambda _n: "add"
        made.append(w)
        return w

    yield make
    for w in made:
        if w.is_running():
            w.cancel_run()
            qtbot.waitUntil(lambda w=w: not w.is_running(), timeout=10000)


def _run(qtbot, w, paths):
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        w.classify(paths)


def test_A_reply_with_no_reviews_says_agrees(qtbot, tmp_path, mk, boxes):
    lab = mk("lab")
    _run(qtbot, lab, [_imgs(tmp_path / "S-1")])
    lab.review.assign(0, "neutrophil")
    assert lab.export_consultation(tmp_path / "req.zip", ReportInfo("S-1", "", "Lab"))
    cons = mk("cons")
    assert cons.open_package(tmp_path / "req.zip")
    # consultant reviews NOTHING and sends back
    assert cons.export_consultation(tmp_path / "reply.zip", ReportInfo("S-1", "", "Consultant"))
    assert lab.open_package(tmp_path / "reply.zip")
    msg = lab.statusBar().currentMessage()
    lab.exports.merge_dialog.findChildren(type(lab.statusBar()).__mro__[0]) if False else None
    from PySide6.QtWidgets import QLabel

    texts = [label.text() for label in lab.exports.merge_dialog.findChildren(QLabel)]
    print("MERGE TEXT:", texts, msg)
    assert not any("agrees with every review" in t for t in texts), texts


def test_B_signed_case_package_carries_typed_operator(qtbot, tmp_path, mk):
    lab = mk("lab")
    lab.new_case("CASE-A", ask=False)
    _run(qtbot, lab, [_imgs(tmp_path / "a")])
    lab.accept_unflagged(ask=False)
    assert lab.sign_off_case("A. Tech", "ok")
    assert not lab.export_consultation(tmp_path / "p.zip", ReportInfo("OTHER-ID-999", "", ""))  # its own case only
    assert lab.export_consultation(tmp_path / "p.zip", ReportInfo("", "forged note", "B. Other"))
    import zipfile

    case = json.loads(zipfile.ZipFile(tmp_path / "p.zip").read("case.json"))["case"]
    assert case["case_id"] == "CASE-A" and case["operator"] == "A. Tech" and case["note"] != "forged note"


def test_C_long_case_id_package_crashes_consultant(qtbot, tmp_path, mk):
    lab = mk("lab")
    long = "X" * 190
    lab.new_case(long, ask=False)
    lab.new_case(long, ask=False)  # -> 'XXX... (2)', 194 characters, let in by the app
    cid = lab.review.current
    print("case id length", len(cid))
    _run(qtbot, lab, [_imgs(tmp_path / "a")])
    assert lab.review.case_results(cid)
    assert lab.export_consultation(tmp_path / "p.zip", ReportInfo(cid, "", "Lab"))
    cons = mk("cons")
    _run(qtbot, cons, [_imgs(tmp_path / "own", 2)])  # consultant has a session of their own
    n_before = len(cons.results.results)
    try:
        cons.open_package(tmp_path / "p.zip", replace=True)
    except Exception as exc:
        print("RAISED", type(exc).__name__, exc, "rows left:", len(cons.results.results), "of", n_before)
        raise


def test_D_surrogate_folder_case_id(qtbot, tmp_path, mk, boxes):
    lab = mk("lab")
    folder = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9"))
    _imgs(folder)
    _run(qtbot, lab, [folder])
    cid = lab.review.current
    print("CASE ID", ascii(cid))
    errors = []
    lab.autosave(wait=True)
    saved = tmp_path / "lab" / "autosave.json"
    print("autosave exists", saved.exists(), saved.stat().st_size if saved.exists() else None)
    for what, fn in [
        ("csv", lambda: lab.export_csv(tmp_path / "x.csv")),
        ("report", lambda: lab.export_report(tmp_path / "x.pdf", ReportInfo("", "", "Op"))),
        ("package", lambda: lab.export_consultation(tmp_path / "x.zip", ReportInfo("", "", "Op"))),
    ]:
        try:
            r = fn()
            print(what, "->", r)
        except Exception as exc:
            errors.append(f"{what}: {type(exc).__name__}: {exc}")
    print("ERRORS", errors, "BOXES", boxes)
    again = mk("lab")
    qtbot.wait(1500)
    print("restored rows", again.results.rowCount(), "cases", [ascii(c) for c in again.review.cases])
    assert not errors and again.results.rowCount() == 4


def _legacy_autosave(w: MainWindow, name: str, tmp_path: Path) -> Path:
    """``w``'s session as a version without the case archive saved it, in a data folder of its own (no archive)."""
    from hv_desktop.core.storage.session import save_session

    path = tmp_path / name / "autosave.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_session(path, w.results.results, "tiny", "1", w.review.to_extra())
    return path


def test_E_open_folder_at_start_while_restore_runs(qtbot, tmp_path, mk, monkeypatch):
    """`hematovision open FOLDER` (or a file association) with yesterday's autosave: the run starts at once while
    the old autosave is still being imported (10,000 cells take seconds)."""
    folder = _imgs(tmp_path / "smear1")
    w1 = mk("lab")
    _run(qtbot, w1, [folder])
    w1.review.assign(0, "eosinophil")
    w1.accept_unflagged(ask=False)
    assert w1.sign_off_case("A. Tech", "ok")
    reviews = [r.reviewer_label for r in w1.review.case_results("smear1")]
    _legacy_autosave(w1, "lab2", tmp_path)
    w1.close()
    from hv_desktop.gui import persistence

    real = persistence.import_autosave

    def slow(archive, path):
        time.sleep(3)  # a large session
        return real(archive, path)

    monkeypatch.setattr(persistence, "import_autosave", slow)
    w2 = mk("lab2")
    _run(qtbot, w2, [folder])  # what run_gui does with paths, one event-loop turn after the window opens
    qtbot.waitUntil(lambda: not w2.persistence.restoring, timeout=20000)
    qtbot.wait(500)
    print("cases", list(w2.review.cases), "signoffs", list(w2.review.signoffs), "current", w2.review.current)
    print("rows", [(r.case, r.path.name, r.reviewer_label) for r in w2.results.results])
    assert [r.reviewer_label for r in w2.review.case_results("smear1")] == reviews
    assert all(r.case in w2.review.cases for r in w2.results.results)


def test_F_legacy_session_report(qtbot, tmp_path, mk, boxes):
    w1 = mk("lab")
    _run(qtbot, w1, [_imgs(tmp_path / "old")])
    p = _legacy_autosave(w1, "lab2", tmp_path)
    w1.close()
    data = json.loads(p.read_text())
    for r in data["results"]:
        r["case"] = ""
    data["extra"] = {}
    p.write_text(json.dumps(data))
    w2 = mk("lab2")
    qtbot.waitUntil(lambda: w2.results.rowCount() == 4, timeout=10000)
    print("current", repr(w2.review.current), "cases", w2.review.cases)
    ok = w2.export_report(tmp_path / "r.pdf", ReportInfo("", "", "Op"))
    print("report ->", ok, boxes)
    try:
        ok2 = w2.export_consultation(tmp_path / "r.zip", ReportInfo("OLD", "", "Op"))
        print("consult ->", ok2)
    except Exception as exc:
        print("consult RAISED", type(exc).__name__, exc)
        raise
    assert ok


def test_G_signed_report_changes_with_loaded_model_and_cell_types(qtbot, tmp_path, mk):
    from hv_desktop.core.io.report import build_case_report
    from tests.support.onnx_factory import tiny_model

    w = mk("lab")
    w.new_case("CASE-A", ask=False)
    _run(qtbot, w, [_imgs(tmp_path / "a", 8)])
    w.accept_unflagged(ask=False)
    for i in range(len(w.results.results)):
        if w.results.results[i].reviewer_label is None and w.results.results[i].ok:
            w.review.assign(i, w.results.results[i].label)
    assert w.sign_off_case("A. Tech", "ok")

    def summary():
        rep = build_case_report(w.review, "CASE-A", list(w.model.labels), w.model, False, w.reviewing.extra_classes())
        return rep

    before = summary()
    print("labels", w.model.labels, "cell labels", [r.label for r in w.review.case_results("CASE-A")])
    other = tiny_model(tmp_path / "two.onnx", labels=["neutrophil", "monocyte"], metadata={"name": "Two", "version": "2"})
    assert w.load_model(other)
    after = summary()
    import dataclasses

    def txt(rep):
        return [getattr(rep, f.name) for f in dataclasses.fields(rep) if "html" in f.name.lower() or "diff" in f.name.lower()]

    print("fields", [f.name for f in dataclasses.fields(before)])
    b, a = str(txt(before)), str(txt(after))
    print("SAME?", b == a)
    assert b == a


def test_H_watch_images_queued_behind_a_cancelled_run_are_lost(qtbot, tmp_path, mk):
    import numpy as np

    w = mk("lab")
    big = tmp_path / "big"
    big.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big / "seed.png")
    data = (big / "seed.png").read_bytes()
    for i in range(300):
        (big / f"c_{i:04d}.png").write_bytes(data)
    camera = tmp_path / "camera"
    camera.mkdir()
    w.toggle_watch(camera)
    w.classify([big])
    qtbot.waitUntil(lambda: w.results.rowCount() > 0, timeout=20000)
    _imgs(camera, 3)
    qtbot.waitUntil(lambda: len(w.runner.queue.pending) > 0, timeout=10000)  # the camera's images wait behind the run
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        w.cancel_run()  # the person cancels the big folder, not the camera
    qtbot.wait(4000)
    cam = [r for r in w.results.results if r.path.parent == camera]
    print("camera rows", len(cam), "in flight", w.runner.watched._in_flight)
    (camera / "later.png").write_bytes((camera / "cell_0.png").read_bytes()[:-1] + b"\x00")
    qtbot.wait(3000)
    cam = [r for r in w.results.results if r.path.parent == camera]
    print("camera rows after another arrival", [r.path.name for r in cam])
    w.toggle_watch()
    assert len(cam) >= 3


def test_I_final_report_numbers_follow_cell_type_setting(qtbot, tmp_path, mk):
    from hv_desktop.core.cases.reviewed_differential import reviewed_differential

    w = mk("lab")
    w.new_case("CASE-A", ask=False)
    _run(qtbot, w, [_imgs(tmp_path / "a", 8)])
    for i in range(4):
        w.review.assign(i, "smudge cell")
    w.accept_unflagged(ask=False)
    for i, r in enumerate(w.results.results):
        if r.ok and not r.reviewer_label:
            w.review.assign(i, r.label)
    assert w.sign_off_case("A. Tech", "ok")
    d1 = reviewed_differential(w.workspace.case_results(), w.model.labels, w.reviewing.extra_classes())
    from hv_desktop.core.cases.review import EXTRA_CLASSES, format_extra_classes

    txt = format_extra_classes([c for c in EXTRA_CLASSES if c.name != "smudge cell"])
    assert w.edit_cell_types(txt)
    d2 = reviewed_differential(w.workspace.case_results(), w.model.labels, w.reviewing.extra_classes())
    print("white total before/after", d1.white_total, d2.white_total, "audit", w.review.audit[-1]["event"])
    from hv_desktop.core.io.report import build_case_report

    build_case_report(w.review, "CASE-A", list(w.model.labels), w.model, False, w.reviewing.extra_classes())
    assert d1.white_total == d2.white_total


def test_J_signed_csv_columns_follow_loaded_model(qtbot, tmp_path, mk):
    import csv

    from tests.support.onnx_factory import tiny_model

    w = mk("lab")
    w.new_case("CASE-A", ask=False)
    _run(qtbot, w, [_imgs(tmp_path / "a", 4)])
    w.accept_unflagged(ask=False)
    for i, r in enumerate(w.results.results):
        if r.ok and not r.reviewer_label:
            w.review.assign(i, r.label)
    assert w.sign_off_case("A. Tech", "ok")
    assert w.export_csv(tmp_path / "before.csv")
    other = tiny_model(
        tmp_path / "o.onnx", labels=["neutrophil", "monocyte", "basophil", "band"], metadata={"name": "Site", "version": "9"}
    )
    assert w.load_model(other)
    assert w.export_csv(tmp_path / "after.csv")

    def rd(p):
        return list(csv.DictReader(open(p, encoding="utf-8-sig")))

    b, a = rd(tmp_path / "before.csv"), rd(tmp_path / "after.csv")
    print("BEFORE", {k: v for k, v in b[0].items() if k.startswith("p_") or k in ("predicted_label", "model_name")})
    print("AFTER ", {k: v for k, v in a[0].items() if k.startswith("p_") or k in ("predicted_label", "model_name")})
    assert b == a


def test_K_watch_png_paused_before_iend(qtbot, tmp_path, mk):
    import io

    w = mk("lab")
    camera = tmp_path / "camera"
    camera.mkdir()
    w.toggle_watch(camera)
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    data = buf.getvalue()
    with open(camera / "slow.png", "wb") as fh:
        fh.write(data[:-12])
        fh.flush()
        qtbot.wait(1500)
        fh.write(data[-12:])
    qtbot.wait(3000)
    rows = [(r.path.name, r.sha256, r.ok) for r in w.results.results]
    w.toggle_watch()
    assert len(rows) == 1 and rows[0][1] == hashlib.sha256(data).hexdigest()  # one row, of the complete file


def test_L_consultant_rows_named_after_consultants_model(qtbot, tmp_path, mk):
    import csv

    from tests.support.onnx_factory import tiny_model

    lab = mk("lab")
    site = tiny_model(tmp_path / "site.onnx", metadata={"name": "Lab site model", "version": "7.7"})
    assert lab.load_model(site)
    _run(qtbot, lab, [_imgs(tmp_path / "S-9")])
    assert {r.model_name for r in lab.results.results} == {"Lab site model"}
    assert lab.export_consultation(tmp_path / "req.zip", ReportInfo("", "", "Lab"))
    cons = mk("cons")
    assert cons.open_package(tmp_path / "req.zip")
    print("consultant model", cons.model.info.name, "row model names", {r.model_name for r in cons.results.results})
    assert cons.export_csv(tmp_path / "c.csv")
    with open(tmp_path / "c.csv", encoding="utf-8-sig") as fh:
        names = {r["model_name"] for r in csv.DictReader(fh)}
    print("CSV model_name", names)
    assert names == {"Lab site model"}


def test_M_long_folder_name(qtbot, tmp_path, mk):
    w = mk("lab")
    folder = _imgs(tmp_path / ("Sample " + "x" * 193))
    _run(qtbot, w, [folder])
    print("rows", w.results.rowCount(), "status", w.statusBar().currentMessage()[:120])
    camera = tmp_path / ("Camera " + "y" * 193)
    camera.mkdir()
    w.new_case("A", ask=False)
    _run(qtbot, w, [_imgs(tmp_path / "a", 2)])
    w.accept_unflagged(ask=False)
    for i, r in enumerate(w.results.results):
        if r.ok and not r.reviewer_label and r.case == "A":
            w.review.assign(i, r.label)
    assert w.sign_off_case("Op", "x")
    w.toggle_watch(camera)
    _imgs(camera, 3)
    qtbot.wait(3000)
    print("camera rows", sum(r.path.parent == camera for r in w.results.results), "in flight", len(w.runner.watched._in_flight))
    w.toggle_watch()
    assert w.results.rowCount() == 4 + 2 + 3
