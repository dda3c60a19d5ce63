"""The nucleus ruler: a lab's magnification from the median nucleus radius of its images.

Why: the stained nucleus (:func:`~hv_desktop.core.imaging.preprocess.nucleus_radius`) says how large a lab's cells are in
the frame, so a "cell" square of :data:`REFERENCE_RADII` of those radii shows them at the size the model's training
labs show theirs. :mod:`hv_desktop.core.site.calibrate` sizes the square from unlabelled images with it and
:mod:`hv_desktop.core.site.adapt` from the reviewed cells' images; this one definition serves both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from hv_desktop.core.imaging.preprocess import MAX_CROP_FRACTION
from hv_desktop.core.inference.metadata import ModelMetadata

#: The "cell" square of the shipped models' training labs, in nucleus radii: the median of 0.75 x short side /
#: radius is 7.22 on BCCD and 6.72 on PBC training images (docs/research/scale_normalised_crop.md).
REFERENCE_RADII = 7.0
#: The square (share of the short side) those labs were trained at; a model trained at another scales with it.
REFERENCE_FRACTION = 0.75
#: Fewer measured images than this give too rough a median (one cell's radius varies by class, +-25 %).
MIN_IMAGES = 20


def lab_square(base_fraction: float, median: float, radii: float = REFERENCE_RADII) -> tuple[float, float]:
    """(the lab's square as a share of the short side, within the app's limits; how large the lab's cells appear
    against the training labs') from the lab's median nucleus radius as a share of the short side."""
    scale = radii * median / REFERENCE_FRACTION
    return float(min(MAX_CROP_FRACTION, max(0.2, base_fraction * scale))), scale


def largest_radius(base_fraction: float) -> float:
    """The largest nucleus radius (share of the short side) whose square the app can still show (MAX_CROP_FRACTION).

    A larger one is not a nucleus: the stain measure flooded a pale field whose red cells take the stain (deepbionet:
    146 of 361 images read 0.47, the radius of gyration of a uniformly stained 4:3 frame, and the median of a draw of
    40 reviewed cells could land there and set the square to its largest)."""
    return MAX_CROP_FRACTION * REFERENCE_FRACTION / (REFERENCE_RADII * base_fraction)


def is_measured(radius_fraction: float, base_fraction: float) -> bool:
    """Whether a nucleus radius (share of the short side) is a measurement the ruler may use."""
    return math.isfinite(radius_fraction) and 0 < radius_fraction <= largest_radius(base_fraction)


def trained_fraction(meta: ModelMetadata) -> float:
    """The "cell" square the model's network was trained at: a site model's square already holds its lab's
    magnification, and the ruler's target is the trained square, or a second site model would apply it twice."""
    site = meta.site_adaptation or {}
    fraction = meta.preprocessing.crop_fraction
    trained, scale = _positive(site.get("trained_crop_fraction")), _positive(site.get("magnification"))
    if trained is not None:
        return trained
    return fraction / scale if scale is not None else fraction  # site models made before trained_crop_fraction


def _positive(v: object) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        return float(v)
    return None


def ruler_magnification(radius_fractions: Iterable[float], base_fraction: float, trained: float | None = None) -> float | None:
    """The lab's magnification relative to a "cell" square of ``base_fraction``, from each image's nucleus radius
    as a share of its short side (nan where none was measured; see :func:`is_measured`); None when fewer than
    :data:`MIN_IMAGES` were. ``trained``: the square the network was trained at (:func:`trained_fraction`; default
    ``base_fraction``, a model that is not a site model)."""
    trained = trained or base_fraction
    finite = [r for r in radius_fractions if is_measured(r, trained)]
    if len(finite) < MIN_IMAGES:
        return None
    crop, _ = lab_square(trained, float(np.median(finite)))
    return crop / base_fraction
