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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hv_desktop import __version__
from hv_desktop.core.export import Tally
from hv_desktop.core.model import Model, ModelError, bundled_model_path
from hv_desktop.core.outputs import output_problem
from hv_desktop.core.paths import display_name
from hv_desktop.core.result import NO_CELL

EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_OUTPUT, EXIT_NO_IMAGES, EXIT_CANCELLED = 0, 2, 3, 4, 5, 130
#: The commands a mistyped first word is matched against; any other first word is a PATH for the desktop app.
COMMANDS = ("classify", "watch", "adapt", "calibrate")
OPEN = "open"


def say(text: str, err: bool = True) -> None:
    """One line for people, on stderr (``err``) or stdout: a file name that is not valid text (held as lone
    surrogates) is shown by :func:`display_name`'s rule, never a UnicodeEncodeError under a strict locale."""
    print(display_name(text), file=sys.stderr if err else sys.stdout, flush=True)


def _lenient_streams() -> None:
    """A console that cannot show a character (a legacy code page) gets a replacement, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


class _Progress:
    """A one-line bar on a terminal; a quiet line every few seconds otherwise."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
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


class CliError(Exception):
    """A user error: one line on stderr (``technical``: a second, indented line) and exit ``code``."""

    def __init__(self, code: int, message: str, technical: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.technical = code, message, technical

    def report(self) -> int:
        say(f"hematovision: {self.message}")
        if self.technical:
            say(f"  technical reason: {self.technical}")
        return self.code


def _model_error(exc: ModelError) -> CliError:
    """A model that cannot be used: a plain first line; the technical reason, if any, on a second."""
    if exc.technical:
        return CliError(EXIT_MODEL, exc.plain, exc.technical)
    return CliError(EXIT_MODEL, str(exc))


def _load_model(path: Path | None, threads: int | None) -> Model:
    try:
        return Model(path or bundled_model_path(), threads=threads)
    except ModelError as exc:
        raise _model_error(exc) from None


def _output_error(what: str, exc: OSError) -> CliError:
    return CliError(EXIT_OUTPUT, f"could not write {what}: {exc.strerror or exc}")


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{n} is out of range (1 to 64)")
    return n


THREADS_HELP = (
    "inference threads, 1-64 (default: the cores left after one decoding thread per two cores, at most 8; or $HV_THREADS)"
)


def _check_writable(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CliError(EXIT_OUTPUT, f"{path} is a folder; give a file name")
    if not folder.is_dir():
        raise CliError(EXIT_OUTPUT, f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise CliError(EXIT_OUTPUT, f"output folder is not writable: {folder}")


def _outputs_and_model(args: argparse.Namespace, targets: list, inputs: list | None = None) -> Model:
    """Check every output can be written (and destroys nothing), then load the model."""
    named = [t for t in targets if t]
    for k, target in enumerate(named):
        _check_writable(target)
        clash = output_problem(target, inputs or [], named[:k])
        if clash:
            raise CliError(EXIT_USAGE, clash)
    return _load_model(args.model, args.threads)


def _check_inputs(args: argparse.Namespace, model: Model) -> int:
    """The heatmap folder, the paths and the number of images to classify (a CliError when there is nothing)."""
    from hv_desktop.core.scan import count_images, describe_skipped

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
    kept: list = field(default_factory=list)  # results for the PDF report only
    heat_failures: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)


def _classify_into_csv(args: argparse.Namespace, model: Model, total: int) -> _Batch:
    """Stream every image's row into the CSV (and its heatmap beside); Ctrl+C keeps the rows written so far."""
    from hv_desktop.core.batch import classify_stream
    from hv_desktop.core.export import StreamingCsv
    from hv_desktop.core.scan import scan

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
        from hv_desktop.core.fields import classify_fields

        stream = classify_fields(scan(args.paths), model, **options)
    else:
        stream = classify_stream(scan(args.paths), model, **options)
    try:
        with StreamingCsv(args.csv, model.labels, model.info.name, model.info.version, extra=extra, cells=cells) as out:
            try:
                for result in stream:
                    heat = ""
                    if args.heatmaps is not None and result.ok:
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
        raise _output_error(str(args.csv), exc) from None
    return run


def cmd_classify(args: argparse.Namespace) -> int:
    from hv_desktop.core.export import atomic_write_text, summary_csv, summary_text

    _check_cells_options(args)
    model = _outputs_and_model(args, [args.csv, args.summary, args.report], [*args.paths, args.model])
    total = _check_inputs(args, model)
    t0 = time.monotonic()
    run = _classify_into_csv(args, model, total)
    diff = run.tally.result()
    if args.summary:
        try:
            atomic_write_text(args.summary, summary_csv(diff))
        except OSError as exc:
            raise _output_error(str(args.summary), exc) from None
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


def _check_cells_options(args: argparse.Namespace) -> None:
    """Outputs that hold one entry per file, refused with ``--cells all`` (a usage error before anything runs)."""
    if args.cells != "all":
        return
    for flag, value in (("--heatmaps", args.heatmaps), ("--report", args.report), ("--case", args.case)):
        if value:
            raise CliError(EXIT_USAGE, f"{flag} is not available with --cells all yet; use --cells one, or leave {flag} out")


def _lab_hint(model: Model, model_arg: str | None, classified: int, flagged: int) -> str | None:
    """What to do when nearly every cell was flagged (core.review.lab_flag_share): the lab is probably not one
    the model was trained on, and two commands fit it (from the model this run used)."""
    from hv_desktop.core.review import lab_flag_share

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


def cmd_watch(args: argparse.Namespace) -> int:
    import signal

    from hv_desktop.core.watch import FolderWatcher

    if not args.folder.is_dir():
        raise CliError(EXIT_USAGE, f"not a folder: {args.folder}")
    model = _outputs_and_model(args, [args.csv], [args.model])

    def show(r) -> None:
        if not r.ok:
            text = f"ERROR {r.error}"
        elif r.no_cell:
            text = NO_CELL
        else:
            text = f"{r.label} {r.confidence * 100:.1f} %{' NEEDS REVIEW' if r.needs_review else ''}"
        cell = "" if r.cell_index is None else f" cell {r.cell_index}{' (at edge)' if r.cell_at_edge else ''}"
        say(f"{r.path.name}{cell}\t{text}", err=False)

    try:
        watcher = FolderWatcher(args.folder, model, args.csv, interval=args.interval, on_result=show, cells=args.cells == "all")
    except (ValueError, OSError) as exc:
        raise CliError(EXIT_OUTPUT, str(exc)) from None
    if watcher.damaged:
        say(f"note: {watcher.damaged} incomplete rows in {args.csv} are kept as they are (their images are not classified again)")
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    say(f"watching {args.folder} -> {args.csv} (Ctrl+C stops)")
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
    except OSError as exc:
        raise CliError(EXIT_OUTPUT, f"watch stopped: {exc.strerror or exc}") from None
    say(f"stopped; {len(watcher.rows)} rows in {args.csv}")
    return EXIT_OK


def cmd_adapt(args: argparse.Namespace) -> int:
    """Fit a site model from reviewed cells and write it beside (never over) the base model."""
    from hv_desktop.core.adapt import adapt, read_labelled_csv

    return _write_site_model(args, args.csv, lambda base, say: adapt(base, read_labelled_csv(args.csv), args.site_name, say))


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Match the model's crop to the lab's magnification, measured on unlabelled images; write a site model."""
    from hv_desktop.core.calibrate import calibrate

    return _write_site_model(args, args.paths, lambda base, say: calibrate(base, args.paths, args.site_name, say))


def _write_site_model(args: argparse.Namespace, inputs: list[Path], make) -> int:
    """The site-model commands' shared frame: output checks, the base model, progress, errors, the summary."""
    from hv_desktop.core.adapt import AdaptError

    out: Path = args.out
    clash = output_problem(out, [*inputs, args.model or bundled_model_path()])
    if clash:
        raise CliError(EXIT_USAGE, clash)
    _check_writable(out)
    base = _load_model(args.model, args.threads)
    if out.exists() and out.resolve() == base.path.resolve():
        raise CliError(EXIT_USAGE, "--out must not be the base model: the site model is a new file")
    t0 = time.monotonic()
    try:
        progress = None if args.quiet else (lambda msg, _f: say(f"  {msg}"))
        result = make(base, progress)
        result.save(out, base)
    except (AdaptError, ModelError) as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise _output_error(str(out), exc) from None
    for line in result.summary_lines():
        say(line, err=False)
    say(
        f"site model for '{args.site_name}' written to {out} in {time.monotonic() - t0:.1f} s; "
        f"use it with --model {out} or File > Load Model",
        err=False,
    )
    return EXIT_OK


def cmd_open(args: argparse.Namespace) -> int:
    """The desktop app (the default command), optionally on PATHs."""
    try:
        from hv_desktop.gui.app import run_gui
    except ImportError as exc:
        raise CliError(EXIT_USAGE, f"the desktop app is not available ({exc}); use 'hematovision classify'") from None
    return run_gui(paths=args.paths, model_path=args.model, screenshot=args.screenshot)


def heatmap_name(result) -> str:
    """A safe, unique file name for a result's heatmap (names may hold newlines or slashes)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in result.path.stem).strip(" .") or "image"
    return f"{stem[:80]}.{(result.sha256 or '0' * 8)[:8]}.heatmap.png"


def _write_heatmap(model, result, folder: Path) -> Path | None:
    from hv_desktop.core.heatmap import heatmap_png
    from hv_desktop.core.preprocess import ImageError

    target = folder / heatmap_name(result)
    try:
        heatmap_png(model, result.path, target, result=result)
        return target
    except (ImageError, OSError, ValueError):
        return None


def _write_report(args: argparse.Namespace, results: list, model: Model) -> int:
    """The batch's PDF report: its content from the core, rendered by the GUI's one headless entry point."""
    from hv_desktop.core.report import ReportInfo, build_report
    from hv_desktop.gui.headless import render_report_pdf

    info = ReportInfo(case_id=args.case_id or args.case or "", note=args.note or "", operator=args.operator or "")
    report = build_report(results, model.labels, model.info.name, model.info.version, info, model, args.report_heatmaps)
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
    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, help="print the app's and the model's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        model = getattr(namespace, "model", None)
        say(version_text(model), err=False)
        parser.exit()


MODEL_HELP = "ONNX model file (default: the shipped model)"
WATCH_ABOUT = (
    "Watch a folder a camera or scanner saves into: each image is classified once it is "
    "completely written (a file still growing, or one that does not decode yet, is waited for), "
    "and a row is added to the CSV, which is rewritten atomically. Rows are keyed on the image's "
    "content, so restarting on the same CSV never repeats a row. Ctrl+C stops."
)
ADAPT_ABOUT = (
    "Fit a site model from cells your lab reviewed: the results CSV of 'classify' or the app "
    "with the reviewer_label column filled (or any CSV with 'path' and 'reviewer_label'; relative "
    "paths are read from the CSV's folder). About 10 reviewed cells per class are enough; the "
    "shipped model is never changed."
)


CALIBRATE_ABOUT = (
    "Measure how large cells appear in your lab's images (from the stained nuclei of a few dozen of them, no "
    "labels needed) and write a site model whose crop shows them at the size the model was trained on. Only the "
    "crop changes; to also fit the classes and the review flags to your lab, use 'adapt' with reviewed cells."
)


def _command(sub, name: str, run, summary: str, about: str | None = None) -> argparse.ArgumentParser:
    """A subcommand's parser that runs ``run``: ``summary`` in the command list, ``about`` atop its own help."""
    parser = sub.add_parser(name, help=summary, description=about)
    parser.set_defaults(run=run)
    return parser


def _add_classify(sub) -> None:
    c = _command(sub, "classify", cmd_classify, "classify images and folders into a CSV file")
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
    _cells_option(c)
    c.add_argument(
        "--edge-cells",
        choices=("skip", "count"),
        default="skip",
        help="with --cells all: leave cells cut by the image border out of the differential (skip, the default, as "
        "in a manual count) or count them; their rows are in the CSV either way, marked cell_at_edge",
    )
    c.add_argument("--threads", type=_threads, default=None, help=THREADS_HELP)
    c.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    c.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")


def _add_watch(sub) -> None:
    wp = _command(sub, "watch", cmd_watch, "classify images as they appear in a folder (a camera's output)", WATCH_ABOUT)
    wp.add_argument(
        "folder", type=Path, metavar="DIR", help="the folder to watch (new files, and files replaced in it, are classified)"
    )
    wp.add_argument(
        "--csv",
        type=Path,
        required=True,
        metavar="OUT.csv",
        help="results; grows as images arrive (an existing one from an earlier watch is continued)",
    )
    wp.add_argument("--model", type=Path, dest="model", default=argparse.SUPPRESS, help=MODEL_HELP)
    wp.add_argument(
        "--interval",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="seconds between looks at the folder (default: %(default)s)",
    )
    _cells_option(wp)
    wp.add_argument("--threads", type=_threads, default=None, help=THREADS_HELP)


def _cells_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cells",
        choices=("one", "all"),
        default="one",
        help="one: each image is one white cell (single-cell crops; the default); all: each image is a camera field, "
        "every white cell found gets its own row (cell_index, its box cell_x0..cell_y1 in the image's pixels, "
        f"cell_at_edge) and a field with none gets one row saying '{NO_CELL}'",
    )


def _add_adapt(sub) -> None:
    ad = _command(
        sub, "adapt", cmd_adapt, "adapt the model to your lab from reviewed cells (writes a new model file)", ADAPT_ABOUT
    )
    ad.add_argument("csv", nargs="+", type=Path, metavar="LABELLED.csv")
    _site_model_options(ad)


def _add_report(sub) -> None:
    from hv_desktop.cli_cases import add_report_arguments

    rp = _command(sub, "report", cmd_report, "write the PDF report of a case in the case archive")
    add_report_arguments(rp)
    rp.add_argument("--model", type=Path, dest="model", default=argparse.SUPPRESS, help=MODEL_HELP)
    rp.set_defaults(threads=None)


def cmd_report(args: argparse.Namespace) -> int:
    from hv_desktop.cli_cases import CaseCommandError
    from hv_desktop.cli_cases import cmd_report as write_case_report

    model = _outputs_and_model(args, [args.out])
    try:
        say(write_case_report(args, model))
    except CaseCommandError as exc:
        raise CliError(EXIT_OUTPUT if exc.output else EXIT_USAGE, str(exc)) from None
    return 0


def _add_calibrate(sub) -> None:
    ca = _command(
        sub,
        "calibrate",
        cmd_calibrate,
        "match the model to your lab's magnification from unlabelled images (writes a new model file)",
        CALIBRATE_ABOUT,
    )
    ca.add_argument("paths", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    _site_model_options(ca)


def _site_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="SITE.onnx", help="the site model to write")
    parser.add_argument("--site-name", default="this lab", help="the lab's name, stored in the model and shown")
    parser.add_argument(
        "--model", type=Path, dest="model", default=argparse.SUPPRESS, help="the base model (default: the shipped model)"
    )
    parser.add_argument("--threads", type=_threads, default=None, help=argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _add_open(sub) -> None:
    op = _command(sub, OPEN, cmd_open, "open the desktop app, optionally on PATHs (the default: hematovision [PATH...])")
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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _EveryWord()  # any first word passes argparse's check; __call__ routes it

    def __call__(self, parser, namespace, values, option_string=None) -> None:
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
    for add in (_add_classify, _add_watch, _add_adapt, _add_calibrate, _add_report, _add_open):
        add(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from hv_desktop.core.runtime import configure_process

    configure_process()
    _lenient_streams()
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        return args.run(args)
    except CliError as exc:
        return exc.report()


if __name__ == "__main__":
    raise SystemExit(main())
