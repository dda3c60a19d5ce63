"""What every ``hematovision`` command shares: the exit codes, :class:`CliError`, one-line messages, loading the
model and checking outputs before anything runs, and the options several commands take.

Why its own module: the commands live in modules named for what they do (hv_desktop.cli, cli_watch, cli_site,
cli_cases); they all import this one and none imports hv_desktop.cli, so there is no import circle.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hv_desktop.core.inference.model import Model, ModelError, bundled_model_path
from hv_desktop.core.inference.result import NO_CELL
from hv_desktop.core.io.outputs import output_problem
from hv_desktop.core.system.paths import display_name

EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_OUTPUT, EXIT_NO_IMAGES, EXIT_CANCELLED = 0, 2, 3, 4, 5, 130

#: A command's handler: the parsed arguments in, the exit code out.
Run = Callable[[argparse.Namespace], int]
Subcommands = argparse._SubParsersAction  # the parsers' registry that ``add_subparsers`` returns

MODEL_HELP = "ONNX model file (default: the shipped model)"
THREADS_HELP = (
    "inference threads, 1-64 (default: the cores left after one decoding thread per two cores, at most 8; or $HV_THREADS)"
)


def say(text: str, err: bool = True) -> None:
    """One line for people, on stderr (``err``) or stdout: a file name that is not valid text (held as lone
    surrogates) is shown by :func:`display_name`'s rule, never a UnicodeEncodeError under a strict locale."""
    print(display_name(text), file=sys.stderr if err else sys.stdout, flush=True)


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


def model_error(exc: ModelError) -> CliError:
    """A model that cannot be used: a plain first line; the technical reason, if any, on a second."""
    if exc.technical:
        return CliError(EXIT_MODEL, exc.plain, exc.technical)
    return CliError(EXIT_MODEL, str(exc))


def load_model(path: Path | None, threads: int | None) -> Model:
    try:
        return Model(path or bundled_model_path(), threads=threads)
    except ModelError as exc:
        raise model_error(exc) from None


def output_error(what: str, exc: OSError) -> CliError:
    return CliError(EXIT_OUTPUT, f"could not write {what}: {exc.strerror or exc}")


def threads_arg(text: str) -> int:
    """``--threads``: a whole number from 1 to 64 (argparse's usage error otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{n} is out of range (1 to 64)")
    return n


def check_writable(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CliError(EXIT_OUTPUT, f"{path} is a folder; give a file name")
    if not folder.is_dir():
        raise CliError(EXIT_OUTPUT, f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise CliError(EXIT_OUTPUT, f"output folder is not writable: {folder}")


def outputs_and_model(
    args: argparse.Namespace, targets: Sequence[Path | None], inputs: Sequence[Path | None] | None = None
) -> Model:
    """Check every output can be written (and destroys nothing), then load the model."""
    named = [t for t in targets if t]
    given = [i for i in inputs or [] if i is not None]  # the model is None when not given
    for k, target in enumerate(named):
        check_writable(target)
        clash = output_problem(target, given, named[:k])
        if clash:
            raise CliError(EXIT_USAGE, clash)
    return load_model(args.model, args.threads)


def command(sub: Subcommands, name: str, run: Run, summary: str, about: str | None = None) -> argparse.ArgumentParser:
    """A subcommand's parser that runs ``run``: ``summary`` in the command list, ``about`` atop its own help."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=about)
    parser.set_defaults(run=run)
    return parser


def cells_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cells",
        choices=("one", "all"),
        default="one",
        help="one: each image is one white cell (single-cell crops; the default); all: each image is a camera field, "
        "every white cell found gets its own row (cell_index, its box cell_x0..cell_y1 in the image's pixels, "
        f"cell_at_edge) and a field with none gets one row saying '{NO_CELL}'",
    )
