"""Issue 30, item 7, the rules behind the window: "By review" says which counts are still the model's and gives
the white-cell total; a missing Visual C++ runtime is named, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hv_desktop.core.cases.differential_view import BY_MODEL_COLUMNS, BY_REVIEW_COLUMNS, WBC_TOTAL, differential_view
from hv_desktop.core.cases.review import EXTRA_CLASSES
from hv_desktop.core.cases.reviewed_differential import reviewed_differential
from hv_desktop.core.inference.result import Result
from tests.support import ROOT
from tests.support.ort_missing import DLL_LOAD_FAILED, break_onnxruntime, broken_onnxruntime_package

LABELS = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
VC_REDIST = "Microsoft Visual C++ Redistributable for Visual Studio 2015-2022 (x64)"


def _case() -> list[Result]:
    """5 neutrophils by the model (2 reviewed as such, 1 reviewed as a lymphocyte), 2 lymphocytes unreviewed,
    1 cell reviewed as a nucleated red cell (per 100 WBC), 1 failed file."""
    rs = [Result(Path(f"n{i}.png"), label="neutrophil", confidence=0.99) for i in range(5)]
    rs[0].reviewer_label = rs[1].reviewer_label = "neutrophil"
    rs[2].reviewer_label = "lymphocyte"
    rs += [Result(Path(f"l{i}.png"), label="lymphocyte", confidence=0.99) for i in range(2)]
    rs.append(Result(Path("r.png"), label="lymphocyte", confidence=0.6, needs_review=True, reviewer_label="nucleated red cell"))
    rs.append(Result(Path("bad.png"), error="not an image"))
    return rs


def test_reviewed_differential_counts_what_is_still_the_models_call():
    d = reviewed_differential(_case(), LABELS, EXTRA_CLASSES)
    assert d.white_total == 7 and d.reviewed == 4
    assert dict((n, c) for n, c, _ in d.white)["neutrophil"] == 4  # 2 reviewed + 2 unreviewed
    assert d.unreviewed == {"neutrophil": 2, "lymphocyte": 2}
    assert d.unreviewed_white == 4


def test_by_review_view_has_an_unreviewed_column_and_the_white_cell_total():
    """Break: by review, unreviewed cells were counted under the model's class without a word; no WBC total."""
    view = differential_view(_case(), LABELS, EXTRA_CLASSES, reviewed=True)
    assert view.columns == BY_REVIEW_COLUMNS and "Unreviewed" in view.columns
    rows = {r[0]: r[1:] for r in view.rows}
    assert rows["Neutrophil"] == ("4", "57.1", "2")
    assert rows["Lymphocyte"] == ("3", "42.9", "2")  # 1 reviewed + 2 the model's
    assert rows[WBC_TOTAL] == ("7", "100.0", "4")
    assert rows["Nucleated red cell /100 WBC"] == ("1", "14.3", "0")
    names = [r[0] for r in view.rows]
    # every class, the total and the per-100 type lead; flagged and failed follow
    assert view.essential == names.index("Nucleated red cell /100 WBC") + 1 == len(names) - 2
    assert view.note == "unreviewed cells count as the model's class"
    assert all(len(r) == 1 + len(view.columns) for r in view.rows)


def test_by_model_view_is_unchanged_and_fully_reviewed_needs_no_note():
    view = differential_view(_case(), LABELS, EXTRA_CLASSES, reviewed=False)
    assert view.columns == BY_MODEL_COLUMNS
    assert [r[0] for r in view.rows][:5] == ["Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil", "Classified"]
    assert view.essential == 5 and view.note == ""
    done = [r for r in _case() if r.ok]
    for r in done:
        r.reviewer_label = r.reviewer_label or r.label
    reviewed = differential_view(done, LABELS, EXTRA_CLASSES, reviewed=True)
    assert reviewed.note == ""
    assert dict((r[0], r[3]) for r in reviewed.rows)[WBC_TOTAL] == "0"


# ---------------------------------------------------------------------------------------------- Visual C++ runtime


def test_a_missing_visual_cpp_runtime_is_named_when_a_model_loads(monkeypatch, tiny_model_path):
    """Break: a fresh Windows PC failed with a bare "DLL load failed" traceback."""
    from hv_desktop.core.inference.model import Model, ModelError, RuntimeMissing, runtime_problem

    break_onnxruntime(monkeypatch)
    with pytest.raises(ModelError) as caught:  # every face already turns a ModelError into a message
        Model(tiny_model_path)
    assert isinstance(caught.value, RuntimeMissing)
    assert VC_REDIST in str(caught.value) and "DLL load failed" in str(caught.value)
    assert runtime_problem() == str(caught.value)


def test_another_import_failure_is_not_blamed_on_visual_cpp():
    from hv_desktop.core.inference.model import runtime_message

    text = runtime_message(ImportError("No module named 'onnxruntime'"))
    assert "onnxruntime" in text and "Visual C++" not in text and "reinstall" in text


def test_the_cli_names_the_missing_runtime_instead_of_a_traceback(tmp_path):
    image = tmp_path / "cell.png"
    Image.new("RGB", (24, 24), (250, 5, 5)).save(image)
    fake = broken_onnxruntime_package(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    r = subprocess.run(
        [sys.executable, "-m", "hv_desktop", "classify", str(image), "--csv", str(tmp_path / "out.csv")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert r.returncode == 3, r.stderr  # a model that cannot be used
    assert "Traceback" not in r.stderr
    assert VC_REDIST in r.stderr and DLL_LOAD_FAILED.split(":")[0] in r.stderr
    assert not (tmp_path / "out.csv").exists()
