"""A printable PDF report of a batch, for remote consultation and the record.

Built with Qt's own QTextDocument + QPdfWriter (no extra dependency): case
details, model and intended use, the differential by model and by review,
flagged and failed counts, and a thumbnail gallery per class (optionally with
heatmaps). Qt paginates and numbers the pages. Every text from the user or a
file name is HTML-escaped.
"""

from __future__ import annotations

from hv_desktop import __version__

import html
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QSizeF, QUrl
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QPdfWriter, QTextDocument

from hv_desktop.core.batch import Result
from hv_desktop.core.export import atomic_write_bytes, differential
from hv_desktop.core.model import INTENDED_USE, Model

THUMBS_PER_CLASS = 24
THUMB_PX = 96


@dataclass
class ReportInfo:
    case_id: str = ""
    note: str = ""
    operator: str = ""


def _qimage(arr: np.ndarray) -> QImage:
    h, w, _ = arr.shape
    return QImage(np.ascontiguousarray(arr).tobytes(), w, h, 3 * w, QImage.Format_RGB888).copy()


def _thumb(r: Result, model: Model | None, heatmaps: bool) -> QImage | None:
    from hv_desktop.core.preprocess import ImageError, open_image

    try:
        im = open_image(r.path, draft_size=(THUMB_PX * 2, THUMB_PX * 2))
    except ImageError:
        return _qimage(r.thumbnail) if r.thumbnail is not None else None
    if model is not None:
        from hv_desktop.core.heatmap import view_for

        im = view_for(model, im, heat=heatmaps)
    im.thumbnail((THUMB_PX * 2, THUMB_PX * 2))
    return _qimage(np.asarray(im.convert("RGB")))


def build_document(results: Sequence[Result], labels: Sequence[str], model_name: str, model_version: str,
                   info: ReportInfo, model: Model | None = None, heatmaps: bool = False) -> QTextDocument:
    e = html.escape
    doc = QTextDocument()
    by_model = differential(results, labels)
    by_review = differential(results, labels, reviewed=True)
    rows = []
    for lab in by_model.counts:
        rows.append(f"<tr><td>{e(lab.capitalize())}</td><td align=right>{by_model.counts[lab]}</td>"
                    f"<td align=right>{by_model.percent(lab):.1f} %</td>"
                    f"<td align=right>{by_review.counts.get(lab, 0)}</td>"
                    f"<td align=right>{by_review.percent(lab):.1f} %</td></tr>")
    for lab in by_review.counts:
        if lab not in by_model.counts:
            rows.append(f"<tr><td>{e(lab)}</td><td></td><td></td><td align=right>{by_review.counts[lab]}</td>"
                        f"<td align=right>{by_review.percent(lab):.1f} %</td></tr>")
    now = datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        "<html><body style='font-family: sans-serif; font-size: 10pt;'>",
        "<h1 style='font-size: 17pt;'>HematoVision — white blood cell report</h1>",
        "<table cellspacing=0 cellpadding=3>",
        f"<tr><td><b>Case / sample ID</b></td><td>{e(info.case_id) or '—'}</td></tr>",
        f"<tr><td><b>Date</b></td><td>{now}</td></tr>",
        f"<tr><td><b>Operator</b></td><td>{e(info.operator) or '—'}</td></tr>",
        f"<tr><td><b>Model</b></td><td>{e(model_name)} v{e(model_version)}</td></tr>",
        f"<tr><td><b>Software</b></td><td>HematoVision {__version__}</td></tr>",
        "</table>",
    ]
    if by_model.flagged:
        parts.append(f"<p style='color:#a00000; font-weight:bold;'>PRELIMINARY: {by_model.flagged} cell"
                     f"{'s' if by_model.flagged != 1 else ''} flagged for review "
                     f"{'have' if by_model.flagged != 1 else 'has'} not been reviewed.</p>")
    if info.note:
        parts.append(f"<p><b>Note:</b> {e(info.note).replace(chr(10), '<br>')}</p>")
    parts += [
        f"<p style='color:#444;'><i>{e(INTENDED_USE)}</i></p>",
        "<h2 style='font-size: 13pt;'>Differential</h2>",
        "<table border=1 cellspacing=0 cellpadding=4 width='90%'>",
        "<tr><th align=left>Class</th><th>By model</th><th>%</th><th>By review</th><th>%</th></tr>",
        *rows,
        "</table>",
        f"<p>Cells classified: <b>{by_model.classified}</b> &nbsp;·&nbsp; reviewed: <b>{by_review.reviewed}</b>"
        f" &nbsp;·&nbsp; flagged for review and not yet reviewed: <b>{by_model.flagged}</b>"
        f" &nbsp;·&nbsp; files that failed: <b>{by_model.failed}</b></p>",
    ]
    failed = [r for r in results if not r.ok]
    if failed:
        parts.append("<h3 style='font-size: 11pt;'>Files that could not be classified</h3><ul>")
        for r in failed[:50]:
            parts.append(f"<li>{e(r.path.name)}: {e(r.error or '')}</li>")
        if len(failed) > 50:
            parts.append(f"<li>… and {len(failed) - 50} more (see the CSV export)</li>")
        parts.append("</ul>")

    n = 0
    for lab in list(labels):
        members = [r for r in results if r.ok and (r.reviewer_label or r.label) == lab]
        if not members:
            continue
        title = f"{lab.capitalize()} — {len(members)} cell{'s' if len(members) != 1 else ''}"
        if len(members) > THUMBS_PER_CLASS:
            title += f" (first {THUMBS_PER_CLASS} shown)"
        parts.append(f"<h2 style='font-size: 13pt;'>{e(title)}{' with heatmaps' if heatmaps else ''}</h2>")
        parts.append("<table cellspacing=4 cellpadding=2><tr>")
        for i, r in enumerate(members[:THUMBS_PER_CLASS]):
            if i and i % 5 == 0:
                parts.append("</tr><tr>")
            img = _thumb(r, model, heatmaps)
            flag = " ⚑" if r.needs_review and not r.reviewer_label else ""
            caption = f"{e(r.path.name[:22])}<br>{(r.confidence or 0) * 100:.0f} %{flag}"
            if r.reviewer_label and r.reviewer_label != r.label:
                caption += f"<br>model: {e(r.label or '')}"
            if img is not None:
                url = f"thumb://{n}"
                doc.addResource(QTextDocument.ImageResource, QUrl(url), img)
                n += 1
                scale = THUMB_PX / max(img.width(), img.height(), 1)  # fit a square box, keep aspect
                w, h = max(1, round(img.width() * scale)), max(1, round(img.height() * scale))
                parts.append(f"<td align=center valign=top width={THUMB_PX + 8}><img src='{url}' width={w} height={h}><br>"
                             f"<span style='font-size: 7pt;'>{caption}</span></td>")
        parts.append("</tr></table>")
    parts.append("</body></html>")
    doc.setHtml("".join(parts))
    return doc


def write_pdf(path: str | os.PathLike, results: Sequence[Result], labels: Sequence[str], model_name: str,
              model_version: str, info: ReportInfo | None = None, model: Model | None = None,
              heatmaps: bool = False) -> int:
    """Write the report atomically; returns the page count."""
    doc = build_document(results, labels, model_name, model_version, info or ReportInfo(), model, heatmaps)
    buffer = QBuffer()
    buffer.open(QIODevice.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(150)
    writer.setPageSize(QPageSize(QPageSize.A4))
    writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Millimeter)
    writer.setTitle(f"HematoVision report {info.case_id if info else ''}".strip())
    writer.setCreator("HematoVision")
    doc.setPageSize(QSizeF())  # let print() paginate and number the pages
    doc.print_(writer)
    del writer  # finishes the document
    data = bytes(buffer.data())
    if not pdf_bytes_ok(data):
        raise OSError("the PDF writer produced no document")
    atomic_write_bytes(path, data)
    return _count_pages(data)


def _count_pages(data: bytes) -> int:
    import re

    return len(re.findall(rb"/Type\s*/Page[^s]", data))


def pdf_bytes_ok(data: bytes) -> bool:
    return data.startswith(b"%PDF") and b"%%EOF" in data[-1024:]


