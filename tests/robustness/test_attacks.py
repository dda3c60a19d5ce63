"""Every attack of the hostile review (issue 21), reproduced as described, with the documented outcome."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model, ModelError
from hv_desktop.core.io.watch import FolderWatcher
from hv_desktop.core.storage.session import SessionError, load_session, save_session
from hv_desktop.core.system.paths import path_to_text, text_to_path
from tests.support import ROOT
from tests.support.onnx_factory import tiny_model

POSIX = os.name == "posix"
LATIN1 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not valid UTF-8


def run(*args, cwd=ROOT, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "hv_desktop", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def _png(path: Path, colour=(250, 5, 5), size=(24, 24)) -> Path:
    Image.new("RGB", size, colour).save(path, "PNG")
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- 1. names that are not UTF-8


def test_path_text_round_trips_any_bytes():
    for raw in (b"/data/caf\xe9.jpg", b"rel/\xff\xfe%41.png", b"/ok/caf\xc3\xa9 100%.jpg"):
        p = Path(os.fsdecode(raw))
        text = path_to_text(p)
        text.encode("utf-8")  # writable by any UTF-8 writer
        assert os.fsencode(text_to_path(text)) == raw
    assert path_to_text(Path("/normal/cell 1.jpg")) == "/normal/cell 1.jpg"  # ordinary names unchanged


@pytest.mark.skipif(not POSIX, reason="byte file names are POSIX")
def test_classify_non_utf8_name_writes_csv(tmp_path, tiny_model_path):
    folder = tmp_path / "usb"
    folder.mkdir()
    _png(folder / LATIN1)
    _png(folder / "normal.png", (5, 5, 250))
    out = tmp_path / "out.csv"
    r = run("--model", tiny_model_path, "classify", folder, "--csv", out, "-q")
    assert r.returncode == 0, r.stderr
    rows = _rows(out)
    assert len(rows) == 2 and all(row["predicted_label"] for row in rows)
    odd = next(row for row in rows if row["path"].startswith("file:"))
    assert os.fsencode(text_to_path(odd["path"])) == os.fsencode(folder / LATIN1)


@pytest.mark.skipif(not POSIX, reason="byte file names are POSIX")
def test_watch_non_utf8_name_survives_restart(tmp_path, tiny_model_path):
    folder, out = tmp_path / "cam", tmp_path / "w.csv"
    folder.mkdir()
    model = Model(tiny_model_path)
    w = FolderWatcher(folder, model, out, settle=0.05)
    _png(folder / LATIN1)
    for _ in range(20):
        w.poll_once()
        time.sleep(0.05)
    assert len(_rows(out)) == 1
    w2 = FolderWatcher(folder, model, out, settle=0.05)  # a restart reads the row back
    _png(folder / "next.png", (5, 5, 250))
    for _ in range(20):
        w2.poll_once()
        time.sleep(0.05)
    rows = _rows(out)
    assert len(rows) == 2 and rows[0]["path"].startswith("file:")


@pytest.mark.skipif(not POSIX, reason="byte file names are POSIX")
def test_session_with_non_utf8_name_round_trips(tmp_path, tiny_model_path):
    _png(tmp_path / LATIN1)
    results = list(classify_paths([tmp_path / LATIN1], Model(tiny_model_path)))
    save_session(tmp_path / "s.json", results, "m", "1")
    back, _ = load_session(tmp_path / "s.json")
    assert os.fsencode(back[0].path) == os.fsencode(tmp_path / LATIN1)


@pytest.mark.skipif(not POSIX, reason="byte file names are POSIX")
def test_gui_autosave_keeps_a_non_utf8_name(qtbot, tmp_path, tiny_model_path):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from hv_desktop.gui.main_window import MainWindow

    folder = tmp_path / "usb"
    folder.mkdir()
    _png(folder / LATIN1)
    autosave = tmp_path / "autosave.json"
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w1 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=autosave)
    qtbot.addWidget(w1)
    with qtbot.waitSignal(w1.runFinished, timeout=30000):
        w1.classify([folder])
    w1.workspace.assign(0, "monocyte")
    w1.autosave(wait=True)
    assert w1.workspace.archive is not None  # written to the case archive, not failed silently
    cell = w1.workspace.archive.load_case(w1.review.current).results[0]
    assert os.fsencode(cell.path) == os.fsencode(folder / LATIN1) and cell.reviewer_label == "monocyte"
    w2 = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=autosave)
    qtbot.addWidget(w2)
    qtbot.waitUntil(lambda: w2.results.rowCount() == 1, timeout=10000)
    r = w2.results.results[0]
    assert os.fsencode(r.path) == os.fsencode(folder / LATIN1) and r.reviewer_label == "monocyte"


# ---------------------------------------------------------------- 2. special files


@pytest.mark.skipif(not POSIX, reason="FIFOs and sockets are POSIX")
def test_special_files_get_rows_and_never_block(tmp_path, tiny_model_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    _png(folder / "good.png")
    os.mkfifo(folder / "fifo.jpg")
    os.symlink(folder / "fifo.jpg", folder / "link_to_fifo.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.symlink(folder / "self.jpg", folder / "self.jpg")  # a link to itself
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.png"))
    try:
        out = tmp_path / "o.csv"
        t0 = time.monotonic()
        r = run("--model", tiny_model_path, "classify", folder, "--csv", out, "-q", timeout=30)
        assert time.monotonic() - t0 < 30
        assert r.returncode == 0, r.stderr
        rows = {row["file_name"]: row for row in _rows(out)}
        assert rows["good.png"]["predicted_label"]
        for name in ("fifo.jpg", "link_to_fifo.jpg", "zero.jpg", "sock.png"):
            assert "not a regular file" in rows[name]["error"], (name, rows[name])
        assert rows["self.jpg"]["error"] == "symlink loop"
        # named directly, too
        r = run("--model", tiny_model_path, "classify", folder / "fifo.jpg", "--csv", out, "-q", timeout=30)
        assert r.returncode == 0 and "not a regular file" in _rows(out)[0]["error"]
    finally:
        sock.close()


@pytest.mark.skipif(not POSIX, reason="FIFOs are POSIX")
def test_fifo_model_and_preview_do_not_block(tmp_path):
    from hv_desktop.core.imaging.preprocess import ImageError, open_image

    os.mkfifo(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="not a regular file"):
        Model(tmp_path / "m.onnx")
    os.mkfifo(tmp_path / "p.png")
    with pytest.raises(ImageError, match="not a regular file"):
        open_image(tmp_path / "p.png")


# ---------------------------------------------------------------- 3-4. models


def _external_model(folder: Path) -> Path:
    path = tiny_model(folder / "ext.onnx")
    proto = onnx.load(str(path))
    w = next(t for t in proto.graph.initializer if t.name == "W")
    (folder / "weights.bin").write_bytes(onnx.numpy_helper.to_array(w).tobytes())
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(12 * 4))):
        e = w.external_data.add()
        e.key, e.value = k, v
    onnx.save(proto, str(path))
    return path


def test_external_data_refused_even_from_its_working_directory(tmp_path, monkeypatch):
    path = _external_model(tmp_path)
    monkeypatch.chdir(tmp_path)  # where onnxruntime would have found weights.bin
    with pytest.raises(ModelError, match="external data"):
        Model(path)
    r = run("--model", path, "classify", tmp_path, "--csv", tmp_path / "o.csv", cwd=tmp_path)
    assert r.returncode == 3 and "external data" in r.stderr and "Traceback" not in r.stderr


def _with_raw_metadata(folder: Path, text: str) -> Path:
    path = tiny_model(folder / "m.onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    helper.set_model_props(proto, {"hematovision": text})
    onnx.save(proto, str(path))
    return path


BASE_META = {"labels": ["eosinophil", "lymphocyte", "monocyte", "neutrophil"], "scores_output": "logits"}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(dict(BASE_META, preprocessing=[])),
        json.dumps(dict(BASE_META, preprocessing="whole")),
        json.dumps(dict(BASE_META, preprocessing={"width": 32, "height": 32})).replace('"width": 32', '"width": Infinity'),
        json.dumps(dict(BASE_META, preprocessing={"width": 32, "height": 32})).replace('"width": 32', '"width": 1e400'),
        json.dumps(dict(BASE_META, preprocessing={"width": 32, "height": 32}, scores_output=["logits"])),
        json.dumps(dict(BASE_META, preprocessing={"width": 32, "height": 32}, review_output={"a": 1})),
        json.dumps(dict(BASE_META, preprocessing={"width": 32, "height": 32}, temperature="hot")),
        json.dumps(dict(BASE_META, labels="eosinophil")),
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["prep-list", "prep-str", "width-inf", "width-1e400", "output-list", "output-object", "temp-str", "labels-str", "deep"],
)
def test_wrongly_typed_metadata_is_a_model_error(tmp_path, text):
    path = _with_raw_metadata(tmp_path, text)
    with pytest.raises(ModelError):
        Model(path)
    r = run("--model", path, "classify", tmp_path, "--csv", tmp_path / "o.csv")
    assert r.returncode == 3 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_endless_loop_model_is_refused(tmp_path):
    path = tiny_model(tmp_path / "loop.onnx")
    proto = onnx.load(str(path))
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )
    proto.graph.node.append(helper.make_node("Loop", ["", "true"], [], body=body))
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(True), "true"))
    onnx.save(proto, str(path))
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="control flow"):
        Model(path)
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------- 5. sessions

GOOD = {
    "path": "/x/a.png",
    "label": "monocyte",
    "confidence": 0.9,
    "probabilities": {"monocyte": 0.9},
    "needs_review": False,
    "typicality": 0.5,
    "error": None,
    "sha256": "a" * 64,
    "timestamp": "",
    "reviewer_label": None,
}


def _session(results, **head) -> str:
    return json.dumps({"format": "hematovision-session", "version": 1, "results": results, **head})


@pytest.mark.parametrize(
    "text",
    [
        _session([GOOD]).replace('"version": 1', '"version": Infinity'),
        '{"format": "hematovision-session", "version": 1, "results": ' + "[" * 200_000 + "]" * 200_000 + "}",
        _session([GOOD])[:40],  # truncated
        _session([GOOD], version=99),  # a newer HematoVision
        "[]",
    ],
    ids=["version-inf", "deep", "truncated", "newer", "not-object"],
)
def test_unrestorable_sessions_are_session_errors(tmp_path, text):
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(SessionError):
        load_session(tmp_path / "s.json")


def test_wrongly_typed_results_are_left_out(tmp_path):
    bad = [
        dict(GOOD, label=3),
        dict(GOOD, label={"x": 1}),
        dict(GOOD, confidence="high"),
        dict(GOOD, reviewer_label=["monocyte"]),
        dict(GOOD, confidence=float("nan")),
    ]
    (tmp_path / "s.json").write_text(_session([GOOD, *bad]).replace("NaN", "1e999"))
    results, header = load_session(tmp_path / "s.json")
    assert len(results) == 1 and header["skipped"] == 5


@pytest.mark.parametrize(
    "text",
    [
        _session([GOOD]).replace('"version": 1', '"version": Infinity'),
        _session([GOOD])[:40],
        _session([GOOD], version=99),
    ],
    ids=["version-inf", "truncated", "newer"],
)
def test_gui_starts_and_keeps_an_unrestorable_session(qtbot, tmp_path, tiny_model_path, text):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from hv_desktop.gui.main_window import MainWindow

    autosave = tmp_path / "autosave.json"
    autosave.write_text(text)
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w = MainWindow(model_path=tiny_model_path, settings=settings, autosave_path=autosave)
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: "could not be restored" in w.statusBar().currentMessage(), timeout=10000)
    backups = list(tmp_path.glob("autosave.unrestorable-*.json"))
    assert len(backups) == 1 and backups[0].read_text() == text  # kept, byte for byte
    assert str(backups[0]) in w.statusBar().currentMessage()
    w.close()  # the close-time autosave writes a new session, never over the backup
    assert backups[0].read_text() == text


@pytest.mark.slow
def test_large_session_restores_off_the_gui_thread(qtbot, tmp_path, tiny_model_path):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from hv_desktop.gui.main_window import MainWindow

    autosave = tmp_path / "autosave.json"
    autosave.write_text(_session([dict(GOOD, path=f"/gone/{i}.png", sha256=f"{i:064d}") for i in range(10_000)]))
    w = MainWindow(
        model_path=tiny_model_path, settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat), autosave_path=autosave
    )
    qtbot.addWidget(w)
    assert w.results.rowCount() == 0  # the constructor returned before the session was read
    qtbot.waitUntil(lambda: w.results.rowCount() == 10_000, timeout=30000)


# ---------------------------------------------------------------- 6. watch


def test_watch_waits_for_a_camera_that_pauses_after_the_header(tmp_path, tiny_model_path):
    folder, out = tmp_path / "cam", tmp_path / "w.csv"
    folder.mkdir()
    data = _png(tmp_path / "src.png", (5, 5, 250)).read_bytes()
    w = FolderWatcher(folder, Model(tiny_model_path), out, settle=0.1)
    target = folder / "cell.png"
    target.write_bytes(data[:20])  # the header, then a pause longer than the settle time
    for _ in range(6):
        w.poll_once()
        time.sleep(0.05)
    target.write_bytes(data)
    for _ in range(20):
        w.poll_once()
        time.sleep(0.05)
    rows = _rows(out)
    assert [(r["predicted_label"], r["error"]) for r in rows] == [("lymphocyte", "")]


def test_watch_classifies_a_file_replaced_under_the_same_name(tmp_path, tiny_model_path):
    folder, out = tmp_path / "cam", tmp_path / "w.csv"
    folder.mkdir()
    w = FolderWatcher(folder, Model(tiny_model_path), out, settle=0.05)
    _png(folder / "cell.png", (250, 5, 5))
    for _ in range(10):
        w.poll_once()
        time.sleep(0.05)
    tmp = _png(tmp_path / "new.png", (5, 5, 250))
    os.replace(tmp, folder / "cell.png")  # atomically replaced
    for _ in range(10):
        w.poll_once()
        time.sleep(0.05)
    assert [r["predicted_label"] for r in _rows(out)] == ["eosinophil", "lymphocyte"]


# ---------------------------------------------------------------- 7. outputs that destroy data


def test_outputs_never_overwrite_inputs_or_each_other(tmp_path, tiny_model_path):
    folder = tmp_path / "in"
    folder.mkdir()
    img = _png(folder / "a.png")
    before = img.read_bytes()
    cases = [
        ("classify", folder, "--csv", tmp_path / "x.csv", "--summary", tmp_path / "x.csv"),
        ("classify", folder, "--csv", img),
        ("classify", img, "--csv", img),
        ("classify", folder, "--csv", tmp_path / "r.csv", "--report", img),
    ]
    for args in cases:
        r = run("--model", tiny_model_path, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert img.read_bytes() == before
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.skipif(not POSIX, reason="symlinks and FIFOs")
def test_outputs_never_replace_links_or_special_files(tmp_path, tiny_model_path):
    _png(tmp_path / "a.png")
    target = tmp_path / "real.csv"
    target.write_text("keep")
    os.symlink(target, tmp_path / "link.csv")
    os.mkfifo(tmp_path / "pipe.csv")
    for out in ("link.csv", "pipe.csv"):
        r = run("--model", tiny_model_path, "classify", tmp_path / "a.png", "--csv", tmp_path / out, timeout=30)
        assert r.returncode == 2, (out, r.stderr)
    assert (tmp_path / "link.csv").is_symlink() and target.read_text() == "keep"
    assert (tmp_path / "pipe.csv").is_fifo()


# ---------------------------------------------------------------- 8. resources


def test_eps_named_jpg_never_reaches_the_eps_decoder(tmp_path, tiny_model_path):
    (tmp_path / "x.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    (r,) = list(classify_paths([tmp_path / "x.jpg"], Model(tiny_model_path)))
    assert r.error and "not an image" in r.error


def test_onnxruntime_telemetry_is_switched_off(tiny_model_path, monkeypatch):
    import onnxruntime as ort

    calls = []
    monkeypatch.setattr(ort, "disable_telemetry_events", lambda: calls.append(1), raising=False)
    Model(tiny_model_path)
    assert calls


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc")
def test_80_megapixel_pngs_stay_under_1_gb(tmp_path, tiny_model_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    big = Image.new("RGBA", (10_000, 8_000), (200, 120, 200, 180))  # with transparency: the costly case
    big.save(folder / "h0.png", compress_level=1)
    for i in range(1, 6):
        os.link(folder / "h0.png", folder / f"h{i}.png")
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would carry pytest's own size (1.1 GB with TF loaded)
    code = (
        "import sys;from hv_desktop.cli import main;rc=main(sys.argv[1:]);"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')));sys.exit(rc)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = ["--model", tiny_model_path, "classify", folder, "--csv", tmp_path / "o.csv", "-q"]
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stdout.strip().splitlines()[-1]) / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 1024, peak_mb
    assert all(row["predicted_label"] for row in _rows(tmp_path / "o.csv"))
