"""What :func:`hv_desktop.core.site.adapt.adapt` made, and its report in a technologist's words: the cells used, the
estimate before and after with its uncertainty, and what a person must know before using the site model.

Kept apart from the fit so that the report (read by the CLI and the dialog) and the fitting stay small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hv_desktop.core.site.site_model import SiteModel
from hv_desktop.core.site.unflag import UnflagCheck, wilson_interval
from hv_desktop.core.system.paths import display_name

#: A class needs this many labelled cells to be refitted (fewer: it keeps the base head's weights).
MIN_PER_CLASS = 5
#: A site model that flags this much more of the reviewed cells than its base, for no gain in accuracy, is warned of:
#: below ~125 reviewed cells adapt flags every cell (the unflag bound), and at a lab where the calibrated model already
#: flagged 8-19 % with its unflagged cells right, switching would turn pre-classification into reviewing every cell
#: (docs/research/rules/adapt_keeps_calibrate_colours.txt, noticed).
MORE_FLAGGED = 0.25
#: ... unless it identifies at least this much more of them correctly (2 cells in 40), as at a lab the model was not
#: trained on, where switching is worth the flags.
CLEAR_GAIN = 0.05


@dataclass
class Estimate:
    """Cross-validated on the labelled cells (each cell scored by a fit that did not see it)."""

    accuracy: float
    flagged: float
    #: share of the reviewer's non-target cells (labels outside the model's) that are flagged; None: none given
    other_flagged: float | None = None

    def as_dict(self) -> dict:
        return {k: (None if v is None else round(float(v), 4)) for k, v in self.__dict__.items()}


@dataclass
class Adaptation(SiteModel):
    """What :func:`adapt` fitted; :meth:`save` writes it as a model file."""

    counts: dict[str, int]
    scale: float
    before: Estimate
    after: Estimate
    kept_base: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    outside: dict[str, int] = field(default_factory=dict)
    scale_scores: dict[float, float] = field(default_factory=dict)
    #: wall seconds per stage: reading, features (all scales), fitting (CV, head, temperature, review)
    seconds: dict[str, float] = field(default_factory=dict)
    #: whether the reviewed cells verify the cells the site model leaves unflagged (else it flags every cell)
    unflag: UnflagCheck | None = None
    #: reviewed cells left out because the same picture was already used, per reviewed class
    duplicates: dict[str, int] = field(default_factory=dict)
    #: whether the lab's colours were matched before the fit, in words
    colour_note: str = ""
    #: (the fitted classes' cross-validated accuracy, the base classes' at the matched colours and magnification) on
    #: the reviewed cells, when the fit was the lower and the site model kept the base classes; else None
    kept_classes: tuple[float, float] | None = None
    #: share of the reviewed cells of the model's classes the model in use flags by its own threshold (``before``
    #: judges them by the rule its site models descend from, which a site model that flags every cell does not use)
    in_use_flagged: float | None = None

    def warnings(self) -> list[str]:
        """What a person must know before using this site model, in words (issue 27: it never silently flags fewer
        of the unusual cells the reviewer marked than the base model did, nor far more cells for no gain)."""
        out = []
        b, a = self.before.other_flagged, self.after.other_flagged
        if b is not None and a is not None and a < b - 1e-9:
            n = sum(self.outside.values())
            out.append(
                f"this site model flags fewer unusual cells than the model it was made from ({b:.0%} -> {a:.0%} of the "
                f"{n} reviewed as none of its classes): cells that are none of them may go unflagged"
            )
        in_use = self.before.flagged if self.in_use_flagged is None else self.in_use_flagged
        a_est, b_acc = self.after, self.before.accuracy
        if a_est.flagged - in_use >= MORE_FLAGGED - 1e-9 and a_est.accuracy < b_acc + CLEAR_GAIN - 1e-9:
            out.append(
                f"this site model flags {a_est.flagged:.0%} of your reviewed cells of the model's classes, the model in "
                f"use {in_use:.0%}, and it identifies hardly more of them correctly ({a_est.accuracy:.0%} against "
                f"{b_acc:.0%}): keep the model in use until more reviewed cells let a site model leave cells unflagged"
            )
        return out

    def summary_lines(self) -> list[str]:
        lines = [f"WARNING: {w}" for w in self.warnings()]
        lines.append("cells used per class: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        if self.duplicates:
            lines.append(
                "left out, the same picture as a cell already used: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.duplicates.items()))
            )
        if self.kept_classes is not None:
            fitted, matched = self.kept_classes
            lines.append(
                f"what was learned from these reviewed cells identified fewer of them correctly ({fitted:.0%}, each "
                f"judged by a fit that did not see it) than the original model did with this lab's colours and "
                f"magnification matched ({matched:.0%}), so the site model keeps the original model's cell "
                "identification (colours, magnification and review flags are still this lab's); review more cells and "
                "adapt again"
            )
        elif self.kept_base:
            lines.append(f"fewer than {MIN_PER_CLASS} cells, base weights kept: {', '.join(self.kept_base)}")
        if self.outside:
            lines.append(
                "not one of the model's classes (used only to check the flags): "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.outside.items()))
            )
        if self.skipped:
            lines.append(
                f"skipped {len(self.skipped)} unreadable or missing image(s), e.g. "
                f"{display_name(self.skipped[0][0].name)}: {self.skipped[0][1]}"
            )
        how = "chosen" if self.scale_scores else "measured from the nuclei"
        crop = self.metadata.preprocessing.crop_fraction
        lines.append(f"magnification {how}: x{self.scale:.3g} (crop {crop:.3g} x the short side)")
        if self.colour_note:
            lines.append(self.colour_note)

        n = sum(self.counts.values())

        def est(e: Estimate) -> str:
            lo, hi = wilson_interval(round(e.accuracy * n), n)
            s = f"about {e.accuracy:.0%} correct (between {lo:.0%} and {hi:.0%} with {n} cells), {e.flagged:.0%} flagged"
            unusual = e.other_flagged
            return s + (f"; unusual cells (not one of the classes) still flagged: {unusual:.0%}" if unusual is not None else "")

        in_use = self.in_use_flagged
        differs = in_use is not None and abs(in_use - self.before.flagged) > 1e-9
        lines.append(
            f"before (base model): {est(self.before)}"
            + (f"; the model in use flags {in_use:.0%} of them by its own threshold" if differs else "")
        )
        how = "the original model's classes, on these cells" if self.kept_classes is not None else "cross-validated"
        lines.append(f"after ({how}): {est(self.after)}")
        if self.unflag is not None:
            lines.append(self.unflag.message)
        return lines
