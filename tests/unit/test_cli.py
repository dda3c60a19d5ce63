from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from hv_desktop import __version__
from tests.support import ROOT
from tests.support.badfiles import make_bad_files, make_odd_good_files


def run(*args, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "hv_desktop", *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=e, timeout=120
    )


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
        lines = r.stderr.strip().splitlines()
        assert "Traceback" not in r.stderr, r.stderr
        # one line; a model that is not one may add its technical reason on a second, indented line
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  technical reason: ")), r.stderr
        assert r.stderr.startswith("hematovision: ")
    r = run("classify", tmp_path)  # --csv missing: argparse usage error
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_first_run_friction(tmp_path, tiny_model_path):
    """Issue 20: typos, empty folders, bad thread counts and non-models get plain answers and distinct codes."""
    r = run("clasify", tmp_path, "--csv", tmp_path / "t.csv")
    assert r.returncode == 2 and "did you mean 'classify'?" in r.stderr
    r = run("clasify", tmp_path)
    assert r.returncode == 2 and "did you mean 'classify'?" in r.stderr  # never the GUI with "clasify" as a path
    (tmp_path / "empty").mkdir()
    r = run("--model", tiny_model_path, "classify", tmp_path / "empty", "--csv", tmp_path / "e.csv")
    assert r.returncode == 5 and "no images found" in r.stderr and "empty" in r.stderr
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    r = run("--model", tiny_model_path, "classify", tmp_path / "docs", "--csv", tmp_path / "e.csv")
    assert r.returncode == 5 and "notes.txt" in r.stderr
    assert not (tmp_path / "e.csv").exists()
    for bad in ("-1", "0", "65", "two"):
        r = run("--model", tiny_model_path, "classify", tmp_path, "--csv", tmp_path / "o.csv", "--threads", bad)
        assert r.returncode == 2 and "--threads" in r.stderr, bad
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"\x08\x07" + b"\xff" * 40)
    r = run("--model", bad_model, "classify", tmp_path, "--csv", tmp_path / "o.csv")
    first, *rest = r.stderr.strip().splitlines()
    assert r.returncode == 3 and first == "hematovision: bad.onnx is not a HematoVision model file"
    assert "INVALID_PROTOBUF" not in first


def test_watch_help_describes_every_option():
    r = run("watch", "--help")
    assert r.returncode == 0
    for words in ("completely written", "--interval SECONDS", "default: 0.25", "--csv OUT.csv", "--threads"):
        assert words in r.stdout, words


def test_version_names_app_and_model(tiny_model_path):
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"HematoVision {__version__}; model ")
    r = run("--model", tiny_model_path, "--version")
    assert "tiny-test v0.0.1" in r.stdout


def test_heatmaps_column_and_legend(tmp_path, tiny_model_path):
    Image.new("RGB", (64, 64), (250, 5, 5)).save(tmp_path / "red.png")
    out = tmp_path / "o.csv"
    r = run("--model", tiny_model_path, "classify", tmp_path / "red.png", "--csv", out, "--heatmaps", tmp_path / "heat", "-q")
    assert r.returncode == 0, r.stderr
    with open(out, encoding="utf-8-sig", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    png = Path(row["heatmap"])
    assert png.is_file() and png.parent == tmp_path / "heat"
    im = Image.open(png)
    assert im.size[1] > 64  # the legend strip under the picture


def test_a_run_flagged_far_above_the_training_labs_ends_with_what_to_do(tmp_path):
    from tests.support.onnx_factory import tiny_model

    # the tiny model calls a dark image atypical (flagged) and a bright one typical
    model = tiny_model(tmp_path / "t.onnx", typicality=True, metadata={"review_threshold": 0.5})
    dark, bright = tmp_path / "dark", tmp_path / "bright"
    for folder, level in ((dark, 10), (bright, 240)):
        folder.mkdir()
        for i in range(24):
            Image.new("RGB", (40, 40), (level, level, level - i % 3)).save(folder / f"c{i:02}.png")
    r = run("classify", dark, "--model", model, "--csv", tmp_path / "d.csv")
    assert r.returncode == 0, r.stderr
    assert "100% of cells were flagged" in r.stderr and "hematovision calibrate" in r.stderr
    assert "hematovision adapt" in r.stderr and "--model site.onnx" in r.stderr
    assert f"--out site.onnx --model {model}" in r.stderr  # fitted from the model this run used
    r = run("classify", bright, "--model", model, "--csv", tmp_path / "b.csv")
    assert r.returncode == 0 and "were flagged for review" not in r.stderr
    r = run("classify", dark, "--model", model, "--csv", tmp_path / "q.csv", "-q")
    assert r.returncode == 0 and r.stderr == ""
