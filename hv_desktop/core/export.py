"""CSV export of results and the differential summary, written atomically.

Every file the user gets is written to a temporary file in the destination
folder, flushed to disk, then renamed over the target: a crash, a full disk or
a kill mid-write leaves the previous file intact, never a half-written one.
Cells that a spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from hv_desktop.core.result import Result
from hv_desktop.core.paths import path_to_text
from hv_desktop.core.review import awaiting_review

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: object) -> str:
    """Text a spreadsheet will show, not execute (OWASP CSV-injection rule)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def make_temp_beside(target: Path) -> tuple[int, str]:
    """A temporary file in the target's folder (so the final rename is atomic), with
    ordinary permissions rather than mkstemp's owner-only ones."""
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, _FILE_MODE)
    except OSError:
        pass
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, nothing between."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = make_temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def labels_of(results: Sequence[Result], fallback: Sequence[str]) -> list[str]:
    """The class columns of rows: the classes of the model that produced them (a classified row's probabilities,
    in their order), else ``fallback``. Why: after Load Model, a signed case's CSV took the new model's classes
    and lost its own probabilities (issue 30)."""
    for r in results:
        if r.ok and r.probabilities:
            return list(r.probabilities)
    return list(fallback)


def csv_columns(labels: Sequence[str]) -> list[str]:
    return (
        ["path", "file_name", "predicted_label", "confidence"]
        + [f"p_{lab}" for lab in labels]
        + ["needs_review", "typicality", "reviewer_label", "error", "model_name", "model_version", "sha256", "timestamp"]
    )


def result_row(r: Result, labels: Sequence[str], model_name: str, model_version: str) -> list[str]:
    row = [path_to_text(r.path), path_to_text(r.path.name), r.label or "", "" if r.confidence is None else f"{r.confidence:.4f}"]
    row += ["" if not r.probabilities else f"{r.probabilities.get(lab, 0.0):.4f}" for lab in labels]
    row += [
        "" if not r.ok else ("yes" if r.needs_review else "no"),
        "" if r.typicality is None else f"{r.typicality:.4f}",
        r.reviewer_label or "",
        r.error or "",
        r.model_name or model_name,  # the model that produced the row, not the one loaded now
        r.model_version or model_version,
        r.sha256 or "",
        r.timestamp,
    ]
    return [safe_cell(v) for v in row]


def write_csv(
    path: str | os.PathLike,
    results: Iterable[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    case: dict[str, str] | None = None,
) -> None:
    """UTF-8 with BOM (so Excel reads accents and non-Latin names right), atomic. ``case``: columns with one
    value for every row (e.g. signed_off_by, signed_off_at), added after the standard ones."""
    case = case or {}
    with StreamingCsv(path, labels, model_name, model_version, extra=list(case)) as out:
        for r in results:
            out.write(r, list(case.values()) if case else None)


class StreamingCsv:
    """Rows go to a temporary file as results arrive (memory stays flat); the
    target appears, complete, only on a clean exit from the ``with`` block."""

    def __init__(
        self, path: str | os.PathLike, labels: Sequence[str], model_name: str, model_version: str, extra: Sequence[str] = ()
    ):
        self.target = Path(path)
        self.labels, self.model_name, self.model_version = list(labels), model_name, model_version
        fd, self._tmp = make_temp_beside(self.target)
        self._fh = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._fh, lineterminator="\r\n")
        self._writer.writerow(csv_columns(self.labels) + list(extra))
        self.rows = 0

    def write(self, r: Result, extra: Sequence[str] | None = None) -> None:
        """One row; ``extra``: values of the extra columns given at creation (e.g. the heatmap's path)."""
        row = result_row(r, self.labels, self.model_name, self.model_version)
        self._writer.writerow(row + [safe_cell(path_to_text(v)) for v in extra] if extra else row)
        self.rows += 1

    def __enter__(self) -> "StreamingCsv":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None:
                os.replace(self._tmp, self.target)
                return
        except BaseException:
            self._discard()
            raise
        self._discard()

    def _discard(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except OSError:
            pass


@dataclass
class Differential:
    """Counts per class over classified cells, plus flagged and failed files."""

    counts: dict[str, int]
    classified: int
    flagged: int
    failed: int
    reviewed: int

    @property
    def total(self) -> int:
        return self.classified + self.failed

    def percent(self, label: str) -> float:
        return 100.0 * self.counts.get(label, 0) / self.classified if self.classified else 0.0


class Tally:
    """Running differential, so a 100,000-file run needs no list of results."""

    def __init__(self, labels: Sequence[str], reviewed: bool = False) -> None:
        self.labels, self.reviewed = list(labels), reviewed
        self.counts: Counter[str] = Counter()
        self.classified = self.flagged = self.failed = self.n_reviewed = 0

    def add(self, r: Result) -> None:
        if not r.ok:
            self.failed += 1
            return
        self.classified += 1
        if r.reviewer_label:
            self.n_reviewed += 1
        label = (r.reviewer_label or r.label) if self.reviewed else r.label
        self.counts[label or ""] += 1
        if awaiting_review(r):
            self.flagged += 1

    def result(self) -> Differential:
        ordered = {lab: self.counts.get(lab, 0) for lab in self.labels}
        for lab, n in self.counts.items():  # reviewer labels outside the model's classes
            if lab not in ordered:
                ordered[lab] = n
        return Differential(ordered, self.classified, self.flagged, self.failed, self.n_reviewed)


def differential(results: Iterable[Result], labels: Sequence[str], reviewed: bool = False) -> Differential:
    """The white-cell differential; ``reviewed=True`` counts the reviewer's label where set."""
    tally = Tally(labels, reviewed)
    for r in results:
        tally.add(r)
    return tally.result()


def summary_csv(diff: Differential) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["class", "count", "percent"])
    for lab, n in diff.counts.items():
        w.writerow([safe_cell(lab), n, f"{diff.percent(lab):.1f}"])
    w.writerow(["classified", diff.classified, "100.0" if diff.classified else "0.0"])
    w.writerow(["needs_review", diff.flagged, f"{100.0 * diff.flagged / diff.classified:.1f}" if diff.classified else "0.0"])
    w.writerow(["failed", diff.failed, ""])
    w.writerow(["total_files", diff.total, ""])
    return buf.getvalue()


def summary_text(diff: Differential) -> str:
    width = max([len(x) for x in diff.counts] + [12])
    lines = [f"{lab:<{width}} {n:>6} {diff.percent(lab):6.1f} %" for lab, n in diff.counts.items()]
    lines.append(f"{'classified':<{width}} {diff.classified:>6}")
    lines.append(f"{'needs review':<{width}} {diff.flagged:>6}")
    lines.append(f"{'failed':<{width}} {diff.failed:>6}")
    return "\n".join(lines)
