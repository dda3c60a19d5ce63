"""The Qt binding itself: PySide6 6.12.0 took one reference off ``True`` on every signal emitted from Python, so after
a few hundred emits Python aborted ("bool_dealloc: deallocating True or False"), at exit or during a garbage
collection mid-run. pyproject.toml excludes that release; this test fails on any release that does it again."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    plain = Signal()
    number = Signal(int)
    anything = Signal(object)


def test_emitting_signals_keeps_the_reference_counts_of_true_false_and_none(qapp):
    e = _Emitter()
    e.plain.connect(lambda: None)
    e.number.connect(lambda _v: None)
    e.anything.connect(lambda _v: None)
    before = [sys.getrefcount(x) for x in (True, False, None)]
    for _ in range(200):
        e.plain.emit()
        e.number.emit(1)
        e.anything.emit(None)
    after = [sys.getrefcount(x) for x in (True, False, None)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 0, 0]
