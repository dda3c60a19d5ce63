"""The command line's side of the case archive (issue 29): ``classify --case ID`` adds a batch's cells to an
archived case and ``report --case ID`` writes that case's report, through the same Qt-free workspace as the
window. Errors are :class:`CaseCommandError` with a plain message; hv_desktop.cli turns them into its exit codes
(this module imports nothing from it, so there is no import circle)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hv_desktop.core.cases.review import CaseLocked
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result
from hv_desktop.core.storage.archive import CaseArchive
from hv_desktop.core.storage.archive_schema import ArchiveError
from hv_desktop.core.system.appdata import archive_path
from hv_desktop.core.workspace import Workspace


class CaseCommandError(Exception):
    """A case command that cannot be done; ``output`` is True when writing a file failed."""

    def __init__(self, message: str, output: bool = False) -> None:
        super().__init__(message)
        self.output = output


def open_archive(path: Path | None = None) -> CaseArchive:
    target = path or archive_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return CaseArchive.open(target)
    except (ArchiveError, OSError) as exc:
        raise CaseCommandError(f"cannot open the case archive {target}: {exc}") from None


def add_to_case(case_id: str, results: Sequence[Result], operator: str = "", note: str = "", path: Path | None = None) -> str:
    """Add ``results`` to the archived case ``case_id`` (opened when new; refused when signed off). A file already
    in the case (same path and bytes) is not added twice. What was done, in words."""
    with open_archive(path) as archive:
        ws = Workspace(archive)
        try:
            if archive.has_case(case_id):
                ws.open_archived(case_id)
                if ws.review.locked():
                    raise CaseCommandError(f"case {case_id} is signed off: nothing was added (unlock it in the app first)")
            elif ws.new_case(case_id, operator, note) != case_id:
                raise CaseCommandError(f"case ID {case_id!r} cannot be used")
            held = {(str(r.path), r.sha256) for r in ws.review.case_results()}
            new = [r for r in results if (str(r.path), r.sha256) not in held]
            ws.add_results(new)
        except (ArchiveError, CaseLocked, ValueError) as exc:
            raise CaseCommandError(f"case {case_id}: {exc}") from None
        total = len(ws.review.case_results())
    again = len(results) - len(new)
    return f"case {case_id}: {len(new)} cells added ({total} in all{f'; {again} already in it' if again else ''})"


def cmd_report(args: argparse.Namespace, model: Model) -> str:
    """Write the report of an archived case (its ID, operator and sign-off from the archive); what was written."""
    from hv_desktop.core.io.report import build_case_report
    from hv_desktop.gui.headless import render_report_pdf

    with open_archive() as archive:
        ws = Workspace(archive)
        try:
            ws.open_archived(args.case)
        except ArchiveError as exc:
            raise CaseCommandError(str(exc)) from None
        count_edge = args.edge_cells == "count"
        report = build_case_report(ws.review, args.case, model.labels, model, args.heatmaps, count_edge=count_edge)
    try:
        pages = render_report_pdf(report, args.out)
    except Exception as exc:  # Qt missing or the file cannot be written
        raise CaseCommandError(f"could not write the report {args.out}: {exc}", output=True) from None
    return f"report of case {args.case}: {args.out} ({pages} pages)"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--case", required=True, metavar="ID", help="the case (sample) ID in the case archive")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT.pdf", help="the report to write")
    parser.add_argument("--heatmaps", action="store_true", help="show heatmaps in the report's gallery")
    parser.add_argument(
        "--edge-cells",
        choices=("skip", "count"),
        default="skip",
        help="camera fields: leave the cells cut by a field's border out of the differential (skip, the default) or "
        "count them; they are shown, marked, either way",
    )
