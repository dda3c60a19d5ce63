from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from badfiles import make_bad_files, make_odd_good_files
from hv_desktop import __version__

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "hv_desktop", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=e, timeout=120)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = run("classify", "--help")
    assert r.returncode == 0 and "--csv" in r.stdout and "--summary" in r.stdout


def test_mixed_folder_exit_zero_one_row_each(tmp_path, tiny_model_path):
    bad = make_bad_files(tmp_path / "in" / "bad")
    good = make_odd_good_files(tmp_path / "in" / "good")
    out, summ = tmp_path / "out.csv", tmp_path / "summary.csv"
    r = run("--model", tiny_model_path, "classify", tmp_path / "in", "--csv", out, "--summary", summ)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    with open(out, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(bad) + len(good)
    assert sum(1 for row in rows if row["error"]) == len(bad)
    assert "classified" in summ.read_text()


def test_model_option_after_subcommand(tmp_path, tiny_model_path):
    Image.new("RGB", (10, 10), (255, 0, 0)).save(tmp_path / "r.png")
    r = run("classify", tmp_path / "r.png", "--csv", tmp_path / "o.csv", "--model", tiny_model_path, "-q")
    assert r.returncode == 0 and r.stderr == ""
    assert "eosinophil" in (tmp_path / "o.csv").read_text(encoding="utf-8-sig")


def test_user_errors_are_one_line_no_traceback(tmp_path, tiny_model_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_text("nope")
    cases = [
        (("--model", bad_model, "classify", tmp_path, "--csv", tmp_path / "o.csv"), 3),
        (("--model", tmp_path / "missing.onnx", "classify", tmp_path, "--csv", tmp_path / "o.csv"), 3),
        (("--model", tiny_model_path, "classify", tmp_path / "nowhere", "--csv", tmp_path / "o.csv"), 2),
        (("--model", tiny_model_path, "classify", tmp_path, "--csv", tmp_path / "no" / "dir" / "o.csv"), 4),
        (("--model", tiny_model_path, "classify", tmp_path, "--csv", tmp_path), 4),
    ]
    for args, code in cases:
        r = run(*args)
        assert r.returncode == code, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
        assert r.stderr.startswith("hematovision: ")
    r = run("classify", tmp_path)  # --csv missing: argparse usage error
    assert r.returncode == 2 and "Traceback" not in r.stderr
