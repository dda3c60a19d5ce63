"""A lab's colours matched to the training labs', from the lab's unlabelled images (part of ``calibrate``).

Why: at a lab the model never saw, what differs most is often stain and camera colour, not the cells: at the held-out
deepbionet lab the nucleus ruler finds the trained magnification, yet a two-lab model reads 75 % there. Shifting and
scaling each colour channel so the lab's crops have the training labs' per-channel mean and spread took it to 85 %,
and a model that had not seen BCCD from 66 to 78 % at BCCD, while the shipped model stayed within a point at its own
labs (docs/research/rules/colour_match.txt). It is one transform per lab, not per image, so a cell that is redder
than its neighbours stays redder (per-image normalisation lost 28 points: rules/lolo_ibn.txt).

The match folds exactly into the model file's per-channel normalisation (``preprocessing.mean/std``): the network
sees ``(x - mu_lab) * sd_ref / sd_lab + mu_ref``, normalised as trained. The reference is in the model file
(``colour_reference``), so a model without one is calibrated for magnification only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hv_desktop.core.imaging.preprocess import Preprocessing

#: A lab whose channel spread differs from the reference's more than this factor is not matched: a scale that large
#: would amplify noise (an almost flat channel) rather than correct a cast.
MAX_SPREAD_RATIO = 4.0


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel (RGB, 0-255) mean and spread of the crops a model sees."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"mean": [round(v, 3) for v in self.mean], "std": [round(v, 3) for v in self.std], "images": self.images}


class Accumulator:
    """Sums over crops, so statistics of hundreds of images need one crop in memory at a time."""

    def __init__(self) -> None:
        self.s1 = np.zeros(3)
        self.s2 = np.zeros(3)
        self.pixels = 0
        self.images = 0

    def add(self, crop: np.ndarray) -> None:
        """``crop``: an HxWx3 uint8 RGB array (what the model's normalisation is applied to)."""
        a = crop.reshape(-1, 3).astype(np.float64)
        self.s1 += a.sum(0)
        self.s2 += np.einsum("ij,ij->j", a, a)
        self.pixels += len(a)
        self.images += 1

    def stats(self) -> ChannelStats | None:
        if not self.pixels:
            return None
        m1, m2 = self.s1 / self.pixels, self.s2 / self.pixels
        sd = np.sqrt(np.maximum(m2 - m1 * m1, 1e-6))
        return ChannelStats(_three(m1), _three(sd), self.images)


def mixture(labs: Iterable[ChannelStats]) -> ChannelStats:
    """The statistics of an equal-weight mixture of labs (each lab counts once, whatever its size)."""
    labs = list(labs)
    m1 = np.mean([lab.mean for lab in labs], axis=0)
    m2 = np.mean([np.square(lab.std) + np.square(lab.mean) for lab in labs], axis=0)
    return ChannelStats(_three(m1), _three(np.sqrt(np.maximum(m2 - m1 * m1, 1e-6))), sum(lab.images for lab in labs))


def matched(prep: Preprocessing, lab: ChannelStats, reference: ChannelStats) -> Preprocessing:
    """``prep`` with its normalisation changed so the lab's statistics map onto the reference's, then are normalised
    as ``prep`` was: per channel, std' = std * r and mean' = mu_lab - (mu_ref - mean) * r, r = sd_lab / sd_ref."""
    ratio = np.asarray(lab.std) / np.asarray(reference.std)
    std = np.asarray(prep.std) * ratio
    mean = np.asarray(lab.mean) - (np.asarray(reference.mean) - np.asarray(prep.mean)) * ratio
    return replace(prep, mean=_three(mean), std=_three(std))


def match_problem(lab: ChannelStats, reference: ChannelStats) -> str | None:
    """Why the lab's colours are not matched (None: they are)."""
    ratios = np.asarray(lab.std) / np.asarray(reference.std)
    if np.any(ratios > MAX_SPREAD_RATIO) or np.any(ratios < 1 / MAX_SPREAD_RATIO):
        return "the lab's colour spread is too far from the training labs' to match safely"
    return None


def reference_from(value: Any) -> ChannelStats | None:
    """The model file's ``colour_reference`` object, type-checked (ValueError names what is wrong)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("colour_reference must be an object")
    mean, std = (
        _channels(value.get("mean"), "colour_reference mean", 0.0),
        _channels(value.get("std"), "colour_reference std", 0.5),
    )
    images = value.get("images", 0)
    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ValueError("colour_reference images must be a whole number")
    return ChannelStats(mean, std, images)


def _channels(v: Any, what: str, low: float) -> tuple[float, float, float]:
    if not isinstance(v, list) or len(v) != 3:
        raise ValueError(f"{what} needs three values")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not low <= x <= 255:
            raise ValueError(f"{what} must be numbers in [{low:g}, 255]")
    return float(v[0]), float(v[1]), float(v[2])


def _three(a: np.ndarray) -> tuple[float, float, float]:
    return float(a[0]), float(a[1]), float(a[2])
