"""``hematovision watch``: classify images as a camera or scanner saves them into a folder, one line each on
stdout and a row each in a CSV, until Ctrl+C or SIGTERM (the watching itself is core.io.watch's)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hv_desktop.cli_common import (
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_USAGE,
    MODEL_HELP,
    THREADS_HELP,
    CliError,
    Subcommands,
    cells_option,
    command,
    outputs_and_model,
    say,
    threads_arg,
)
from hv_desktop.core.inference.result import NO_CELL

if TYPE_CHECKING:
    from hv_desktop.core.inference.result import Result

WATCH_ABOUT = (
    "Watch a folder a camera or scanner saves into: each image is classified once it is "
    "completely written (a file still growing, or one that does not decode yet, is waited for), "
    "and a row is added to the CSV, which is rewritten atomically. Rows are keyed on the image's "
    "content, so restarting on the same CSV never repeats a row. Ctrl+C stops."
)


def show_result(r: Result) -> None:
    """A result as one tab-separated line on stdout: the file (and cell), then its class or its problem."""
    if not r.ok:
        text = f"ERROR {r.error}"
    elif r.no_cell:
        text = NO_CELL
    else:
        text = f"{r.label} {(r.confidence or 0.0) * 100:.1f} %{' NEEDS REVIEW' if r.needs_review else ''}"
    cell = "" if r.cell_index is None else f" cell {r.cell_index}{' (at edge)' if r.cell_at_edge else ''}"
    say(f"{r.path.name}{cell}\t{text}", err=False)


def cmd_watch(args: argparse.Namespace) -> int:
    import signal

    from hv_desktop.core.io.watch import FolderWatcher

    if not args.folder.is_dir():
        raise CliError(EXIT_USAGE, f"not a folder: {args.folder}")
    model = outputs_and_model(args, [args.csv], [args.model])
    try:
        watcher = FolderWatcher(
            args.folder, model, args.csv, interval=args.interval, on_result=show_result, cells=args.cells == "all"
        )
    except (ValueError, OSError) as exc:
        raise CliError(EXIT_OUTPUT, str(exc)) from None
    if watcher.damaged:
        say(f"note: {watcher.damaged} incomplete rows in {args.csv} are kept as they are (their images are not classified again)")

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and watcher.stop_event.is_set():
            raise KeyboardInterrupt  # a second Ctrl+C: do not wait for the file in hand
        watcher.stop()  # takes no lock: an Event.set here could deadlock against the loop's own wait

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say(f"watching {args.folder} -> {args.csv} (Ctrl+C stops)")
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
    except OSError as exc:
        raise CliError(EXIT_OUTPUT, f"watch stopped: {exc.strerror or exc}") from None
    say(f"stopped; {len(watcher.rows)} rows in {args.csv}")
    return EXIT_OK


def add_watch(sub: Subcommands) -> None:
    wp = command(sub, "watch", cmd_watch, "classify images as they appear in a folder (a camera's output)", WATCH_ABOUT)
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
    cells_option(wp)
    wp.add_argument("--threads", type=threads_arg, default=None, help=THREADS_HELP)
