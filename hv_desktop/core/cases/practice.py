"""Practice mode for students: classify labelled cells yourself, get instant feedback.

A practice set is a folder with one subfolder per class (names matched to the
model's labels case-insensitively, so ``EOSINOPHIL/`` and ``eosinophil/`` both
work). Qt-free so the GUI and the tests share the scoring.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hv_desktop.core.imaging.scan import scan
from hv_desktop.core.system.paths import path_to_text
from hv_desktop.core.system.writing import atomic_write_text, safe_cell


@dataclass
class Answer:
    path: Path
    reference: str
    student: str
    model_label: str | None = None
    model_confidence: float | None = None

    @property
    def correct(self) -> bool:
        return self.student == self.reference


def load_practice_set(
    folder: Path, labels: Sequence[str], seed: int | None = None, limit: int | None = None
) -> list[tuple[Path, str]]:
    """(image, reference label) pairs, shuffled; raises ValueError if no class folder matches."""
    index = {lab.lower(): lab for lab in labels}
    items: list[tuple[Path, str]] = []
    for sub in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if sub.is_dir() and sub.name.lower() in index:
            items += [(i.path, index[sub.name.lower()]) for i in scan([sub]) if not i.error]
    if not items:
        raise ValueError(f"no class folders ({', '.join(labels)}) with images in {folder}")
    random.Random(seed).shuffle(items)
    return items[:limit] if limit else items


@dataclass
class PracticeSession:
    labels: Sequence[str]
    items: list[tuple[Path, str]]
    answers: list[Answer] = field(default_factory=list)

    @property
    def position(self) -> int:
        return len(self.answers)

    @property
    def finished(self) -> bool:
        return self.position >= len(self.items)

    def current(self) -> tuple[Path, str] | None:
        return None if self.finished else self.items[self.position]

    def answer(self, student: str, model_label: str | None = None, model_confidence: float | None = None) -> Answer:
        path, ref = self.items[self.position]
        a = Answer(path, ref, student, model_label, model_confidence)
        self.answers.append(a)
        return a

    def score(self) -> tuple[int, int]:
        return sum(a.correct for a in self.answers), len(self.answers)

    def per_class(self) -> dict[str, tuple[int, int]]:
        """reference class -> (correct, seen)."""
        out = {lab: (0, 0) for lab in self.labels}
        for a in self.answers:
            c, n = out[a.reference]
            out[a.reference] = (c + a.correct, n + 1)
        return out

    def confusion(self) -> list[list[int]]:
        """rows: reference class, columns: the student's answer."""
        idx = {lab: i for i, lab in enumerate(self.labels)}
        m = [[0] * len(self.labels) for _ in self.labels]
        for a in self.answers:
            m[idx[a.reference]][idx[a.student]] += 1
        return m

    def to_csv(self, path: Path) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(["file", "reference", "student", "correct", "model_label", "model_confidence"])
        for a in self.answers:
            w.writerow(
                [
                    safe_cell(path_to_text(a.path)),
                    a.reference,
                    a.student,
                    "yes" if a.correct else "no",
                    a.model_label or "",
                    "" if a.model_confidence is None else f"{a.model_confidence:.4f}",
                ]
            )
        w.writerow([])
        w.writerow(["confusion (rows: reference, columns: student)"] + list(self.labels))
        for lab, row in zip(self.labels, self.confusion(), strict=True):
            w.writerow([lab] + row)
        atomic_write_text(path, "\ufeff" + buf.getvalue())
