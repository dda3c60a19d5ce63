"""``hematovision adapt`` and ``calibrate``: write a site model for one lab, beside (never over) the base model.
Both share one frame (output checks, the base model, progress, errors, the summary); the fitting is core's."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hv_desktop.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Subcommands,
    check_writable,
    command,
    load_model,
    output_error,
    say,
    threads_arg,
)
from hv_desktop.core.inference.model import Model, ModelError, bundled_model_path
from hv_desktop.core.io.outputs import output_problem

ADAPT_ABOUT = (
    "Fit a site model from cells your lab reviewed: the results CSV of 'classify' or the app "
    "with the reviewer_label column filled (or any CSV with 'path' and 'reviewer_label'; relative "
    "paths are read from the CSV's folder). About 10 reviewed cells per class are enough to correct "
    "the classes; leaving cells unflagged takes more (at a lab the model was not trained on, about 100 per class). "
    "The shipped model is never changed."
)
CALIBRATE_ABOUT = (
    "Measure how large cells appear in your lab's images (from the stained nuclei of a few dozen of them, no "
    "labels needed) and write a site model whose crop shows them at the size the model was trained on, and, where "
    "that does not flag more of those images, in the training labs' colours. The weights and review rule do not "
    "change; to also fit the classes and the review flags to your lab, use 'adapt' with reviewed cells."
)

Progress = Callable[[str, float], None]


class SiteResult(Protocol):
    """What adapt and calibrate return: a site model to save and a few lines about it."""

    def save(self, path: Path, base: Model) -> Path: ...

    def summary_lines(self) -> list[str]: ...


#: A fit: the base model and a progress callback (None: quiet) in, the site model out.
Fit = Callable[[Model, "Progress | None"], SiteResult]


def cmd_adapt(args: argparse.Namespace) -> int:
    """Fit a site model from reviewed cells and write it beside (never over) the base model."""
    from hv_desktop.core.site.adapt import adapt
    from hv_desktop.core.site.lab_images import read_labelled_csv

    return _write_site_model(args, args.csv, lambda base, say: adapt(base, read_labelled_csv(args.csv), args.site_name, say))


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Match the model's crop to the lab's magnification, measured on unlabelled images; write a site model."""
    from hv_desktop.core.site.calibrate import calibrate

    return _write_site_model(args, args.paths, lambda base, say: calibrate(base, args.paths, args.site_name, say))


def _write_site_model(args: argparse.Namespace, inputs: list[Path], make: Fit) -> int:
    """The site-model commands' shared frame: output checks, the base model, progress, errors, the summary."""
    from hv_desktop.core.site.site_model import AdaptError

    out: Path = args.out
    clash = output_problem(out, [*inputs, args.model or bundled_model_path()])
    if clash:
        raise CliError(EXIT_USAGE, clash)
    check_writable(out)
    base = load_model(args.model, args.threads)
    if out.exists() and out.resolve() == base.path.resolve():
        raise CliError(EXIT_USAGE, "--out must not be the base model: the site model is a new file")
    t0 = time.monotonic()
    try:
        progress: Progress | None = None if args.quiet else (lambda msg, _f: say(f"  {msg}"))
        result = make(base, progress)
        result.save(out, base)
    except (AdaptError, ModelError) as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise output_error(str(out), exc) from None
    for line in result.summary_lines():
        say(line, err=False)
    say(
        f"site model for '{args.site_name}' written to {out} in {time.monotonic() - t0:.1f} s; "
        f"use it with --model {out} or File > Load Model",
        err=False,
    )
    return EXIT_OK


def add_adapt(sub: Subcommands) -> None:
    ad = command(
        sub, "adapt", cmd_adapt, "adapt the model to your lab from reviewed cells (writes a new model file)", ADAPT_ABOUT
    )
    ad.add_argument("csv", nargs="+", type=Path, metavar="LABELLED.csv")
    _site_model_options(ad)


def add_calibrate(sub: Subcommands) -> None:
    ca = command(
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
    parser.add_argument("--threads", type=threads_arg, default=None, help=argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
