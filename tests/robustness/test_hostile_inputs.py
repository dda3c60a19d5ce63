"""The hostile-input corpus and faults: zero crashes, zero lost rows, bounded time."""

from __future__ import annotations

import errno
import os
import re
import time

import pytest
from PIL import Image

from hv_desktop import cli
from hv_desktop.core.inference import batch as batch_mod
from hv_desktop.core.inference.batch import classify_paths, classify_stream
from hv_desktop.core.inference.model import Model
from hv_desktop.core.io import export as export_mod
from tests.support import ROOT
from tests.support.badfiles import make_bad_files, make_odd_good_files


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return Model(tiny_model_path)


def test_whole_corpus_one_row_each_no_crash(tmp_path, model):
    bad = make_bad_files(tmp_path / "corpus" / "bad")
    good = make_odd_good_files(tmp_path / "corpus" / "good")
    os.symlink(tmp_path / "corpus", tmp_path / "corpus" / "good" / "loop")  # symlink loop
    t = time.monotonic()
    results = list(classify_paths([tmp_path / "corpus"], model))
    assert time.monotonic() - t < 60
    assert len(results) == len(bad) + len(good)
    assert all(bool(r.error) != bool(r.label) for r in results)


def test_unreadable_file_is_an_error_row(tmp_path, model, monkeypatch):
    p = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(p)
    real_read = batch_mod.read_regular

    def fake_read(path, *a, **k):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied")
        return real_read(path, *a, **k)

    monkeypatch.setattr(batch_mod, "read_regular", fake_read)
    (r,) = list(classify_stream([p], model))
    assert r.error == "permission denied"


def test_file_rewritten_during_run(tmp_path, model):
    p = tmp_path / "changing.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(p)

    def items():
        yield p
        p.write_bytes(b"now garbage")  # rewritten between two reads of the same path
        yield p
        Image.new("RGB", (8, 8), (0, 0, 255)).save(p)
        yield p

    labels = [(r.label, bool(r.error)) for r in classify_stream(items(), model, batch_size=1, decode_workers=1)]
    assert len(labels) == 3  # whatever the timing, one row per item and no exception


def test_full_disk_during_export_is_a_clear_error(tmp_path, tiny_model_path, monkeypatch, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    out = tmp_path / "out.csv"
    out.write_text("previous export")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod.os, "replace", full)
    code = cli.main(["--model", str(tiny_model_path), "classify", str(tmp_path / "a.png"), "--csv", str(out), "-q"])
    assert code == cli.EXIT_OUTPUT
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "previous export"


def test_read_only_output_folder(tmp_path, tiny_model_path, monkeypatch, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(cli.os, "access", lambda p, mode: not str(p).startswith(str(ro)))
    code = cli.main(["--model", str(tiny_model_path), "classify", str(tmp_path / "a.png"), "--csv", str(ro / "o.csv")])
    assert code == cli.EXIT_OUTPUT and "not writable" in capsys.readouterr().err


def test_no_pickle_eval_or_exec_on_user_data():
    """Security review as a test: the app never unpickles, evals or execs anything."""
    pattern = re.compile(r"\b(pickle|marshal|shelve)\b|(?<![\w.])(eval|exec)\(|allow_pickle\s*=\s*True")
    offenders = []
    for path in (ROOT / "hv_desktop").rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line.split("#")[0]) and ".exec()" not in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []
