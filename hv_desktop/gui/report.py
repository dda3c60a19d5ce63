"""Render the batch report (built Qt-free in :mod:`hv_desktop.core.io.report`) to PDF with Qt.

Qt's own QTextDocument + QPdfWriter (no extra dependency) lay out each block; the pages are composed here
(not left to Qt's pagination, which split a class heading from its cells and numbered pages without the
case): every page carries the case ID, the date, the report's status and "page X of N".
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QRectF, Qt, QUrl
from PySide6.QtGui import QColor, QFont, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter, QTextDocument

from hv_desktop.core.io.report import BAND, Report, ReportBlock, build_report, continued, paginate, pdf_bytes_ok
from hv_desktop.core.io.report import ReportInfo as ReportInfo
from hv_desktop.core.system.writing import atomic_write_bytes

_RESOLUTION = 150


def _qimage(arr: np.ndarray) -> QImage:
    h, w, _ = arr.shape
    return QImage(np.ascontiguousarray(arr).tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def _document(html_text: str, writer: QPdfWriter, width: float, images: dict[str, np.ndarray] | None = None) -> QTextDocument:
    """A block's HTML laid out for the page's width on the PDF's paint device."""
    doc = QTextDocument()
    for url, arr in (images or {}).items():
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), _qimage(arr))
    doc.setHtml(html_text)
    doc.documentLayout().setPaintDevice(writer)
    doc.setTextWidth(width)
    return doc


def _writer(buffer: QBuffer, title: str) -> QPdfWriter:
    writer = QPdfWriter(buffer)
    writer.setResolution(_RESOLUTION)
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter)
    writer.setTitle(title)
    writer.setCreator("HematoVision")
    return writer


class _Pages:
    """Paints a laid-out report page by page: the furniture in the bands, the blocks in the body."""

    def __init__(self, report: Report, writer: QPdfWriter) -> None:
        area = writer.pageLayout().paintRectPixels(writer.resolution())
        self.report, self.writer = report, writer
        self.width, self.height = float(area.width()), float(area.height())
        self.band = BAND * self.height  # header and footer bands
        self.body = self.height - 2 * self.band
        self.docs = [_document(b.html, writer, self.width, b.images) for b in report.blocks]
        self.heights = [d.size().height() for d in self.docs]
        self.carry_h = _document(continued("X"), writer, self.width).size().height()

    def layout(self) -> list[list[int]]:
        blocks: list[ReportBlock] = self.report.blocks
        keep = [b.keep_with_next for b in blocks]
        return paginate(self.heights, keep, self.body, [bool(b.section) for b in blocks], self.carry_h)

    def furniture(self, painter: QPainter, page: int, pages: int) -> None:
        top = QRectF(0, 0, self.width, self.band * 0.8)
        bottom = QRectF(0, self.height - self.band * 0.8, self.width, self.band * 0.8)
        left, right = (
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
        )
        painter.drawText(top, left, self.report.header)
        painter.drawText(top, right, self.report.status)
        painter.drawText(bottom, right, Report.page_number(page, pages))
        painter.drawText(bottom, left, self.report.footer)

    def body_of(self, painter: QPainter, page: list[int]) -> None:
        y = self.band
        section = self.report.blocks[page[0]].section
        if section:  # this class began on an earlier page: say which it is
            self._draw(painter, _document(continued(section), self.writer, self.width), y, None)
            y += self.carry_h
        for i in page:
            self._draw(painter, self.docs[i], y, min(self.heights[i], self.body))
            y += self.heights[i]

    def _draw(self, painter: QPainter, doc: QTextDocument, y: float, clip: float | None) -> None:
        painter.save()
        painter.translate(0, y)
        if clip is None:
            doc.drawContents(painter)
        else:
            doc.drawContents(painter, QRectF(0, 0, self.width, clip))
        painter.restore()


def render_pdf(report: Report, path: str | os.PathLike) -> int:
    """Write ``report`` as a PDF atomically; returns the page count. Needs a QGuiApplication (fonts)."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = _writer(buffer, report.title)
    pages = _Pages(report, writer)
    layout = pages.layout()
    painter = QPainter(writer)
    small = QFont("sans-serif")
    small.setPointSizeF(8)
    try:
        for number, page in enumerate(layout):
            if number:
                writer.newPage()
            painter.setFont(small)
            painter.setPen(QColor(90, 90, 90))
            pages.furniture(painter, number, len(layout))
            pages.body_of(painter, page)
    finally:
        painter.end()
    del pages, writer  # finishes the document
    data = bytes(buffer.data().data())
    if not pdf_bytes_ok(data):
        raise OSError("the PDF writer produced no document")
    atomic_write_bytes(path, data)
    return len(layout)


def write_pdf(path: str | os.PathLike, *content: Any, **options: Any) -> int:
    """Build the batch's report (the arguments of :func:`hv_desktop.core.io.report.build_report`: results, labels,
    model name and version, info, model, heatmaps, signed, extras) and write it; returns the page count."""
    return render_pdf(build_report(*content, **options), path)
