"""A printable PDF report of a batch, for remote consultation and the record.

Built with Qt's own QTextDocument + QPdfWriter (no extra dependency): case
details, model and intended use, the differential by model and by review,
flagged and failed counts, and a thumbnail gallery per class (optionally with
heatmaps), flagged and reviewer-changed cells first. Laid out page by page:
a class heading stays with its cells, and every page names the case and its
number of the total. Every text from the user or a file name is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QUrl
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QPdfWriter, QTextDocument

from hv_desktop import __version__
from hv_desktop.core.batch import Result
from hv_desktop.core.export import atomic_write_bytes, differential
from hv_desktop.core.model import INTENDED_USE, Model
from hv_desktop.core.review import SignOff, awaiting_review, reviewed_differential

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


def _summary_html(
    results: Sequence[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    info: ReportInfo,
    now: str,
    signed: SignOff | None = None,
    extras=None,
) -> str:
    e = html.escape
    by_model = differential(results, labels)
    by_review = differential(results, labels, reviewed=True)
    rd = reviewed_differential(results, labels, extras)
    reviewed_any = by_review.reviewed > 0
    rows = []
    # white cells in clinical order, by review as % of white cells; the model's columns for its own classes
    for name, n, pct in rd.white:
        model_cols = (
            f"<td align=right>{by_model.counts[name]}</td><td align=right>{by_model.percent(name):.1f} %</td>"
            if name in by_model.counts
            else "<td></td><td></td>"
        )
        review = (
            f"<td align=right>{n}</td><td align=right>{pct:.1f} %</td>"
            if reviewed_any
            else "<td align=center>–</td><td align=center>–</td>"
        )
        rows.append(f"<tr><td>{e(name.capitalize())}</td>{model_cols}{review}</tr>")
    for name, n, per in rd.per_100:
        rows.append(
            f"<tr><td>{e(name.capitalize())}</td><td></td><td></td><td align=right>{n}</td>"
            f"<td align=right>{per:.1f} /100 WBC</td></tr>"
        )
    parts = [
        "<h1 style='font-size: 16pt;'>HematoVision — white blood cell report</h1>",
        "<table cellspacing=0 cellpadding=3>",
        f"<tr><td><b>Case / sample ID</b></td><td>{e(info.case_id) or '—'}</td></tr>",
        f"<tr><td><b>Date</b></td><td>{now}</td></tr>",
        f"<tr><td><b>Operator</b></td><td>{e(info.operator) or '—'}</td></tr>",
        f"<tr><td><b>Model</b></td><td>{e(model_name)} v{e(model_version)}</td></tr>",
        f"<tr><td><b>Software</b></td><td>HematoVision {__version__}</td></tr>",
        "</table>",
    ]
    if signed is not None:
        parts.append(
            f"<p style='color:#006400; font-weight:bold;'>FINAL: signed off by {e(signed.operator)}, "
            f"{e(signed.at.replace('T', ' '))}.</p>"
        )
        if signed.unreviewed_flagged:
            parts.append(
                f"<p><b>Signed off with {signed.unreviewed_flagged} flagged cell"
                f"{'s' if signed.unreviewed_flagged != 1 else ''} not reviewed.</b> Reason: "
                f"{e(signed.override_reason)}</p>"
            )
    elif by_model.flagged:
        parts.append(
            f"<p style='color:#a00000; font-weight:bold;'>PRELIMINARY: {by_model.flagged} cell"
            f"{'s' if by_model.flagged != 1 else ''} flagged for review "
            f"{'have' if by_model.flagged != 1 else 'has'} not been reviewed.</p>"
        )
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
    if signed is None:
        parts.append(
            "<p style='margin-top: 12px;'>Not signed off. &nbsp; Signed off by: "
            "______________________ &nbsp; Date: ______________</p>"
        )
    return "".join(parts)


def _html_block(body: str) -> QTextDocument:
    doc = QTextDocument()
    doc.setHtml(f"<html><body style='font-family: sans-serif; font-size: 10pt;'>{body}</body></html>")
    return doc


@dataclass
class _Block:
    doc: QTextDocument
    keep_with_next: bool = False  # a class heading stays on the page of its first row of cells
    section: str = ""  # a row of cells: its class, named again when the class continues on a new page


def gallery_order(members: list[Result]) -> tuple[list[Result], int]:
    """(cells to show, how many more are left out): flagged-and-unreviewed cells first, then cells the
    reviewer changed, never dropped; the rest up to THUMBS_PER_CLASS in file order."""
    flagged = [r for r in members if awaiting_review(r)]
    changed = [r for r in members if r.reviewer_label and r.reviewer_label != r.label and r not in flagged]
    must = flagged + changed
    rest = [r for r in members if not any(r is m for m in must)]
    room = max(0, THUMBS_PER_CLASS - len(must))
    return must + rest[:room], max(0, len(rest) - room)


def _blocks(
    results: Sequence[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    info: ReportInfo,
    model: Model | None,
    heatmaps: bool,
    now: str,
    signed: SignOff | None = None,
    extras=None,
) -> list[_Block]:
    e = html.escape
    blocks = [_Block(_html_block(_summary_html(results, labels, model_name, model_version, info, now, signed, extras)))]
    failed = [r for r in results if not r.ok]
    for i in range(0, min(len(failed), 50), 25):
        head = "<h3 style='font-size: 11pt;'>Files that could not be classified</h3>" if i == 0 else ""
        items = "".join(f"<li>{e(r.path.name)}: {e(r.error or '')}</li>" for r in failed[i : i + 25])
        more = (
            f"<li>… and {len(failed) - 50} more (see the CSV export)</li>"
            if i + 25 >= min(len(failed), 50) and len(failed) > 50
            else ""
        )
        blocks.append(_Block(_html_block(f"{head}<ul>{items}{more}</ul>")))
    names = list(labels) + sorted(
        {r.reviewer_label for r in results if r.ok and r.reviewer_label and r.reviewer_label not in labels}
    )
    for lab in names:
        members = [r for r in results if r.ok and (r.reviewer_label or r.label) == lab]
        if not members:
            continue
        shown, left_out = gallery_order(members)
        title = f"{lab.capitalize()} — {len(members)} cell{'s' if len(members) != 1 else ''}"
        if left_out:
            title += f" ({left_out} more in the CSV; flagged and changed cells are all shown)"
        heading = f"<h2 style='font-size: 13pt;'>{e(title)}{' with heatmaps' if heatmaps else ''}</h2>"
        blocks.append(_Block(_html_block(heading), keep_with_next=True))
        for i in range(0, len(shown), 5):
            blocks.append(_Block(_thumb_row(shown[i : i + 5], model, heatmaps), section=lab.capitalize()))
    return blocks


def _thumb_row(row: list[Result], model: Model | None, heatmaps: bool) -> QTextDocument:
    e = html.escape
    doc = QTextDocument()
    cells = []
    for n, r in enumerate(row):
        img = _thumb(r, model, heatmaps)
        flag = " ⚑" if awaiting_review(r) else ""
        caption = f"{e(r.path.name[:22])}<br>{(r.confidence or 0) * 100:.0f} %{flag}"
        if r.reviewer_label and r.reviewer_label != r.label:
            caption += f"<br>model: {e(r.label or '')}"
        picture = ""
        if img is not None:
            url = f"thumb://{n}"
            doc.addResource(QTextDocument.ImageResource, QUrl(url), img)
            scale = THUMB_PX / max(img.width(), img.height(), 1)  # fit a square box, keep aspect
            w, h = max(1, round(img.width() * scale)), max(1, round(img.height() * scale))
            picture = f"<img src='{url}' width={w} height={h}><br>"
        cells.append(
            f"<td align=center valign=top width={THUMB_PX + 8}>{picture}<span style='font-size: 7pt;'>{caption}</span></td>"
        )
    doc.setHtml(
        "<html><body style='font-family: sans-serif; font-size: 10pt;'>"
        f"<table cellspacing=4 cellpadding=2><tr>{''.join(cells)}</tr></table></body></html>"
    )
    return doc


def _paginate(
    heights: list[float], keep: list[bool], body: float, carried: list[bool] | None = None, carry_h: float = 0.0
) -> list[list[int]]:
    """Block indices per page: greedy; a block marked keep-with-next never ends a page; a block taller than a
    page is cut at the page's end. ``carried[i]``: block i, when it opens a page, needs ``carry_h`` above it
    (its class named again)."""
    pages: list[list[int]] = [[]]
    used = 0.0
    for i, h in enumerate(heights):
        need = h + (heights[i + 1] if keep[i] and i + 1 < len(heights) else 0.0)
        if pages[-1] and used + min(need, body) > body:
            pages.append([])
            used = 0.0
        if not pages[-1] and carried and carried[i]:
            used += carry_h
        pages[-1].append(i)
        used += h
    return pages


def write_pdf(
    path: str | os.PathLike,
    results: Sequence[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    info: ReportInfo | None = None,
    model: Model | None = None,
    heatmaps: bool = False,
    signed: SignOff | None = None,
    extras=None,
) -> int:
    """Write the report atomically; returns the page count. ``signed``: the case's sign-off (a signed report
    is final; an unsigned one is PRELIMINARY and has an empty signature line).

    Laid out page by page (not left to Qt's pagination, which split a class heading from its cells and
    numbered pages without the case): every page carries the case ID, the date and "page X of N".
    """
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QPainter

    info = info or ReportInfo()
    now = datetime.now().strftime("%Y-%m-%d %H:%M")
    blocks = _blocks(results, labels, model_name, model_version, info, model, heatmaps, now, signed, extras)
    buffer = QBuffer()
    buffer.open(QIODevice.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(150)
    writer.setPageSize(QPageSize(QPageSize.A4))
    writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Millimeter)
    writer.setTitle(f"HematoVision report {info.case_id}".strip())
    writer.setCreator("HematoVision")
    area = writer.pageLayout().paintRectPixels(writer.resolution())
    width, height = float(area.width()), float(area.height())
    band = 0.045 * height  # header and footer bands
    body = height - 2 * band
    for b in blocks:
        b.doc.documentLayout().setPaintDevice(writer)
        b.doc.setTextWidth(width)
    heights = [b.doc.size().height() for b in blocks]
    carry = _html_block("<h2 style='font-size: 13pt;'>X (continued)</h2>")
    carry.documentLayout().setPaintDevice(writer)
    carry.setTextWidth(width)
    carry_h = carry.size().height()
    pages = _paginate(heights, [b.keep_with_next for b in blocks], body, [bool(b.section) for b in blocks], carry_h)
    status = f"FINAL · signed off by {signed.operator}" if signed else "PRELIMINARY · not signed off"
    painter = QPainter(writer)
    small = QFont("sans-serif")
    small.setPointSizeF(8)
    try:
        for pi, page in enumerate(pages):
            if pi:
                writer.newPage()
            painter.setFont(small)
            painter.setPen(QColor(90, 90, 90))
            painter.drawText(
                QRectF(0, 0, width, band * 0.8),
                Qt.AlignLeft | Qt.AlignVCenter,
                f"HematoVision report · Case {info.case_id or '—'} · {now}",
            )
            painter.drawText(QRectF(0, 0, width, band * 0.8), Qt.AlignRight | Qt.AlignVCenter, status)
            painter.drawText(
                QRectF(0, height - band * 0.8, width, band * 0.8),
                Qt.AlignRight | Qt.AlignVCenter,
                f"Page {pi + 1} of {len(pages)}",
            )
            painter.drawText(
                QRectF(0, height - band * 0.8, width, band * 0.8),
                Qt.AlignLeft | Qt.AlignVCenter,
                "Decision support, not a diagnosis",
            )
            y = band
            if blocks[page[0]].section:  # this class began on an earlier page: say which it is
                cont = _html_block(f"<h2 style='font-size: 13pt;'>{html.escape(blocks[page[0]].section)} (continued)</h2>")
                cont.documentLayout().setPaintDevice(writer)
                cont.setTextWidth(width)
                painter.save()
                painter.translate(0, y)
                cont.drawContents(painter)
                painter.restore()
                y += carry_h
            for i in page:
                painter.save()
                painter.translate(0, y)
                blocks[i].doc.drawContents(painter, QRectF(0, 0, width, min(heights[i], body)))
                painter.restore()
                y += heights[i]
    finally:
        painter.end()
    del writer  # finishes the document
    data = bytes(buffer.data())
    if not pdf_bytes_ok(data):
        raise OSError("the PDF writer produced no document")
    atomic_write_bytes(path, data)
    return len(pages)


def pdf_bytes_ok(data: bytes) -> bool:
    return data.startswith(b"%PDF") and b"%%EOF" in data[-1024:]
