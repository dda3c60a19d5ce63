"""Why a cell is flagged, and when a whole case looks like another lab's: one definition each, for the window,
the command line, calibrate's check of a site model and the report.

Why in words: the reason for a flag was once shown as a raw number ("typicality 0.42") that means nothing at the bench.
"""

from __future__ import annotations

from collections.abc import Sequence

from hv_desktop.core.inference.result import Result

#: Below this calibrated confidence a flag is called "low confidence"; above it the cell was flagged because it
#: lies far from the training cells in the model's feature space.
LOW_CONFIDENCE = 0.9


#: A case with at least this many cells, of which at least this share is flagged, looks like another lab's images.
LAB_HINT_CELLS, LAB_HINT_FLAGGED = 20, 0.6


def lab_flag_share(classified: int, flagged: int, site_model: bool = False) -> float | None:
    """The share of a case's cells flagged, when it is far above the training labs' (17-43 %) on enough cells to
    say so: the images then probably come from a lab the model was not trained on. None otherwise, and always for
    a site model (it is already fitted to a lab). The one rule behind the GUI's status-bar hint and the CLI's
    closing line."""
    if site_model or classified < LAB_HINT_CELLS:
        return None
    share = flagged / classified
    return share if share >= LAB_HINT_FLAGGED else None


def lab_hint(results: Sequence[Result], site_model: bool = False) -> str | None:
    """A line for the status bar when :func:`lab_flag_share` says the case is from another lab; it names the two
    ways to fit the model to it."""
    classified = [r for r in results if r.ok]
    share = lab_flag_share(len(classified), sum(r.needs_review for r in classified), site_model)
    if share is None:
        return None
    return f"{share:.0%} flagged, far above the training labs': try Review ▸ Match Lab Magnification or Adapt to This Lab"


def low_confidence(r: Result) -> bool:
    """Of a flagged cell: flagged for low confidence, not for looking unlike the training cells (the two reasons a
    cell is flagged; it says nothing about whether a cell is flagged)."""
    return (r.confidence or 0.0) < LOW_CONFIDENCE


def flag_reason(r: Result) -> tuple[str, str]:
    """(a few words a technologist uses, a sentence for the tooltip) for a flagged cell."""
    if low_confidence(r):
        return (
            "Low confidence",
            f"The model is not sure which class this is (its best guess has {100 * (r.confidence or 0):.0f} %).",
        )
    return (
        "Unlike the cells the model was trained on",
        "The model names a class, but the cell looks unlike its training cells: possibly a cell of another "
        "type (a basophil, a blast, an erythroblast), an artefact, or another lab's stain or magnification.",
    )
