"""A lab's site models over time: which it has made, what each was made from, when a fresh one is due, going back.

Why: a lab reviews cells every day, so the reviews a site model could learn from keep growing after it is made. A
site model fitted on 10 cells per class is a start; at 25 and 50 the head is better fitted and the unflag check
(:mod:`hv_desktop.core.site.unflag`) has more cells to verify; at 100 (adapt's most, 400 cells) it can first leave
cells unflagged at a lab the model was not trained on (docs/research/rules/adapt_choose_threshold.txt). The app
offers a refresh when every class has reached the next step (:data:`STEPS`) beyond what the model in use was made
from, keeps every site model it made (the data folder's ``site-models``), and can go back to any of them. The files
are the history: each carries its provenance (site, date, kind, cells per class, its estimates) in its own
metadata, so nothing else has to be kept in step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hv_desktop.core.inference.metadata import METADATA_KEY, ModelError, ModelMetadata
from hv_desktop.core.inference.onnx_proto import OnnxFile, ProtoError
from hv_desktop.core.site.lab_images import MAX_CELLS, limit_by_class

#: Reviewed cells per class at which a fresh site model is offered.
STEPS = (10, 25, 50, 100)
#: The folder (inside the app's data folder) site models are saved in.
FOLDER = "site-models"
#: A history longer than this is not read whole (the newest are listed).
MAX_LISTED = 200
#: Files larger than this are not read for their metadata (a site model is a few MB).
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class SiteModelEntry:
    """One site model file as the history lists it."""

    path: Path
    site: str
    kind: str
    made: str
    version: str
    base: str
    cells_per_class: dict[str, int] = field(default_factory=dict)
    #: whether its reviewed cells verified that what it leaves unflagged is right (None: not an adapted model)
    unflag_verified: bool | None = None
    #: its cross-validated accuracy on the reviewed cells (None: not an adapted model)
    estimated_accuracy: float | None = None
    #: reviewed cells per class it was given, before duplicates and unreadable files were left out (empty: not stated)
    given_per_class: dict[str, int] = field(default_factory=dict)

    @property
    def fewest_per_class(self) -> int:
        """The fewest reviewed cells of any class it was made from (0 for a model made without reviews)."""
        return min(self.cells_per_class.values()) if self.cells_per_class else 0

    @property
    def made_at(self) -> int:
        """The fewest reviewed cells of any class it was given: a refresh at that step is not offered again when a
        few of them were duplicates or unreadable (else the same step would come back after every refresh)."""
        return max(min(self.given_per_class.values()) if self.given_per_class else 0, self.fewest_per_class)

    def describe(self) -> str:
        """One line for the history list."""
        made_from = (
            f"{sum(self.cells_per_class.values())} reviewed cells (at least {self.fewest_per_class} of each type)"
            if self.cells_per_class
            else "unlabelled images"
        )
        flags = (
            ""
            if self.unflag_verified is None
            else (", leaves verified cells unflagged" if self.unflag_verified else ", flags every cell")
        )
        return f"{self.made[:16].replace('T', ' ')} · {self.site} · from {made_from}{flags}"


def entry_for(path: Path) -> SiteModelEntry:
    """The history's view of one site model file; ModelError when it is not one."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ModelError(f"{path.name}: too large to be a site model")
        raw = OnnxFile(path.read_bytes()).metadata().get(METADATA_KEY)
    except (OSError, ProtoError) as exc:
        raise ModelError(f"{path.name}: cannot be read ({exc})") from None
    if raw is None:
        raise ModelError(f"{path.name}: not a HematoVision model")
    info = ModelMetadata.from_json(raw, path.name)
    site = info.site_adaptation
    if not site:
        raise ModelError(f"{path.name}: not a site model")
    cells = site.get("cells_per_class")
    per_class = {str(k): int(v) for k, v in cells.items() if isinstance(v, int)} if isinstance(cells, dict) else {}
    given = site.get("cells_given_per_class")
    given_per_class = {str(k): int(v) for k, v in given.items() if isinstance(v, int)} if isinstance(given, dict) else {}
    check = site.get("unflag_check")
    estimate = site.get("estimate_after_cross_validated")
    accuracy = estimate.get("accuracy") if isinstance(estimate, dict) else None
    base = site.get("base_model")
    return SiteModelEntry(
        path=path,
        site=str(site.get("site", "")),
        kind=str(site.get("kind", "reviewed cells")),
        made=str(site.get("date", "")),
        version=info.version,
        base=f"{base.get('name', '')} {base.get('version', '')}".strip() if isinstance(base, dict) else "",
        cells_per_class=per_class,
        unflag_verified=bool(check.get("verified")) if isinstance(check, dict) else None,
        estimated_accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
        given_per_class=given_per_class,
    )


def site_models(folder: Path) -> tuple[list[SiteModelEntry], list[tuple[Path, str]]]:
    """The site models in ``folder`` (the data folder's ``site-models``), newest first, and the files there that
    could not be read as one (with why). A missing folder is an empty history."""
    try:
        files = sorted((p for p in folder.glob("*.onnx") if p.is_file()), key=lambda p: p.name, reverse=True)
    except OSError as exc:
        return [], [(folder, exc.strerror or str(exc))]
    entries: list[SiteModelEntry] = []
    problems: list[tuple[Path, str]] = []
    for path in files[:MAX_LISTED]:
        try:
            entries.append(entry_for(path))
        except ModelError as exc:
            problems.append((path, str(exc)))
    entries.sort(key=lambda e: (e.made, e.path.name), reverse=True)
    return entries, problems


def usable_counts(counts: Mapping[str, int], most: int) -> dict[str, int]:
    """The cells per label adapt would take of ``counts`` when it may read at most ``most`` in all: the labels in
    turn, in sorted order (:func:`~hv_desktop.core.site.lab_images.limit_by_class`, the one definition, run on the
    counts). Why: a step the cap keeps adapt from reaching (other reviewed types share the 400) would be offered
    again after every refresh."""
    if sum(counts.values()) <= most:
        return dict(counts)
    names = sorted(counts)
    y = np.repeat(np.arange(len(names)), [min(max(counts[k], 0), most) for k in names])
    taken = np.bincount(y[limit_by_class(y, most)], minlength=len(names))
    return {k: int(taken[i]) for i, k in enumerate(names)}


def refresh_due(
    reviewed_per_class: Mapping[str, int], labels: Sequence[str], in_use: SiteModelEntry | None, steps: Sequence[int] = STEPS
) -> int | None:
    """The step (cells per class) a fresh site model is due at, or None: the largest step every class of ``labels``
    has reached in reviewed cells, when the model in use was made from fewer than that of some class (a base model,
    or one made without reviews, counts as made from none)."""
    if not labels:
        return None
    merged: dict[str, int] = {}
    for label, n in reviewed_per_class.items():
        merged[label.strip().lower()] = merged.get(label.strip().lower(), 0) + n
    usable = usable_counts(merged, MAX_CELLS)
    fewest = min(usable.get(label.lower(), 0) for label in labels)
    reached = [k for k in steps if fewest >= k]
    if not reached:
        return None
    made_from = in_use.made_at if in_use is not None else 0
    return reached[-1] if reached[-1] > made_from else None
