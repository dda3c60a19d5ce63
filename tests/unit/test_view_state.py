"""The window's state that is not view, Qt-free (issue 19): run queue, watch folder,
review navigation and the preview cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from hv_desktop.core.cases.review import ReviewSession, next_awaiting
from hv_desktop.core.cases.runs import RunQueue, case_name
from hv_desktop.core.inference import preview
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.folder_watch import WatchedFolder


def _result(name: str, sha: str = "x", flagged: bool = False, label: str = "monocyte") -> Result:
    return Result(Path(name), label=label, confidence=0.95, needs_review=flagged, sha256=sha)


def test_run_queue_keeps_one_row_per_file_and_counts_the_rest(tmp_path: Path) -> None:
    q = RunQueue()
    q.begin("S-1")
    first = q.fresh([_result("a.png", "1"), _result("b.png", "2")])
    assert [r.case for r in first] == ["S-1", "S-1"]
    q.begin("S-1")
    again = q.fresh([_result("a.png", "1"), _result("a.png", "changed"), _result("c.png", "3")])
    assert [(str(r.path), r.sha256) for r in again] == [("a.png", "changed"), ("c.png", "3")]
    assert q.done == 3 and q.skipped == 1
    assert "1 already in this session" in q.finish_message(cancelled=False)
    q.pending.append([Path("x")])
    assert q.next_run(cancelled=True) is None and not q.pending  # a cancel drops the queue
    (tmp_path / "smear-7").mkdir()
    assert case_name([tmp_path / "x.png", tmp_path / "smear-7"]) == "smear-7"  # a folder names the case
    assert case_name([tmp_path / "smear-7" / "a.png"]) == "smear-7"  # else the files' folder


def test_next_awaiting_wraps_and_accept_unflagged_uses_the_same_rows() -> None:
    shown = [_result("a", flagged=True), _result("b"), _result("c", flagged=True)]
    assert next_awaiting(shown, 0) == 2 and next_awaiting(shown, 2) == 0 and next_awaiting(shown, -1) == 0
    assert next_awaiting([_result("b")], 0) is None
    session = ReviewSession()
    session.results.extend(shown)
    rows = session.unflagged_rows()
    assert rows == [1] and session.accept_unflagged() == rows


def test_watched_folder_returns_only_new_files_once_settled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    Image.new("RGB", (8, 8)).save(tmp_path / "old.png")
    watched = WatchedFolder()
    monkeypatch.setattr(WatchedFolder, "SETTLE", 0.05)
    watched.start(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "new.png")
    ready: list[Path] = []
    for _ in range(40):
        ready += watched.poll()
        time.sleep(0.02)
    assert [p.name for p in ready] == ["new.png"]
    watched.stop()
    assert not watched.active and watched.poll() == []


def test_preview_cache_serves_a_repeat_and_sees_a_changed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cell.png"
    Image.new("RGB", (30, 20), (200, 0, 0)).save(path)
    calls: list[Path] = []
    real = preview.decode

    def counted(p: Path, prep: object) -> object:
        calls.append(p)
        return real(p, prep)  # type: ignore[arg-type]

    monkeypatch.setattr(preview, "decode", counted)
    cache = preview.PreviewCache(size=2)
    first = cache.get(path, None)
    assert cache.get(path, None) is first and len(calls) == 1
    import os

    Image.new("RGB", (30, 20), (0, 0, 200)).save(path)
    os.utime(path, ns=(1, 1))  # a new modification time: decoded again
    assert cache.get(path, None) is not first and len(calls) == 2
    shown = preview.render(_result(str(path)), None, preview.PreviewOptions(), cache)
    assert shown.pixels is not None and shown.pixels.shape == (20, 30, 3)
    missing = preview.render(_result(str(tmp_path / "gone.png")), None, preview.PreviewOptions(), cache)
    assert missing.pixels is None and missing.error
