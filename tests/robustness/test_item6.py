"""Issue 30, item 6 (other breaks): a watch CSV with blank or short rows, an autosave whose entries are all
unreadable, adapting from one class, a reviewed CSV over 64 MB, and onnxruntime's files under ~/.cache."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from hv_desktop.core.inference.model import Model
from hv_desktop.core.io.watch import FolderWatcher
from hv_desktop.core.site import adapt as A
from hv_desktop.core.site import lab_images as LI
from tests.support import ROOT
from tests.support.cli import run_hematovision, serve
from tests.support.images import smear
from tests.support.onnx_factory import LABELS, tiny_model


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))


def _poll_until(watcher: FolderWatcher, n: int) -> list:
    added: list = []
    deadline = time.monotonic() + 10
    while len(added) < n and time.monotonic() < deadline:
        added += watcher.poll_once()
        time.sleep(0.05)
    return added


# ---------------------------------------------------------------- watch: a CSV with blank or short rows


def _damaged_csv(tmp_path: Path, model: Model) -> tuple[Path, Path, list[str]]:
    """A watch CSV with one good row, then a blank row, a short row (as a spreadsheet may save it) and blank lines."""
    folder, out = tmp_path / "camera", tmp_path / "live.csv"
    folder.mkdir()
    Image.new("RGB", (64, 48), (250, 0, 0)).save(folder / "first.png")
    assert len(_poll_until(FolderWatcher(folder, model, out, settle=0.05), 1)) == 1
    good = out.read_bytes().decode("utf-8-sig").splitlines()[1]
    with open(out, "a", encoding="utf-8", newline="") as fh:
        fh.write("\r\n,,,\r\n" + f"{folder / 'old.png'},old.png,monocyte\r\n" + "\r\n\r\n")
    return folder, out, next(csv.reader([good]))


def test_watch_continues_a_csv_with_blank_and_short_rows(tmp_path, tiny_model_path):
    model = Model(tiny_model_path)
    folder, out, good = _damaged_csv(tmp_path, model)
    Image.new("RGB", (64, 48), (0, 0, 250)).save(folder / "old.png")  # the short row's image: not classified again
    watcher = FolderWatcher(folder, model, out, settle=0.05)
    assert watcher.damaged == 1
    Image.new("RGB", (64, 48), (0, 250, 0)).save(folder / "new.png")
    added = _poll_until(watcher, 1)
    time.sleep(0.3)
    added += watcher.poll_once()
    assert [r.path.name for r in added] == ["new.png"]
    rows = _rows(out)
    width = len(rows[0])
    assert rows[1] == good  # the earlier row, as it was
    assert rows[2][:3] == [str(folder / "old.png"), "old.png", "monocyte"] and len(rows[2]) == width  # kept, padded
    assert rows[3][1] == "new.png" and len(rows) == 4  # blank rows dropped: they held nothing


def test_watch_command_starts_on_a_csv_with_blank_and_short_rows_and_says_so(tmp_path, tiny_model_path):
    folder, out, _ = _damaged_csv(tmp_path, Model(tiny_model_path))
    cmd = [sys.executable, "-m", "hv_desktop", "watch", str(folder), "--csv", str(out), "--model", str(tiny_model_path)]
    code, _, err = serve(cmd, dict(os.environ, PYTHONPATH=str(ROOT)), "watching")
    stderr = err.decode()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert "watching" in stderr and "note: 1 incomplete rows" in stderr, stderr


def test_watch_starts_on_an_empty_csv_file(tmp_path, tiny_model_path):
    folder, out = tmp_path / "camera", tmp_path / "live.csv"
    folder.mkdir()
    out.write_bytes(b"")  # e.g. created by a script before the first watch
    watcher = FolderWatcher(folder, Model(tiny_model_path), out, settle=0.05)
    Image.new("RGB", (64, 48), (250, 0, 0)).save(folder / "a.png")
    assert len(_poll_until(watcher, 1)) == 1 and len(_rows(out)) == 2


# ---------------------------------------------------------------- an autosave whose entries are all unreadable


def test_an_autosave_whose_entries_are_all_unreadable_is_kept_and_the_user_told(qtbot, tmp_path, tiny_model_path, monkeypatch):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from hv_desktop.gui.main_window import MainWindow

    told: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: told.append(a[2]))
    entry = {"path": "/lab/a.png", "label": "monocyte", "confidence": "high", "sha256": "0" * 64}
    text = json.dumps({"format": "hematovision-session", "version": 1, "results": [entry, dict(entry, label=7), 5]})
    autosave = tmp_path / "autosave.json"
    autosave.write_text(text)
    w = MainWindow(
        model_path=tiny_model_path, settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), autosave_path=autosave
    )
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: not w.persistence.restoring, timeout=10000)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("autosave.")]
    assert len(kept) == 1 and kept[0].read_text() == text  # the whole file, byte for byte, renamed aside
    said = w.statusBar().currentMessage()  # on the status line: no box at start
    assert "3 unreadable cells" in said and str(kept[0]) in said and not told
    w.close()  # nothing is written over it
    assert kept[0].read_text() == text


# ---------------------------------------------------------------- adapt needs enough classes


def _reviewed(tmp_path: Path, per_class: dict[str, int]) -> Path:
    lab = tmp_path / "lab"
    lab.mkdir(exist_ok=True)
    lines, i = ["path,reviewer_label"], 0
    for label, n in per_class.items():
        for _ in range(n):
            smear(seed=i, nucleus=(60 + 4 * i, 120)).save(lab / f"c{i:03}.png")
            lines.append(f"c{i:03}.png,{label}")
            i += 1
    (lab / "reviewed.csv").write_text("\n".join(lines) + "\n")
    return lab / "reviewed.csv"


def test_adapt_from_one_class_is_refused_with_the_rule(tmp_path, shipped_model):
    reviewed = _reviewed(tmp_path, {"neutrophil": 40})
    done = run_hematovision("adapt", reviewed, "--model", shipped_model, "--out", tmp_path / "site.onnx", "-q")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "at least 5 cells of each of 3 of the model's 4 classes" in done.stderr
    assert "neutrophil 40" in done.stderr and "eosinophil 0" in done.stderr
    assert not (tmp_path / "site.onnx").exists() and "95" not in done.stdout


def test_the_class_rule_is_one_definition():
    labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert A.classes_needed(labels) == 3 and A.classes_needed(labels[:2]) == 2
    assert A.coverage_problem({"neutrophil": 40}, labels)
    assert A.coverage_problem({"neutrophil": 40, "lymphocyte": 9}, labels)
    assert A.coverage_problem({"neutrophil": 40, "lymphocyte": 9, "monocyte": 4}, labels)  # 4 is not 5
    assert A.coverage_problem({"neutrophil": 40, "lymphocyte": 9, "monocyte": 5}, labels) == ""


def test_the_adapt_dialog_applies_the_same_rule(qtbot, tmp_path, shipped_model):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from hv_desktop.gui.adapt_dialog import AdaptDialog

    model = Model(shipped_model)
    one_class = [LI.LabelledCell(tmp_path / f"n{i}.png", "neutrophil") for i in range(40)]
    dlg = AdaptDialog(model, one_class, tmp_path)
    qtbot.addWidget(dlg)
    assert not dlg.adapt_button.isEnabled()
    assert "at least 5 cells of each of 3 of the 4 classes" in dlg.report.toPlainText()
    three = one_class + [LI.LabelledCell(tmp_path / f"{c}{i}.png", c) for c in ("eosinophil", "monocyte") for i in range(5)]
    dlg3 = AdaptDialog(model, three, tmp_path)
    qtbot.addWidget(dlg3)
    assert dlg3.adapt_button.isEnabled()


# ---------------------------------------------------------------- a reviewed CSV over 64 MB


def test_a_reviewed_csv_over_64_mb_is_read_whole(tmp_path):
    src = tmp_path / "big.csv"
    pad = "x" * 4000
    with open(src, "w", encoding="utf-8", newline="") as fh:
        fh.write("path,reviewer_label,note\n")
        for i in range(17_000):  # 68 MB of rows nobody reviewed
            fh.write(f"u{i}.png,,{pad}\n")
        for i, label in enumerate(["eosinophil", "lymphocyte", "monocyte", "neutrophil"] * 6):
            fh.write(f"r{i}.png,{label},\n")
    assert src.stat().st_size > 64 * 1024 * 1024
    cells = LI.read_labelled_csv([src])
    assert [c.path.name for c in cells] == [f"r{i}.png" for i in range(24)]
    assert cells[0].path == tmp_path / "r0.png" and cells[0].label == "eosinophil"


def test_reading_keeps_exactly_the_cells_adapt_can_choose(tmp_path):
    """Memory stays bounded however many rows: only the cells adapt could use are kept, and its choice is the
    same as from every row."""
    labels = [f"type{k:04}" for k in range(LI.MAX_CELLS + 50)][::-1]  # more labels than cells are used
    every = [LI.LabelledCell(tmp_path / f"n{i}.png", "Neutrophil") for i in range(LI.MAX_CELLS + 300)]
    every += [LI.LabelledCell(tmp_path / f"o{i}.png", lab) for i, lab in enumerate(labels)]
    every += [LI.LabelledCell(tmp_path / f"e{i}.png", "eosinophil") for i in range(7)]
    src = tmp_path / "many.csv"
    src.write_text("path,reviewer_label\n" + "".join(f"{c.path.name},{c.label}\n" for c in every))
    read = LI.read_labelled_csv([src])
    # neutrophil capped at MAX_CELLS; of the other labels only those among the first MAX_CELLS (sorted) can be taken
    assert len(read) == LI.MAX_CELLS + (LI.MAX_CELLS - 2) + 7 < len(every)
    assert LI.within_limit(read) == LI.within_limit(every)
    small = every[:30]
    src.write_text("path,reviewer_label\n" + "".join(f"{c.path.name},{c.label}\n" for c in small))
    assert LI.read_labelled_csv([src]) == small  # under the limit: every cell, in order


# ---------------------------------------------------------------- onnxruntime writes nothing under HOME


def test_onnxruntime_leaves_home_untouched(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    model = tiny_model(tmp_path / "tiny.onnx", labels=LABELS)
    Image.new("RGB", (64, 48), (250, 0, 0)).save(tmp_path / "a.png")
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(home / ".cache"))
    env.pop("ORT_DISABLE_TELEMETRY", None)
    cmd = [sys.executable, "-m", "hv_desktop", "classify", str(tmp_path / "a.png"), "--csv", str(tmp_path / "o.csv")]
    done = subprocess.run([*cmd, "--model", str(model), "-q"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []  # no device id, no event database


def test_start_up_switches_onnxruntime_telemetry_off_before_it_is_imported():
    from hv_desktop.core.system import runtime

    code = (
        "import os, sys; from hv_desktop.core.system.runtime import configure_process; configure_process(); "
        "print(os.environ.get('ORT_DISABLE_TELEMETRY'), 'onnxruntime' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT))
    )
    assert done.stdout.split() == ["1", "False"], done.stderr
    assert runtime.ORT_TELEMETRY_ENV == "ORT_DISABLE_TELEMETRY"
