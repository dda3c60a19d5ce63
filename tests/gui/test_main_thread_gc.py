"""Garbage in reference cycles is collected on the GUI thread, never on a decode thread (a CI run crashed with a
segfault "Garbage-collecting" in a decode thread)."""

from __future__ import annotations

import gc
import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402

from hv_desktop.gui.main_window import MainWindow  # noqa: E402


class _Cycle:
    died_on: list[str] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cycle.died_on.append(threading.current_thread().name)


def test_cycles_die_on_the_gui_thread_while_other_threads_allocate(qtbot, tmp_path, tiny_model_path):
    w = MainWindow(model_path=tiny_model_path, settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(w)
    assert not gc.isenabled()  # automatic collection would run on whichever thread allocates
    for _ in range(50):
        _Cycle()

    held: list[list] = []

    def churn() -> None:  # a decode thread allocating (and keeping) far past every threshold
        held.append([[] for _ in range(100_000)])

    t = threading.Thread(target=churn, name="decoder")
    t.start()
    t.join()
    assert "decoder" not in _Cycle.died_on
    qtbot.waitUntil(lambda: len(_Cycle.died_on) >= 50, timeout=5000)  # the GUI thread's timer saw the thresholds
    assert set(_Cycle.died_on) == {threading.main_thread().name}
    held.clear()
