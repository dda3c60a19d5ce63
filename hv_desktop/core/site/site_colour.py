"""A lab's colours folded into a site model's normalisation: one definition for calibrate and adapt.

Why both: calibrate matches colours from unlabelled images; adapt matches them from the reviewed cells before it fits
its head, because a head fitted on colour-matched features reads a new lab far better (deepbionet 85 -> 92 % at 10
cells per class: docs/research/rules/adapt_on_calibrate.txt). The statistics are of the squares the model sees.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hv_desktop.core.inference.colour import Accumulator, ChannelStats, match_problem, matched
from hv_desktop.core.inference.metadata import ModelMetadata

#: the ``site_adaptation["kind"]`` calibrate writes
CALIBRATED_KIND = "magnification from unlabelled images"

NOTE = (
    "each channel shifted and scaled so this lab's crops have the training labs' mean and spread, "
    "folded into mean/std (hv_desktop.core.inference.colour)"
)


def lab_colours(crops: Iterable[np.ndarray], reference: ChannelStats | None) -> tuple[ChannelStats | None, str]:
    """The lab's statistics over ``crops`` (uint8 HxWx3), or None and why in words when they are not matched; ``crops``
    is not consumed when there is no reference, so callers may pass a lazy reader."""
    if reference is None:
        return None, "colours: not matched (this model file carries no colour reference of its training labs)"
    acc = Accumulator()
    for crop in crops:
        acc.add(crop)
    lab = acc.stats()
    if lab is None:
        return None, "colours: not matched (no image could be read again)"
    problem = match_problem(lab, reference)
    if problem:
        return None, f"colours: not matched ({problem})"
    shift = max(abs(a - b) for a, b in zip(lab.mean, reference.mean, strict=True))
    return lab, (
        f"colours: matched to the model's training labs from {lab.images} images (largest channel shift {shift:.0f} of 255)"
    )


def already_matched(meta: ModelMetadata) -> bool:
    """Whether ``meta`` is a site model whose colours were matched already (matching again would match twice)."""
    return bool((meta.site_adaptation or {}).get("colour_match"))


def colours_kept(meta: ModelMetadata) -> str | None:
    """Why calibrate kept this lab's colours as captured (matching them flagged more of the lab's own images), or None.

    Recorded so that adapt, run on the calibrated model, does not silently undo a choice calibrate measured
    (docs/research/rules/adapt_keeps_calibrate_colours.txt)."""
    site = meta.site_adaptation or {}
    kept = site.get("colour_kept")
    if isinstance(kept, str) and kept:
        return kept
    if site.get("colour_unmatched"):
        return None  # calibrate could not match them (a refusal, not a choice): adapt tries on the reviewed cells
    if site.get("kind") == CALIBRATED_KIND and not site.get("colour_match") and meta.colour() is not None:
        # a calibrated file with no record either way: app 1.10.0 kept colours without saying so (rarely, an older
        # app could not match them); the reason is not known
        return "colours: not matched by calibrate"
    return None


def _recorded(meta: ModelMetadata, key: str, value: object) -> ModelMetadata:
    """``meta`` with ``key`` set in its site provenance."""
    return meta.with_updates(site_adaptation={**(meta.site_adaptation or {}), key: value})


def with_colours_unmatched(meta: ModelMetadata, why: str) -> ModelMetadata:
    """``meta`` recording that calibrate could not match the lab's colours, and ``why`` (adapt may still match them)."""
    return _recorded(meta, "colour_unmatched", why)


def with_colours_kept(meta: ModelMetadata, why: str) -> ModelMetadata:
    """``meta`` recording that the lab's colours were kept as captured, and ``why``."""
    return _recorded(meta, "colour_kept", why)


def with_colour(meta: ModelMetadata, lab: ChannelStats, reference: ChannelStats) -> ModelMetadata:
    """``meta`` with the lab's colours folded into its normalisation and recorded in its site provenance."""
    site = dict(meta.site_adaptation or {}, colour_match={"lab": lab.to_dict(), "reference": reference.to_dict()})
    return meta.with_updates(
        preprocessing=matched(meta.preprocessing, lab, reference),
        preprocessing_notes={**meta.preprocessing_notes, "colour": NOTE},
        site_adaptation=site,
    )


def site_colours(meta: ModelMetadata, base: ModelMetadata, lab: ChannelStats | None) -> ModelMetadata:
    """A site model's metadata made from ``base``: the lab's colours folded in (``lab``), or the match ``base`` made
    (or calibrate's choice to keep the colours) kept on record, so a site model of a site model is never matched twice
    and a refresh keeps what calibrate chose."""
    reference = base.colour()
    if lab is not None and reference is not None:
        return with_colour(meta, lab, reference)
    match = (base.site_adaptation or {}).get("colour_match")
    if match:
        return _recorded(meta, "colour_match", match)
    kept = colours_kept(base)
    return with_colours_kept(meta, kept) if kept else meta
