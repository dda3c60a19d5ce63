"""The review rules every face uses (window, report, CSV summary, adaptation): one definition each.

Why here: "still needs review" was written out nine times across the GUI, the report and the export, and the
reason for a flag was shown as a raw number ("typicality 0.42") that means nothing at the bench.
"""

from __future__ import annotations

from hv_desktop.core.batch import Result

#: Below this calibrated confidence a flag is called "low confidence"; above it the cell was flagged because it
#: lies far from the training cells in the model's feature space.
LOW_CONFIDENCE = 0.9


def awaiting_review(r: Result) -> bool:
    """Flagged by the model and not yet reviewed by a person."""
    return r.ok and r.needs_review and not r.reviewer_label


def flag_reason(r: Result) -> tuple[str, str]:
    """(a few words a technologist uses, a sentence for the tooltip) for a flagged cell."""
    if (r.confidence or 0.0) < LOW_CONFIDENCE:
        return ("Low confidence",
                f"The model is not sure which class this is (its best guess has {100 * (r.confidence or 0):.0f} %).")
    return ("Unlike the cells the model was trained on",
            "The model names a class, but the cell looks unlike its training cells: possibly a cell of another "
            "type (a basophil, a blast, an erythroblast), an artefact, or another lab's stain or magnification.")
