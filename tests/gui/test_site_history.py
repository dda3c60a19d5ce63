"""A lab's site models as reviews accumulate (issue 27 item 2): a fresh site model is offered when every class has
reached the next step of reviewed cells, every site model is kept, and the lab can go back to any (offscreen)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HV_NO_ERROR_DIALOG"] = "1"

from PySide6.QtCore import QSettings  # noqa: E402

from hv_desktop.core.inference.metadata import METADATA_KEY  # noqa: E402
from hv_desktop.core.inference.model import Model, bundled_model_path  # noqa: E402
from hv_desktop.core.inference.onnx_proto import OnnxFile  # noqa: E402
from hv_desktop.core.inference.result import Result  # noqa: E402
from hv_desktop.gui.main_window import MainWindow  # noqa: E402


def _window(qtbot, tmp_path: Path) -> MainWindow:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(model_path=bundled_model_path(), settings=settings, autosave_path=tmp_path / "data" / "a.json")
    qtbot.addWidget(w)
    return w


def _site_model(folder: Path, name: str, date: str, per_class: int) -> Path:
    """The shipped model's file carrying a site model's provenance (what adapt writes), made from ``per_class``
    reviewed cells of each class."""
    base = Model(bundled_model_path())
    meta = base.info.with_updates(
        version=base.info.version + "+site",
        site_adaptation={
            "site": "Ward 3",
            "date": date,
            "base_model": {"name": base.info.name, "version": base.info.version},
            "cells_per_class": dict.fromkeys(base.labels, per_class),
            "unflag_check": {"verified": False},
        },
    )
    out = OnnxFile(bundled_model_path().read_bytes())
    out.set_metadata(METADATA_KEY, meta.to_json())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(out.to_bytes())
    return folder / name


def _review(w: MainWindow, per_class: int, tag: str) -> None:
    """``per_class`` new cells of each class, reviewed through the workspace (as the review keys do)."""
    ws = w.workspace
    if not ws.review.current:
        ws.new_case("C-1")
    labels = list(w.model.labels)
    fresh = [Result(Path(f"/slides/{tag}-{lab}-{i}.jpg"), label=lab, confidence=0.9) for lab in labels for i in range(per_class)]
    rows = ws.add_results(fresh)
    for row, r in zip(rows, fresh, strict=True):
        ws.assign(row, r.label)


def test_a_fresh_site_model_is_offered_at_10_then_25_reviewed_cells_of_each_type(qtbot, tmp_path):
    w = _window(qtbot, tmp_path)
    offers: list[int] = []
    w.site_models.refreshDue.connect(offers.append)
    _review(w, 9, "a")
    qtbot.wait(700)
    assert offers == []  # 9 of each: not yet
    with qtbot.waitSignal(w.site_models.refreshDue, timeout=5000) as first:
        _review(w, 1, "b")
    assert first.args == [10] and "10 reviewed cells of each type" in w.statusBar().currentMessage()
    # the lab adapts from those 10: the site model in use learnt from 10 of each, so nothing more is due
    site = _site_model(tmp_path / "data" / "site-models", "ward3-1.onnx", "2026-12-01T09:00:00+00:00", 10)
    assert w.runner.load_model(site)
    qtbot.wait(700)
    assert offers == [10]
    with qtbot.waitSignal(w.site_models.refreshDue, timeout=5000) as second:
        _review(w, 15, "c")
    assert second.args == [25] and offers == [10, 25]
    _review(w, 1, "d")  # more reviews, same step: said once
    qtbot.wait(700)
    assert offers == [10, 25]


def test_reviews_of_earlier_cases_count_and_another_labs_do_not(qtbot, tmp_path):
    w = _window(qtbot, tmp_path)
    _review(w, 6, "yesterday")
    w.workspace.new_case("C-2")
    _review(w, 4, "today")
    consult = tmp_path / "data" / "consultations" / "pkg"
    ws = w.workspace
    ws.new_case("from another lab")
    theirs = [Result(consult / f"t{i}.jpg", label="monocyte", confidence=0.9) for i in range(30)]
    for row in ws.add_results(theirs):
        ws.assign(row, "monocyte")
    counts = w.site_models.counts()
    assert counts == dict.fromkeys(w.model.labels, 10)
    assert len(w.site_models.reviewed()) == 40 and not any(c.path.is_relative_to(consult) for c in w.site_models.reviewed())


def test_the_history_lists_every_site_model_and_goes_back_to_one_or_to_the_shipped_model(qtbot, tmp_path):
    w = _window(qtbot, tmp_path)
    folder = tmp_path / "data" / "site-models"
    older = _site_model(folder, "ward3-1.onnx", "2026-12-01T09:00:00+00:00", 10)
    newer = _site_model(folder, "ward3-2.onnx", "2026-12-02T09:00:00+00:00", 25)
    (folder / "broken.onnx").write_bytes(b"not a model")
    w.site_models.runner.use_site_model(newer)
    qtbot.waitUntil(lambda: w.model is not None and w.model.path == newer, timeout=10000)
    dlg = w.site_model_history()
    qtbot.addWidget(dlg)
    items = [dlg.list.item(i).text() for i in range(dlg.list.count())]
    assert len(items) == 2 and items[0].startswith("● in use") and "at least 25 of each type" in items[0]
    assert "at least 10 of each type" in items[1] and "broken.onnx" in dlg.problems.text()
    dlg.list.setCurrentRow(1)
    dlg.use_button.click()  # roll back to the older one
    qtbot.waitUntil(lambda: w.model is not None and w.model.path == older, timeout=10000)
    dlg = w.site_model_history()
    qtbot.addWidget(dlg)
    assert dlg.list.item(1).text().startswith("● in use")
    dlg.shipped_button.click()
    qtbot.waitUntil(lambda: w.model is not None and w.model.path == bundled_model_path(), timeout=10000)
    assert json.loads(json.dumps(sorted(p.name for p in folder.iterdir()))) == ["broken.onnx", "ward3-1.onnx", "ward3-2.onnx"]
