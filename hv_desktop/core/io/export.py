"""CSV export of results and the differential summary, written atomically.

Every file the user gets is written to a temporary file in the destination
folder, flushed to disk, then renamed over the target: a crash, a full disk or
a kill mid-write leaves the previous file intact, never a half-written one.
Cells that a spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from hv_desktop.core.cases.differential import Differential
from hv_desktop.core.inference.result import NO_CELL, Result
from hv_desktop.core.system.paths import path_to_text
from hv_desktop.core.system.writing import make_temp_beside, safe_cell


def labels_of(results: Sequence[Result], fallback: Sequence[str]) -> list[str]:
    """The class columns of rows: the classes of the model that produced them (a classified row's probabilities,
    in their order), else ``fallback``. Why: after Load Model, a signed case's CSV took the new model's classes
    and lost its own probabilities (issue 30)."""
    for r in results:
        if r.ok and r.probabilities:
            return list(r.probabilities)
    return list(fallback)


#: A camera field's cell (``--cells all``, issue 28): its number in the field, its box in the stored image's pixels,
#: whether the border cuts it, and, on the one row of a field with none, NO_CELL.
CELL_COLUMNS = ["cell_index", "cell_x0", "cell_y0", "cell_x1", "cell_y1", "cell_at_edge", "cell_note"]


def csv_columns(labels: Sequence[str], cells: bool = False) -> list[str]:
    """The CSV's header; ``cells``: one row per found cell of a camera field (CELL_COLUMNS after the others)."""
    return (
        ["path", "file_name", "predicted_label", "confidence"]
        + [f"p_{lab}" for lab in labels]
        + ["needs_review", "typicality", "reviewer_label", "error", "model_name", "model_version", "sha256", "timestamp"]
        + (CELL_COLUMNS if cells else [])
    )


def cell_values(r: Result) -> list[str]:
    """A row's CELL_COLUMNS (empty for a file classified as one cell, or one that failed)."""
    box = [""] * 4 if r.cell_box is None else [str(v) for v in r.cell_box]
    index = "" if r.cell_index is None else str(r.cell_index)
    edge = "" if r.cell_index is None else ("yes" if r.cell_at_edge else "no")
    return [index, *box, edge, NO_CELL if r.no_cell else ""]


def result_row(r: Result, labels: Sequence[str], model_name: str, model_version: str, cells: bool = False) -> list[str]:
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
    if cells:
        row += cell_values(r)
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
        self,
        path: str | os.PathLike,
        labels: Sequence[str],
        model_name: str,
        model_version: str,
        extra: Sequence[str] = (),
        cells: bool = False,
    ):
        self.target = Path(path)
        self.labels, self.model_name, self.model_version = list(labels), model_name, model_version
        self.cells = cells
        fd, self._tmp = make_temp_beside(self.target)
        self._fh = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._fh, lineterminator="\r\n")
        self._writer.writerow(csv_columns(self.labels, cells) + list(extra))
        self.rows = 0

    def write(self, r: Result, extra: Sequence[str] | None = None) -> None:
        """One row; ``extra``: values of the extra columns given at creation (e.g. the heatmap's path)."""
        row = result_row(r, self.labels, self.model_name, self.model_version, self.cells)
        self._writer.writerow(row + [safe_cell(path_to_text(v)) for v in extra] if extra else row)
        self.rows += 1

    def __enter__(self) -> StreamingCsv:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def summary_csv(diff: Differential) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["class", "count", "percent"])
    for lab, n in diff.counts.items():
        w.writerow([safe_cell(lab), n, f"{diff.percent(lab):.1f}"])
    w.writerow(["classified", diff.classified, "100.0" if diff.classified else "0.0"])
    w.writerow(["needs_review", diff.flagged, f"{100.0 * diff.flagged / diff.classified:.1f}" if diff.classified else "0.0"])
    w.writerow(["failed", diff.failed, ""])
    if diff.cells:
        w.writerow(["edge_cells_counted" if diff.edge_counted else "edge_cells_left_out", diff.edge_cells, ""])
        w.writerow(["fields_with_counted_cells", diff.fields, ""])
        w.writerow(["fields_without_white_cell", diff.no_cell, ""])
    w.writerow(["total_files", diff.files if diff.cells else diff.total, ""])
    return buf.getvalue()


def summary_text(diff: Differential) -> str:
    width = max([len(x) for x in diff.counts] + [12])
    lines = [f"{lab:<{width}} {n:>6} {diff.percent(lab):6.1f} %" for lab, n in diff.counts.items()]
    lines.append(f"{'classified':<{width}} {diff.classified:>6}")
    lines.append(f"{'needs review':<{width}} {diff.flagged:>6}")
    lines.append(f"{'failed':<{width}} {diff.failed:>6}")
    if diff.cells:
        lines.append(cells_line(diff))
    return "\n".join(lines)


def cells_line(diff: Differential) -> str:
    """What a camera-field differential counted, in words: cells, the fields they came from, the cells at the
    edge and the fields without a white cell."""
    edge = f"{diff.edge_cells} at the edge {'counted' if diff.edge_counted else 'left out'}"
    return (
        f"{diff.classified} cell{'s' if diff.classified != 1 else ''} counted from {diff.fields} "
        f"field{'s' if diff.fields != 1 else ''} ({edge}; {diff.no_cell} with no white cell; {diff.files} files)"
    )
