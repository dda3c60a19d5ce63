"""Watch folder: files written slowly in chunks are classified once, after they are complete."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time

from PIL import Image

from hv_desktop.core.inference.model import Model
from hv_desktop.core.io.watch import FolderWatcher, SettleTracker
from tests.support import ROOT


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buf, "PNG")
    return buf.getvalue()


def _rows(path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_settle_tracker_waits_for_stable_size(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(b"x" * 10)
    t = SettleTracker(settle=0.5)
    assert t.observe([p], now=0.0) == []
    assert t.observe([p], now=0.2) == []  # not settled yet
    with open(p, "ab") as fh:
        fh.write(b"more")
    os.utime(p, (time.time() + 5, time.time() + 5))
    assert t.observe([p], now=0.6) == []  # grew: the clock restarts
    assert t.observe([p], now=1.2) == [p]


def test_chunked_writes_classified_once_and_restart_does_not_duplicate(tmp_path, tiny_model_path):
    model = Model(tiny_model_path)
    folder, out = tmp_path / "camera", tmp_path / "live.csv"
    folder.mkdir()
    w = FolderWatcher(folder, model, out, settle=0.3)
    data = _png((250, 0, 0))
    target = folder / "cell_001.png"
    with open(target, "wb") as fh:  # a camera writing slowly, in chunks
        for i in range(0, len(data), max(1, len(data) // 4)):
            fh.write(data[i : i + max(1, len(data) // 4)])
            fh.flush()
            assert w.poll_once() == []
            time.sleep(0.1)
    t0 = time.monotonic()
    added = []
    while not added and time.monotonic() - t0 < 3:
        added = w.poll_once()
        time.sleep(0.05)
    assert time.monotonic() - t0 < 1.0  # classified within a second of being complete
    assert [r.label for r in added] == ["eosinophil"]
    assert len(_rows(out)) == 1
    (folder / "copy_of_same.png").write_bytes(data)  # same bytes under another name: a row marked duplicate
    time.sleep(0.4)
    w.poll_once()
    time.sleep(0.4)
    w.poll_once()
    rows = _rows(out)
    assert len(rows) == 2 and rows[1]["error"].startswith("duplicate of cell_001.png")
    w2 = FolderWatcher(folder, model, out, settle=0.3)  # a restart on the same CSV
    (folder / "blue.png").write_bytes(_png((0, 0, 250)))
    for _ in range(10):
        w2.poll_once()
        time.sleep(0.1)
    rows = _rows(out)
    assert [r["predicted_label"] for r in rows] == ["eosinophil", "eosinophil", "lymphocyte"]  # no repeats


def test_cli_watch_runs_and_stops_cleanly(tmp_path, tiny_model_path):
    folder, out = tmp_path / "cam", tmp_path / "w.csv"
    folder.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "hv_desktop", "--model", str(tiny_model_path), "watch", str(folder), "--csv", str(out)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        (folder / "g.png").write_bytes(_png((0, 250, 0)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (out.exists() and len(_rows(out)) == 1):
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=10)
    assert p.returncode == 0, stderr
    assert "g.png\tmonocyte" in stdout and "Traceback" not in stderr
    assert [r["predicted_label"] for r in _rows(out)] == ["monocyte"]
