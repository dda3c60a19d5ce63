"""File names that are not valid UTF-8 under a standard desktop locale (issue 30, item 6).

Why: under ``LANG=en_US.UTF-8`` Python writes stdout and stderr strictly, so a name such as ``b"\\xff\\xfe.jpg"``
(Python holds it as lone surrogates) crashed ``watch`` (and every restart of it), the summaries of ``adapt`` and
``calibrate``, the package export and the practice score export. Each command runs as a user runs it: a fresh
interpreter under the locale, with PYTHONIOENCODING and PYTHONUTF8 unset; and again under C.UTF-8.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from hv_desktop.core.system.paths import display_name, path_to_text, text_to_path
from tests.support import ROOT
from tests.support.cli import serve
from tests.support.images import disc_image, smear
from tests.support.onnx_factory import tiny_model

pytestmark = pytest.mark.skipif(os.name != "posix", reason="names that are not valid UTF-8 are a POSIX file system's")

BAD = b"\xff\xfe.jpg"  # not valid UTF-8 in any position
SHOWN = display_name(os.fsdecode(BAD))  # how people see it: U+FFFD for each undecodable byte
CELL = {"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 0.75}}


def _locale_available(name: str) -> bool:
    probe = "import locale, sys; locale.setlocale(locale.LC_ALL, sys.argv[1])"
    return subprocess.run([sys.executable, "-c", probe, name], capture_output=True).returncode == 0


def _locales() -> list:
    out = []
    for name in ("en_US.UTF-8", "C.UTF-8"):
        missing = not _locale_available(name)
        if missing and os.environ.get("CI", "").lower() == "true":
            raise RuntimeError(f"locale {name} is missing: scripts/install_system_deps.sh installs it")
        out.append(pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"locale {name} not installed")))
    return out


LOCALES = _locales()


def _env(loc: str) -> dict[str, str]:
    """This process's environment under the locale alone: no PYTHONIOENCODING, PYTHONUTF8 or other LC_*."""
    drop = ("PYTHONIOENCODING", "PYTHONUTF8", "LANGUAGE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("LC_")}
    env.update(LANG=loc, LC_ALL=loc, PYTHONPATH=str(ROOT))
    return env


def _hv(loc: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``hematovision ARGS`` under the locale; output kept as bytes (decoded here, leniently)."""
    cmd = [sys.executable, "-m", "hv_desktop", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, cwd=ROOT, env=_env(loc), timeout=timeout)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _bad(folder: Path, name: bytes = BAD) -> Path:
    return Path(os.fsdecode(os.fsencode(str(folder)) + b"/" + name))


def _assert_clean(done: subprocess.CompletedProcess) -> None:
    err = _text(done.stderr)
    assert "Traceback" not in err and "UnicodeEncodeError" not in err, err


def _csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))


# ---------------------------------------------------------------------------------------------- watch


def _watch_until(loc: str, folder: Path, out: Path, model: Path, rows: int, settle: float = 0.0) -> tuple[int, str, str]:
    """Run ``watch`` until the CSV holds ``rows`` data rows (and ``settle`` seconds more), then stop it as a
    service manager does (SIGTERM): (exit code, stdout, stderr)."""
    cmd = [sys.executable, "-m", "hv_desktop", "watch", str(folder), "--csv", str(out), "--model", str(model)]
    stop_at: list[float] = []

    def done() -> bool:
        if not stop_at and out.exists() and len(_csv_rows(out)) - 1 >= rows:
            stop_at.append(time.monotonic() + settle)
        return bool(stop_at) and time.monotonic() >= stop_at[0]

    code, stdout, stderr = serve([*cmd, "--interval", "0.05"], _env(loc), "watching", done)
    return code if code is not None else -1, _text(stdout), _text(stderr)


@pytest.mark.parametrize("loc", LOCALES)
def test_watch_shows_and_keeps_a_name_that_is_not_utf8_and_restarts(loc, tmp_path):
    model = tiny_model(tmp_path / "tiny.onnx")
    folder = tmp_path / "camera"
    folder.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(_bad(folder), format="JPEG")
    Image.new("RGB", (64, 64), (30, 30, 200)).save(folder / "ok.jpg")
    _bad(folder, b"copy\xfd.jpg").write_bytes(_bad(folder).read_bytes())  # the same picture, another bad name
    out = tmp_path / "watch.csv"
    code, stdout, stderr = _watch_until(loc, folder, out, model, rows=3)
    assert code == 0 and "Traceback" not in stderr, stderr
    copy = display_name(os.fsdecode(b"copy\xfd.jpg"))
    said = dict(line.split("\t", 1) for line in stdout.splitlines())
    assert said["ok.jpg"] == "lymphocyte 85.2 %" and set(said) == {"ok.jpg", SHOWN, copy}, stdout
    first, again = sorted([SHOWN, copy], key=lambda name: said[name].startswith("ERROR"))
    assert said[first] == "eosinophil 85.6 %"  # the first of the two identical pictures, shown as people see it
    assert said[again] == f"ERROR duplicate of {first} (same image; not counted again)"
    rows = _csv_rows(out)
    paths = {text_to_path(r[0]) for r in rows[1:]}
    assert _bad(folder) in paths and _bad(folder, b"copy\xfd.jpg") in paths  # the real bytes, written as text
    # a restart reads the CSV that holds those names and adds no row
    code, stdout, stderr = _watch_until(loc, folder, out, model, rows=3, settle=1.5)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert _csv_rows(out) == rows and stdout == ""


# ---------------------------------------------------------------------------------------------- adapt, calibrate


@pytest.mark.parametrize("loc", LOCALES)
def test_calibrate_summary_names_a_skipped_file_that_is_not_utf8(loc, tmp_path):
    base = tiny_model(tmp_path / "base.onnx", metadata=CELL)
    lab = tmp_path / "lab"
    lab.mkdir()
    for i in range(24):
        disc_image(20 + i % 3, centre=(160 + i, 120)).save(lab / f"cell{i:02}.png")
    _bad(lab, b"broken\xff.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    done = _hv(loc, "calibrate", lab, "--model", base, "--out", tmp_path / "site.onnx", "-q")
    _assert_clean(done)
    assert done.returncode == 0
    assert display_name(os.fsdecode(b"broken\xff.png")) in _text(done.stdout)
    assert (tmp_path / "site.onnx").is_file()


@pytest.mark.parametrize("loc", LOCALES)
def test_adapt_summary_names_a_skipped_file_that_is_not_utf8(loc, tmp_path, shipped_model):
    lab = tmp_path / "lab"
    lab.mkdir()
    lines = ["path,reviewer_label"]
    for i in range(24):
        name = f"c{i:02}.png"
        smear(seed=i, nucleus=(100 + 5 * i, 120)).save(lab / name)
        lines.append(f"{name},{('eosinophil', 'lymphocyte', 'monocyte', 'neutrophil')[i % 4]}")
    gone = _bad(lab, b"gone\xff.png")  # reviewed, then deleted: skipped, and named in the summary
    lines.append(f"{path_to_text(gone)},neutrophil")
    (lab / "reviewed.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = _hv(loc, "adapt", lab / "reviewed.csv", "--model", shipped_model, "--out", tmp_path / "site.onnx", "-q")
    _assert_clean(done)
    assert done.returncode == 0, _text(done.stderr)
    assert display_name(os.fsdecode(b"gone\xff.png")) in _text(done.stdout)


@pytest.mark.parametrize("loc", LOCALES)
def test_messages_naming_a_path_that_is_not_utf8_are_printed(loc, tmp_path):
    """An error about such a path is a one-line message, not a UnicodeEncodeError."""
    model = tiny_model(tmp_path / "tiny.onnx")
    missing = _bad(tmp_path, b"gone\xff")
    done = _hv(loc, "classify", missing, "--csv", tmp_path / "o.csv", "--model", model)
    _assert_clean(done)
    assert done.returncode == 2 and display_name(str(missing)) in _text(done.stderr)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(_bad(folder), format="JPEG")
    out = _bad(tmp_path, b"out\xfe.csv")
    done = _hv(loc, "classify", folder, "--csv", out, "--model", model)
    _assert_clean(done)
    assert done.returncode == 0 and display_name(str(out)) in _text(done.stderr)
    assert text_to_path(_csv_rows(out)[1][0]) == _bad(folder)


# ---------------------------------------------------------------------------------------------- files the app writes


def test_package_export_keeps_a_name_that_is_not_utf8(tmp_path):
    from hv_desktop.core.inference.batch import classify_paths
    from hv_desktop.core.inference.model import Model
    from hv_desktop.core.io.package import write_package

    model = Model(tiny_model(tmp_path / "tiny.onnx"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(_bad(folder), format="JPEG")
    results = list(classify_paths([_bad(folder)], model))
    target = write_package(tmp_path / "case.hvcase", results, model.labels, model.info.name, model.info.version, {"id": "A"})
    with zipfile.ZipFile(target) as z:
        case = z.read("case.json").decode("utf-8")
        table = z.read("results.csv").decode("utf-8-sig")
    assert path_to_text(_bad(folder).name) in case
    assert text_to_path(list(csv.reader(io.StringIO(table)))[1][0]) == _bad(folder)


def test_practice_score_export_keeps_a_name_that_is_not_utf8(tmp_path):
    from hv_desktop.core.cases.practice import PracticeSession

    labels = ["eosinophil", "lymphocyte"]
    session = PracticeSession(labels, [(_bad(tmp_path), "eosinophil"), (tmp_path / "b.jpg", "lymphocyte")])
    session.answer("eosinophil")
    session.answer("eosinophil")
    session.to_csv(tmp_path / "score.csv")
    rows = _csv_rows(tmp_path / "score.csv")
    assert text_to_path(rows[1][0]) == _bad(tmp_path) and rows[1][3] == "yes"
    assert rows[2][0] == str(tmp_path / "b.jpg")  # an ordinary name is written as it is


def test_the_display_rule_keeps_valid_text_and_never_fails():
    """One rule for every line a person reads: valid text as it is, each undecodable byte as U+FFFD."""
    assert display_name("café → 細胞.png") == "café → 細胞.png"
    assert display_name(Path(os.fsdecode(BAD))) == "\ufffd\ufffd.jpg"
    assert display_name("→ " + os.fsdecode(b"\xff")) == "→ \ufffd"  # a whole message that holds such a name
    assert display_name("x\ud800y") == "x\ufffd\ufffd\ufffdy"  # an unpaired UTF-16 surrogate (a Windows name)
