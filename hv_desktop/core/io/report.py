"""The content of the printable batch report, Qt-free: HTML blocks, pictures and the page layout.

Case details, model and intended use, the differential by model and by review, flagged and failed counts,
and a thumbnail gallery per class (optionally with heatmaps), flagged and reviewer-changed cells first.
Laid out page by page (:func:`paginate`): a class heading stays with its cells, a class continued on a new
page is named again, and every page names the case and its number of the total. Every text from the user
or a file name is HTML-escaped. :mod:`hv_desktop.gui.report` only renders this to PDF with Qt.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from hv_desktop import __version__
from hv_desktop.core.cases.differential import Differential, counted, differential
from hv_desktop.core.cases.differential_view import source_line
from hv_desktop.core.cases.review import (
    ReviewClass,
    ReviewSession,
    SignOff,
    awaiting_review,
    parse_extra_classes,
    reviewable,
    sign_off_blockers,
)
from hv_desktop.core.cases.reviewed_differential import reviewed_differential
from hv_desktop.core.inference.fields import cell_name
from hv_desktop.core.inference.model import INTENDED_USE, Model
from hv_desktop.core.inference.result import Result

THUMBS_PER_CLASS = 24
THUMB_PX = 96
CELLS_PER_ROW = 5
FAILED_PER_BLOCK, FAILED_LISTED = 25, 50
#: The header and footer bands, as a share of the page's height.
BAND = 0.045


@dataclass
class ReportInfo:
    case_id: str = ""
    note: str = ""
    operator: str = ""


@dataclass
class ReportBlock:
    """One piece of the report that is laid out whole (cut only when taller than a page)."""

    html: str  # a complete HTML document
    keep_with_next: bool = False  # a class heading stays on the page of its first row of cells
    section: str = ""  # a row of cells: its class, named again when the class continues on a new page
    #: the pictures the HTML names in <img src>, as RGB uint8 arrays
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Report:
    """Everything a renderer needs: the blocks in order, the page furniture and the document's title."""

    blocks: list[ReportBlock]
    title: str
    header: str  # top left of every page
    status: str  # top right of every page: FINAL or PRELIMINARY
    footer: str  # bottom left of every page ("page X of N" goes bottom right)

    @staticmethod
    def page_number(page: int, pages: int) -> str:
        return f"Page {page + 1} of {pages}"


def document(body: str) -> str:
    """A block's HTML document: the report's font around ``body``."""
    return f"<html><body style='font-family: sans-serif; font-size: 10pt;'>{body}</body></html>"


def continued(section: str) -> str:
    """The heading that names a class again at the top of a page it continues on."""
    return document(f"<h2 style='font-size: 13pt;'>{html.escape(section)} (continued)</h2>")


def _plural(n: int, word: str = "cell") -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _differential_rows(
    results: Sequence[Result], labels: Sequence[str], extras: Sequence[ReviewClass] | None, count_edge: bool = False
) -> tuple[list[str], Differential, Differential]:
    """The differential table's rows: white cells in clinical order, by review as % of white cells, the
    model's columns for its own classes; then the other reviewed findings per 100 white cells. A camera field's
    cells at its border are left out unless ``count_edge``, as in the window (core.cases.differential.counted)."""
    e = html.escape
    by_model = differential(results, labels, count_edge=count_edge)
    by_review = differential(results, labels, reviewed=True, count_edge=count_edge)
    rd = reviewed_differential([r for r in results if counted(r, count_edge)], labels, extras)
    rows = []
    for name, n, pct in rd.white:
        model_cols = (
            f"<td align=right>{by_model.counts[name]}</td><td align=right>{by_model.percent(name):.1f} %</td>"
            if name in by_model.counts
            else "<td></td><td></td>"
        )
        review = (
            f"<td align=right>{n}</td><td align=right>{pct:.1f} %</td>"
            if by_review.reviewed > 0
            else "<td align=center>–</td><td align=center>–</td>"
        )
        rows.append(f"<tr><td>{e(name.capitalize())}</td>{model_cols}{review}</tr>")
    for name, n, per in rd.per_100:
        rows.append(
            f"<tr><td>{e(name.capitalize())}</td><td></td><td></td><td align=right>{n}</td>"
            f"<td align=right>{per:.1f} /100 WBC</td></tr>"
        )
    return rows, by_model, by_review


def _status_html(signed: SignOff | None, flagged: int) -> list[str]:
    """FINAL with who signed off (and any override), or PRELIMINARY while flagged cells wait for review."""
    e = html.escape
    if signed is not None:
        parts = [
            f"<p style='color:#006400; font-weight:bold;'>FINAL: signed off by {e(signed.operator)}, "
            f"{e(signed.at.replace('T', ' '))}.</p>"
        ]
        if signed.unreviewed_flagged:
            parts.append(
                f"<p><b>Signed off with {_plural(signed.unreviewed_flagged, 'flagged cell')} not reviewed.</b> Reason: "
                f"{e(signed.override_reason)}</p>"
            )
        return parts
    if flagged:
        return [
            f"<p style='color:#a00000; font-weight:bold;'>PRELIMINARY: {_plural(flagged)} flagged for review "
            f"{'have' if flagged != 1 else 'has'} not been reviewed.</p>"
        ]
    return []


def summary_html(
    results: Sequence[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    info: ReportInfo,
    now: str,
    signed: SignOff | None = None,
    extras: Sequence[ReviewClass] | None = None,
    count_edge: bool = False,
) -> str:
    """The first block: case details, status, note, intended use, the differential and the counts (for camera
    fields, how many cells from how many fields: the window's line, core.cases.differential_view.source_line)."""
    e = html.escape
    rows, by_model, by_review = _differential_rows(results, labels, extras, count_edge)
    parts = [
        "<h1 style='font-size: 16pt;'>HematoVision — white blood cell report</h1>",
        "<table cellspacing=0 cellpadding=3>",
        f"<tr><td><b>Case / sample ID</b></td><td>{e(info.case_id) or '—'}</td></tr>",
        f"<tr><td><b>Date</b></td><td>{now}</td></tr>",
        f"<tr><td><b>Operator</b></td><td>{e(info.operator) or '—'}</td></tr>",
        f"<tr><td><b>Model</b></td><td>{e(models_text(results, model_name, model_version))}</td></tr>",
        f"<tr><td><b>Software</b></td><td>HematoVision {__version__}</td></tr>",
        "</table>",
        *_status_html(signed, sign_off_blockers(results)),  # every flagged cell, as sign-off counts them
    ]
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
    if by_model.cells:
        parts.append(f"<p>Camera fields: <b>{e(source_line(by_model))}</b></p>")
    if signed is None:
        parts.append(
            "<p style='margin-top: 12px;'>Not signed off. &nbsp; Signed off by: "
            "______________________ &nbsp; Date: ______________</p>"
        )
    return "".join(parts)


def failed_blocks(results: Sequence[Result]) -> list[ReportBlock]:
    """The files that could not be classified (the first FAILED_LISTED; the CSV has them all)."""
    e = html.escape
    failed = [r for r in results if not r.ok]
    shown = min(len(failed), FAILED_LISTED)
    blocks = []
    for i in range(0, shown, FAILED_PER_BLOCK):
        head = "<h3 style='font-size: 11pt;'>Files that could not be classified</h3>" if i == 0 else ""
        items = "".join(f"<li>{e(r.path.name)}: {e(r.error or '')}</li>" for r in failed[i : i + FAILED_PER_BLOCK])
        last = i + FAILED_PER_BLOCK >= shown
        more = (
            f"<li>… and {len(failed) - FAILED_LISTED} more (see the CSV export)</li>"
            if last and len(failed) > FAILED_LISTED
            else ""
        )
        blocks.append(ReportBlock(document(f"{head}<ul>{items}{more}</ul>")))
    return blocks


def gallery_order(members: list[Result]) -> tuple[list[Result], int]:
    """(cells to show, how many more are left out): flagged-and-unreviewed cells first, then cells the
    reviewer changed, never dropped; the rest up to THUMBS_PER_CLASS in file order."""
    flagged = [r for r in members if awaiting_review(r)]
    changed = [r for r in members if r.reviewer_label and r.reviewer_label != r.label and r not in flagged]
    must = flagged + changed
    rest = [r for r in members if not any(r is m for m in must)]
    room = max(0, THUMBS_PER_CLASS - len(must))
    return must + rest[:room], max(0, len(rest) - room)


def thumbnail(r: Result, model: Model | None, heatmaps: bool) -> np.ndarray | None:
    """A cell's picture for the gallery (with its heatmap when asked), RGB uint8; the result's own
    thumbnail when the file cannot be read again, None when there is neither. A camera field's cell is its own
    square (``fields.cell_square`` of its box, as it was classified), not the whole field."""
    from hv_desktop.core.imaging.preprocess import ImageError, open_image
    from hv_desktop.core.inference.heatmap import cell_view, view_for

    try:
        if r.cell_box is not None:
            k = model.labels.index(r.label) if model is not None and r.label in model.labels else None
            return np.asarray(cell_view(model, r.path, r.cell_box, heatmaps, k, max_side=THUMB_PX * 2)[1].convert("RGB"))
        im = open_image(r.path, draft_size=(THUMB_PX * 2, THUMB_PX * 2))
    except ImageError:
        return np.ascontiguousarray(r.thumbnail) if r.thumbnail is not None else None
    if model is not None:
        im = view_for(model, im, heat=heatmaps)
    im.thumbnail((THUMB_PX * 2, THUMB_PX * 2))
    return np.asarray(im.convert("RGB"))


def field_sizes(results: Sequence[Result]) -> dict[tuple, int]:
    """How many cells each camera field holds (keyed by :func:`_field_key`), for "cell 2 of 3"."""
    sizes: dict[tuple, int] = {}
    for r in results:
        if r.cell_index is not None:
            sizes[_field_key(r)] = sizes.get(_field_key(r), 0) + 1
    return sizes


def _field_key(r: Result) -> tuple:
    return (r.path, r.sha256, r.case)


def cell_caption(r: Result, of: int | None = None) -> str:
    """A gallery cell's name, HTML: the file's (shortened), and for a camera field's cell which one it is
    ("field.jpg · cell 2 of 3", fields.cell_name) and whether the field's border cuts it."""
    name = html.escape(cell_name(r, of).replace(r.path.name, r.path.name[:22], 1))
    if r.cell_index is not None:  # the cell on a line of its own: a thumbnail is narrower than the whole name
        name = name.replace(" · ", " ·<br>", 1)
    return name + (" · <b>at edge</b>" if r.cell_at_edge else "")


def thumb_row(
    row: list[Result], model: Model | None, heatmaps: bool, section: str, sizes: dict[tuple, int] | None = None
) -> ReportBlock:
    """A row of cells: picture (fitted to a THUMB_PX square, aspect kept), name (a field's cell: which of how
    many, and an edge mark), confidence, flag and the model's label where the reviewer changed it."""
    e = html.escape
    cells, images = [], {}
    for n, r in enumerate(row):
        img = thumbnail(r, model, heatmaps)
        flag = " ⚑" if awaiting_review(r) else ""
        caption = f"{cell_caption(r, (sizes or {}).get(_field_key(r)))}<br>{(r.confidence or 0) * 100:.0f} %{flag}"
        if r.reviewer_label and r.reviewer_label != r.label:
            caption += f"<br>model: {e(r.label or '')}"
        picture = ""
        if img is not None:
            url = f"thumb://{n}"
            images[url] = img
            h, w = img.shape[:2]
            scale = THUMB_PX / max(w, h, 1)
            picture = f"<img src='{url}' width={max(1, round(w * scale))} height={max(1, round(h * scale))}><br>"
        cells.append(
            f"<td align=center valign=top width={THUMB_PX + 8}>{picture}<span style='font-size: 7pt;'>{caption}</span></td>"
        )
    body = f"<table cellspacing=4 cellpadding=2><tr>{''.join(cells)}</tr></table>"
    return ReportBlock(document(body), section=section, images=images)


def gallery_blocks(
    results: Sequence[Result], labels: Sequence[str], model: Model | None, heatmaps: bool, count_edge: bool = False
) -> list[ReportBlock]:
    """Per class (the model's, then any other the reviewer gave): a heading kept with its rows of cells. A field
    with no white cell is no cell (core.cases.review.reviewable); cells at a field's border are shown, marked, and
    said to be left out of the count unless ``count_edge``."""
    names = list(labels) + sorted(
        {r.reviewer_label for r in results if reviewable(r) and r.reviewer_label and r.reviewer_label not in labels}
    )
    sizes = field_sizes(results)
    blocks = []
    for lab in names:
        members = [r for r in results if reviewable(r) and (r.reviewer_label or r.label) == lab]
        if not members:
            continue
        shown, left_out = gallery_order(members)
        title = f"{lab.capitalize()} — {_plural(len(members))}"
        edge = 0 if count_edge else sum(r.cell_at_edge for r in members)
        if edge:
            title += f" ({edge} at the edge of a field, not counted)"
        if left_out:
            title += f" ({left_out} more in the CSV; flagged and changed cells are all shown)"
        heading = f"<h2 style='font-size: 13pt;'>{html.escape(title)}{' with heatmaps' if heatmaps else ''}</h2>"
        blocks.append(ReportBlock(document(heading), keep_with_next=True))
        for i in range(0, len(shown), CELLS_PER_ROW):
            blocks.append(thumb_row(shown[i : i + CELLS_PER_ROW], model, heatmaps, lab.capitalize(), sizes))
    return blocks


def build_report(
    results: Sequence[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    info: ReportInfo | None = None,
    model: Model | None = None,
    heatmaps: bool = False,
    signed: SignOff | None = None,
    extras: Sequence[ReviewClass] | None = None,
    count_edge: bool = False,
) -> Report:
    """The report of a batch. ``signed``: the case's sign-off (a signed report is final; an unsigned one is
    PRELIMINARY and has an empty signature line); ``count_edge``: count the cells a camera field's border cuts."""
    info = info or ReportInfo()
    now = datetime.now().strftime("%Y-%m-%d %H:%M")
    summary = summary_html(results, labels, model_name, model_version, info, now, signed, extras, count_edge)
    gallery = gallery_blocks(results, labels, model, heatmaps, count_edge)
    return Report(
        blocks=[ReportBlock(document(summary)), *failed_blocks(results), *gallery],
        title=f"HematoVision report {info.case_id}".strip(),
        header=f"HematoVision report · Case {info.case_id or '—'} · {now}",
        status=f"FINAL · signed off by {signed.operator}" if signed else "PRELIMINARY · not signed off",
        footer="Decision support, not a diagnosis",
    )


def models_text(results: Sequence[Result], model_name: str, model_version: str) -> str:
    """The model(s) that produced the rows ("name vX"; several when a case holds rows of more than one), else the
    model given: a report names what classified its cells, not what is loaded when it is printed."""
    made = list(dict.fromkeys((r.model_name, r.model_version) for r in results if r.ok and r.model_name))
    return "; ".join(f"{n} v{v}" if v else n for n, v in made or [(model_name, model_version)])


def case_report_info(session: ReviewSession, case_id: str) -> tuple[ReportInfo, SignOff | None]:
    """A case's report details and sign-off, from the case alone: its ID, note and operator (the signer, once
    signed). The one way the app fills a report's identity, so a FINAL report can never carry another sample's
    ID or another person's name (issue 30: a free text box printed OTHER-ID-999 under "FINAL")."""
    if case_id not in session.cases:
        raise ValueError(f"no case {case_id!r} in this session")
    case = session.cases[case_id]
    signed = session.signoffs.get(case_id)
    return ReportInfo(case.case_id, case.note, signed.operator if signed else case.operator), signed


def build_case_report(
    session: ReviewSession,
    case_id: str,
    labels: Sequence[str],
    model: Model | None = None,
    heatmaps: bool = False,
    extras: Sequence[ReviewClass] | None = None,
    count_edge: bool = False,
) -> Report:
    """The report of one case of a session: its cells, with the identity and sign-off of :func:`case_report_info`."""
    info, signed = case_report_info(session, case_id)
    if signed is not None and signed.cell_types:  # the cell types it was signed with, in every face
        with contextlib.suppress(ValueError):
            extras = parse_extra_classes(signed.cell_types, labels)
    name, version = (model.info.name, model.info.version) if model is not None else ("", "")
    results = session.case_results(case_id)
    return build_report(results, labels, name, version, info, model, heatmaps, signed, extras, count_edge)


def paginate(
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


def pdf_bytes_ok(data: bytes) -> bool:
    return data.startswith(b"%PDF") and b"%%EOF" in data[-1024:]
