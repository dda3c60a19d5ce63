"""The ``hematovision`` command: the GUI with no command (``open``, on any PATHs given), ``classify`` headless.

User errors (a bad path, an unusable model, an unwritable output) end with one
line on stderr and a non-zero exit, never a traceback. Bad image files are not
errors of the run: they get a row with a message and the run exits 0.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hv_desktop import __version__
from hv_desktop.cli_common import (
    EXIT_CANCELLED,
    EXIT_MODEL,
    EXIT_NO_IMAGES,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_USAGE,
    MODEL_HELP,
    THREADS_HELP,
    CliError,
    Subcommands,
    cells_option,
    command,
    output_error,
    outputs_and_model,
    say,
    threads_arg,
)
from hv_desktop.cli_site import add_adapt, add_calibrate
from hv_desktop.cli_watch import add_watch
from hv_desktop.core.cases.differential import Tally
from hv_desktop.core.inference.model import Model, ModelError, bundled_model_path

if TYPE_CHECKING:
    from hv_desktop.core.inference.result import Result

#: The commands a mistyped first word is matched against; any other first word is a PATH for the desktop app.
COMMANDS = ("classify", "watch", "adapt", "calibrate")
OPEN = "open"


def _lenient_streams() -> None:
    """A console that cannot show a character (a legacy code page) gets a replacement, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


class _Progress:
    """A one-line bar on a terminal; a quiet line every few seconds otherwise."""

    def __init__(self, total: int, stream: IO[str] = sys.stderr) -> None:
        self.total, self.stream, self.start = total, stream, time.monotonic()
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < (0.1 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        left = (self.total - done) / rate if rate > 0 else 0
        if self.tty:
            width = 30
            fill = int(width * done / self.total) if self.total else width
            self.stream.write(
                f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} {rate:6.0f} img/s, {left:4.0f} s left "
            )
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"{done}/{self.total} images ({rate:.0f} img/s)\n")
        self.stream.flush()


def _check_inputs(args: argparse.Namespace, model: Model) -> int:
    """The heatmap folder, the paths and the number of images to classify (a CliError when there is nothing)."""
    from hv_desktop.core.imaging.scan import count_images, describe_skipped

    if args.heatmaps is not None:
        try:
            args.heatmaps.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(EXIT_OUTPUT, f"cannot create heatmap folder {args.heatmaps}: {exc.strerror or exc}") from None
        if not model.cam_name:
            raise CliError(EXIT_MODEL, "this model has no class-activation output; heatmaps are not available")
    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing and len(missing) == len(args.paths):
        raise CliError(EXIT_USAGE, f"nothing to classify: {missing[0]} not found")
    total = count_images(args.paths)
    if total == 0:
        where = ", ".join(str(p) for p in args.paths[:3]) + (" ..." if len(args.paths) > 3 else "")
        raise CliError(EXIT_NO_IMAGES, f"no images found in {where}{describe_skipped(args.paths)}; nothing written")
    return total


@dataclass
class _Batch:
    """What a classify run gathered while streaming rows into the CSV."""

    tally: Tally
    kept: list[Result] = field(default_factory=list)  # results for the PDF report or the case only
    heat_failures: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)


def _classify_into_csv(args: argparse.Namespace, model: Model, total: int) -> _Batch:
    """Stream every image's row into the CSV (and its heatmap beside); Ctrl+C keeps the rows written so far."""
    from hv_desktop.core.imaging.scan import scan
    from hv_desktop.core.inference.batch import classify_stream
    from hv_desktop.core.io.export import StreamingCsv

    run = _Batch(Tally(model.labels, count_edge=args.edge_cells == "count"))
    extra = ["heatmap"] if args.heatmaps is not None else []
    cells = args.cells == "all"
    options: dict[str, Any] = dict(
        batch_size=args.batch_size,
        progress=None if args.quiet else _Progress(total),
        cancel=run.cancel,
        thumbnail=96 if args.report else 0,
    )
    if cells:
        from hv_desktop.core.inference.fields import classify_fields

        stream = classify_fields(scan(args.paths), model, **options)
    else:
        stream = classify_stream(scan(args.paths), model, **options)
    try:
        with StreamingCsv(args.csv, model.labels, model.info.name, model.info.version, extra=extra, cells=cells) as out:
            try:
                for result in stream:
                    heat = ""
                    if args.heatmaps is not None and result.ok and not result.no_cell:
                        written = _write_heatmap(model, result, args.heatmaps)
                        run.heat_failures += written is None
                        heat = str(written or "")
                    out.write(result, [heat] if extra else None)
                    run.tally.add(result)
                    if args.report or args.case:
                        run.kept.append(result)
            except KeyboardInterrupt:
                run.cancel.set()
                say(f"\nhematovision: cancelled; {out.rows} rows written to {args.csv}")
    except OSError as exc:
        raise output_error(str(args.csv), exc) from None
    return run


def cmd_classify(args: argparse.Namespace) -> int:
    from hv_desktop.core.io.export import summary_csv, summary_text
    from hv_desktop.core.system.writing import atomic_write_text

    model = outputs_and_model(args, [args.csv, args.summary, args.report], [*args.paths, args.model])
    total = _check_inputs(args, model)
    t0 = time.monotonic()
    run = _classify_into_csv(args, model, total)
    diff = run.tally.result()
    if args.summary:
        try:
            atomic_write_text(args.summary, summary_csv(diff))
        except OSError as exc:
            raise output_error(str(args.summary), exc) from None
    if args.case:
        from hv_desktop.cli_cases import CaseCommandError, add_to_case

        try:
            done = add_to_case(args.case, run.kept, args.operator or "", args.note or "")
        except CaseCommandError as exc:
            raise CliError(EXIT_OUTPUT, f"{exc} (the CSV is written)") from None
        if not args.quiet:
            say(done)
    if args.report:
        try:
            pages = _write_report(args, run.kept, model)
        except Exception as exc:  # Qt missing or the file cannot be written: say so, keep the CSV
            raise CliError(EXIT_OUTPUT, f"could not write the report {args.report}: {exc}") from None
        if not args.quiet:
            say(f"report: {args.report} ({pages} pages)")
    if run.heat_failures:
        print(f"hematovision: {run.heat_failures} heatmaps could not be written", file=sys.stderr)
    if not args.quiet:
        print(summary_text(diff), file=sys.stderr)
        say(f"{diff.files} files in {time.monotonic() - t0:.1f} s -> {args.csv}")
        hint = None if run.cancel.is_set() else _lab_hint(model, args.model, run.tally.classified, run.tally.flagged)
        if hint:
            say(hint)
    return EXIT_CANCELLED if run.cancel.is_set() else EXIT_OK


def _lab_hint(model: Model, model_arg: str | None, classified: int, flagged: int) -> str | None:
    """What to do when nearly every cell was flagged (core.cases.review.lab_flag_share): the lab is probably not one
    the model was trained on, and two commands fit it (from the model this run used)."""
    from hv_desktop.core.cases.flags import lab_flag_share

    share = lab_flag_share(classified, flagged, bool(model.info.site_adaptation))
    if share is None:
        return None
    base = f" --model {shlex.quote(str(model_arg))}" if model_arg else ""
    return (
        f"note: {share:.0%} of cells were flagged for review, far above the training labs' 17-43 %: these images "
        "probably come from a lab the model was not trained on. Match its magnification with "
        f"'hematovision calibrate FOLDER --out site.onnx{base}' (no reviews needed), or adapt it with reviewed "
        f"cells ('hematovision adapt LABELLED.csv --out site.onnx{base}'); then classify with --model site.onnx. "
        "README: 'Adapting to your lab'."
    )


def cmd_open(args: argparse.Namespace) -> int:
    """The desktop app (the default command), optionally on PATHs."""
    try:
        from hv_desktop.gui.app import run_gui
    except ImportError as exc:
        raise CliError(EXIT_USAGE, f"the desktop app is not available ({exc}); use 'hematovision classify'") from None
    return run_gui(paths=args.paths, model_path=args.model, screenshot=args.screenshot)


def heatmap_name(result: Result) -> str:
    """A safe, unique file name for a result's heatmap (names may hold newlines or slashes; a camera field's
    cells each get their own: ``.cell2``)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in result.path.stem).strip(" .") or "image"
    cell = f".cell{result.cell_index}" if result.cell_index is not None else ""
    return f"{stem[:80]}.{(result.sha256 or '0' * 8)[:8]}{cell}.heatmap.png"


def _write_heatmap(model: Model, result: Result, folder: Path) -> Path | None:
    from hv_desktop.core.imaging.preprocess import ImageError
    from hv_desktop.core.inference.heatmap import heatmap_png

    target = folder / heatmap_name(result)
    try:
        heatmap_png(model, result.path, target, result=result)
        return target
    except (ImageError, OSError, ValueError):
        return None


def _write_report(args: argparse.Namespace, results: list[Result], model: Model) -> int:
    """The batch's PDF report: its content from the core, rendered by the GUI's one headless entry point."""
    from hv_desktop.core.io.report import ReportInfo, build_report
    from hv_desktop.gui.headless import render_report_pdf

    info = ReportInfo(case_id=args.case_id or args.case or "", note=args.note or "", operator=args.operator or "")
    report = build_report(
        results,
        model.labels,
        model.info.name,
        model.info.version,
        info,
        model,
        args.report_heatmaps,
        count_edge=args.edge_cells == "count",
    )
    return render_report_pdf(report, args.report)


def version_text(model_path: Path | None = None) -> str:
    """The app's release and the model it would use: one story for --version, About, CSV and report."""
    try:
        m = Model(model_path or bundled_model_path(), threads=1)
        model = f"model {m.info.name} v{m.info.version}"
    except ModelError as exc:
        model = f"no usable model ({exc})"
    return f"HematoVision {__version__}; {model}"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the app's and the model's version and exit")

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ) -> None:
        model = getattr(namespace, "model", None)
        say(version_text(model), err=False)
        parser.exit()


def _add_classify(sub: Subcommands) -> None:
    c = command(sub, "classify", cmd_classify, "classify images and folders into a CSV file")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders (searched recursively)")
    c.add_argument("--csv", type=Path, required=True, metavar="OUT.csv", help="results, one row per file")
    c.add_argument("--summary", type=Path, metavar="OUT.csv", help="the differential: count and %% per class")
    c.add_argument("--model", type=Path, dest="model", default=argparse.SUPPRESS, help=MODEL_HELP)
    c.add_argument("--heatmaps", type=Path, metavar="DIR", help="write a class-activation heatmap PNG per image")
    c.add_argument("--report", type=Path, metavar="OUT.pdf", help="write a printable PDF report of the batch")
    c.add_argument(
        "--case",
        metavar="ID",
        help="also add the cells to case ID in the case archive (opened when new; the app and 'report --case' find it)",
    )
    c.add_argument("--case-id", help="sample or case ID printed on the report (default: --case)")
    c.add_argument("--operator", help="operator name printed on the report")
    c.add_argument("--note", help="free text printed on the report")
    c.add_argument("--report-heatmaps", action="store_true", help="show heatmaps in the report's gallery")
    cells_option(c)
    c.add_argument(
        "--edge-cells",
        choices=("skip", "count"),
        default="skip",
        help="with --cells all: leave cells cut by the image border out of the differential (skip, the default, as "
        "in a manual count) or count them; their rows are in the CSV either way, marked cell_at_edge",
    )
    c.add_argument("--threads", type=threads_arg, default=None, help=THREADS_HELP)
    c.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    c.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")


def _add_report(sub: Subcommands) -> None:
    from hv_desktop.cli_cases import add_report_arguments

    rp = command(sub, "report", cmd_report, "write the PDF report of a case in the case archive")
    add_report_arguments(rp)
    rp.add_argument("--model", type=Path, dest="model", default=argparse.SUPPRESS, help=MODEL_HELP)
    rp.set_defaults(threads=None)


def cmd_report(args: argparse.Namespace) -> int:
    from hv_desktop.cli_cases import CaseCommandError
    from hv_desktop.cli_cases import cmd_report as write_case_report

    model = outputs_and_model(args, [args.out])
    try:
        say(write_case_report(args, model))
    except CaseCommandError as exc:
        raise CliError(EXIT_OUTPUT if exc.output else EXIT_USAGE, str(exc)) from None
    return 0


def _add_open(sub: Subcommands) -> None:
    op = command(sub, OPEN, cmd_open, "open the desktop app, optionally on PATHs (the default: hematovision [PATH...])")
    op.add_argument("paths", nargs="*", metavar="PATH")
    op.add_argument("--model", type=Path, default=argparse.SUPPRESS, help=MODEL_HELP)
    op.add_argument("--screenshot", type=Path, metavar="OUT.png", default=argparse.SUPPRESS)
    op.add_argument("--version", action=_VersionAction)


def unknown_command(word: str, rest: list[str]) -> str | None:
    """A message when the first word is neither a command nor an existing file or folder (then it is a PATH)."""
    import difflib

    if word in COMMANDS or os.path.lexists(word):
        return None
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if close:
        return f"unknown command '{word}'; did you mean '{close[0]}'?"
    if any(a.startswith("--") and a not in ("--model", "--screenshot") for a in rest):
        return f"unknown command '{word}' (commands: {', '.join(COMMANDS)})"
    return f"'{word}' is neither a command ({', '.join(COMMANDS)}) nor a file or folder"


class _EveryWord(dict):
    """The subcommands' choices as argparse checks them: every first word is one (a PATH when no command)."""

    def __contains__(self, key: Any) -> bool:
        return True


class _Commands(argparse._SubParsersAction):
    """The subcommands, where a first word that names none is the first PATH of the default command (the desktop
    app): ``hematovision a.png`` is ``hematovision open a.png``, and a mistyped command is a usage error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _EveryWord()  # any first word passes argparse's check; __call__ routes it

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ) -> None:
        word, *rest = values
        if word not in self._name_parser_map:
            problem = unknown_command(word, rest)
            if problem:
                raise CliError(EXIT_USAGE, problem)
            values = [OPEN, *values]
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The one parser: classify, watch, adapt and the desktop app (the default, with or without PATHs)."""
    ap = argparse.ArgumentParser(
        prog="hematovision",
        description="Classify white blood cells (eosinophil, lymphocyte, monocyte, neutrophil) in microscope "
        "images, offline. With no command, opens the desktop app.",
        epilog="Decision support for trained staff, not a diagnosis.",
    )
    ap.set_defaults(run=cmd_open, paths=[])
    ap.add_argument("--version", action=_VersionAction)
    ap.add_argument(
        "--screenshot",
        type=Path,
        metavar="OUT.png",
        help="open the window, classify PATHs, save a screenshot of it and exit "
        "(usage: hematovision [--model M] [--screenshot OUT.png] [PATH...])",
    )
    ap.add_argument("--model", type=Path, help=MODEL_HELP)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", action=_Commands)
    for add in (_add_classify, add_watch, add_adapt, add_calibrate, _add_report, _add_open):
        add(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from hv_desktop.core.system.runtime import configure_process

    configure_process()
    _lenient_streams()
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        return args.run(args)
    except CliError as exc:
        return exc.report()


if __name__ == "__main__":
    raise SystemExit(main())
