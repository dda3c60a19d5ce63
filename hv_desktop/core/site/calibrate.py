"""Match a model to a lab's magnification and colours from the lab's own unlabelled images, and write the result as a new model.

Why: a model with the "cell" crop sees each cell at a fixed fraction of the image's short side, so at a lab whose
microscope and camera show cells larger or smaller in the frame it sees them larger or smaller than it learned
them, and misreads them (simulated on pbc/val, the shipped model falls to 76 % at twice the magnification). No
labels are needed to undo that: the stained nucleus is a ruler (:mod:`hv_desktop.core.site.ruler`), and the lab's
median nucleus radius, over a few dozen of its images, says how large its cells are in the frame. The site model's
square is :data:`~hv_desktop.core.site.ruler.REFERENCE_RADII` of those radii, the size the model's training labs show their
cells at, for every image of the lab. It is one number per lab, not per cell, so within the lab a monocyte's
large nucleus still looks larger than a lymphocyte's (a square sized per cell loses that cue, and with it 7.6
points on a lab it never saw: docs/research/scale_normalised_crop.md).

The same images then give the lab's colours (:mod:`hv_desktop.core.inference.colour`): each channel is shifted and scaled to the
training labs' mean and spread, folded into the file's normalisation, when the base model carries a colour reference
and the match does not clearly flag more of the lab's own images than the square alone (at a lab that already looks
like one training lab, matching moves its cells away from that lab). The report gives the base model's flags on the
same images beside the site model's, and warns when calibrating clearly flags more. Nothing else changes: the
weights, the calibration and the needs-review rule are the base model's, so cells the base model flags for looking
unlike its training labs may stay flagged (a lab where the model is simply wrong stays flagged:
tests/realdata/test_colour_match_real.py); reviewed cells and :func:`hv_desktop.core.site.adapt.adapt` fit those.
The base file is never modified.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hv_desktop.core.imaging.preprocess import MAX_CROP_FRACTION, ImageError, Preprocessing, load_for_model, nucleus_radius
from hv_desktop.core.imaging.scan import scan
from hv_desktop.core.inference.colour import ChannelStats
from hv_desktop.core.inference.metadata import ModelMetadata
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile, ProtoError
from hv_desktop.core.site.lab_images import read_image
from hv_desktop.core.site.lab_preview import LabPreview, clearly_fewer, preview_model, preview_site_model
from hv_desktop.core.site.ruler import MIN_IMAGES, REFERENCE_RADII, is_measured, lab_square
from hv_desktop.core.site.site_colour import (
    CALIBRATED_KIND,
    lab_colours,
    site_colours,
    with_colours_kept,
    with_colours_unmatched,
)
from hv_desktop.core.site.site_model import AdaptError, SiteModel, check_site_name, site_identity, site_provenance, with_metadata
from hv_desktop.core.system.paths import display_name

#: More than this adds nothing to a median and only time.
MAX_IMAGES = 400
#: A square larger than this share of the short side is mostly background padding beyond the image, which the
#: needs-review reference never saw: at simulated 2x (square 1.6) 99.9 % of pbc/val stayed flagged, at 1.5x (1.2)
#: 53 % (docs/research/scale_normalised_crop.md, rules/renorm.txt); at 0.7-1.4x (0.56-1.11) 17-31 %.
PADDED_FROM = 1.15
#: A spread (interquartile range / median) above this suggests images from more than one magnification.
MIXED_SPREAD = 0.6


@dataclass
class Calibration(SiteModel):
    """What :func:`calibrate` measured; :meth:`save` writes it as a model file."""

    measured: int
    #: the lab's median nucleus radius as a fraction of the image's short side, and its interquartile spread
    radius_fraction: float
    spread: float
    #: how large the lab's cells appear against the training labs' (measured, before the square's limits)
    scale: float
    base_fraction: float
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: the lab's per-channel colour statistics its colours were matched from (None: not matched, ``colour_note`` why)
    colour: ChannelStats | None = None
    colour_note: str = ""
    #: images read whose nucleus the ruler could not use (none found, or the stain measure flooded the field)
    unmeasured: int = 0
    #: the site model on the measured images: what it flags and why (None: not checked)
    preview: LabPreview | None = None
    #: the base model, as it is, on the same images (None: not checked)
    base_preview: LabPreview | None = None

    def summary_lines(self) -> list[str]:
        crop = self.metadata.preprocessing.crop_fraction
        lines = [
            f"cells appear x{self.scale:.2f} as large as in the model's training labs",
            f"images measured: {self.measured}"
            + (f" ({self.unmeasured} more read without a nucleus the ruler can use)" if self.unmeasured else "")
            + (
                f" ({len(self.skipped)} skipped, e.g. {display_name(self.skipped[0][0].name)}: {self.skipped[0][1]})"
                if self.skipped
                else ""
            ),
            f"median nucleus radius: {self.radius_fraction:.3f} x the image's short side (spread {self.spread:.2f})",
            f"the site model's square: {crop:.3g} x the short side (the base model's: {self.base_fraction:.3g})",
        ]
        wanted = self.base_fraction * self.scale
        if abs(crop / wanted - 1) > 0.01:
            lines.append(
                f"the square is at its limit (0.2 to {MAX_CROP_FRACTION:g} x the short side): cells are shown at "
                f"x{crop / wanted:.2f} of the trained size, not exactly at it"
            )
        if crop > PADDED_FROM:
            lines.append(
                "each image shows less around the cell than the model was trained on, so the square is filled out "
                "with background: most cells may still be flagged for review until you adapt the model with reviewed "
                "cells (Review ▸ Adapt to This Lab, or hematovision adapt)"
            )
        if abs(self.scale - 1) < 0.1:
            lines.append("this lab already shows cells at about the training labs' size: the site model changes little")
        if self.spread > MIXED_SPREAD:
            lines.append("the images vary a lot in cell size: were they taken at more than one magnification?")
        lines.append(self.colour_note)
        # what the lab will see first, then how it was measured
        head = [f"WARNING: {w}" for w in self.warnings()]
        if self.preview is not None and self.base_preview is not None and self.base_preview.classified:
            b = self.base_preview
            head.append(f"without calibrating, the model flags {b.flagged} of these {b.classified} images")
        return head + (self.preview.lines() if self.preview is not None else []) + lines

    def warnings(self) -> list[str]:
        """What a person must know before using this site model: it clearly flags more of the lab's images than the
        model as it is, at a lab whose magnification it barely changes (where it changes the size, the base model's
        fewer flags do not mean more cells read right: both flag most cells of a lab seen at another size)."""
        if self.preview is None or self.base_preview is None or abs(self.scale - 1) >= 0.1:
            return []
        if not clearly_fewer(self.base_preview, self.preview):
            return []
        return [
            "calibrating flags more of this lab's cells than not calibrating: this lab probably looks like one the "
            "model was trained on already, so keep using the model as it is here"
        ]


def calibrate(
    base: Model,
    paths: Sequence[Path],
    site_name: str = "this lab",
    progress: Callable[[str, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Calibration:
    """A site model of ``base`` whose "cell" square matches the lab's magnification, measured on the images in
    ``paths`` (files or folders; at most :data:`MAX_IMAGES`, taken evenly)."""
    site_name = check_site_name(site_name)
    say = progress or (lambda _msg, _frac: None)
    _check_base(base)
    items = list(scan(paths))
    skipped = [(item.path, item.error or "") for item in items if item.error is not None]
    files = [item.path for item in items if item.error is None]
    if not files:
        first = f" ({display_name(skipped[0][0])}: {skipped[0][1]})" if skipped else ""
        raise AdaptError(f"no images found to measure{first}")
    chosen = files[:: max(1, math.ceil(len(files) / MAX_IMAGES))]  # evenly over the lab's images
    fractions, shas, unmeasured, measured = _measure(chosen, skipped, say, cancel, base.info.preprocessing.crop_fraction)
    if len(fractions) < MIN_IMAGES:
        read = f"{len(fractions) + len(unmeasured)} image(s) read, {len(fractions)} with a stained nucleus the ruler can measure"
        why = f"; {len(skipped)} skipped (e.g. {display_name(skipped[0][0].name)}: {skipped[0][1]})" if skipped else ""
        too_large = sum(1 for r in unmeasured if math.isfinite(r))
        large = (
            f"; in {too_large} the stain covers more than the largest square can show (cells over "
            f"x{MAX_CROP_FRACTION / base.info.preprocessing.crop_fraction:.1f} the training labs' size, or stain spread "
            "over the whole field)"
            if too_large
            else ""
        )
        raise AdaptError(
            f"{read}{why}{large}; at least {MIN_IMAGES} are needed (white cells of a Romanowsky-stained smear, one per "
            "image, in colour as captured: a greyscale camera, or one that swaps red and blue, shows no purple nucleus)"
        )
    q1, median, q3 = (float(v) for v in np.percentile(fractions, [25, 50, 75]))
    fraction = base.info.preprocessing.crop_fraction
    crop, measured_scale = lab_square(fraction, median)
    data, out = _read_base(base)
    plain = _calibrated_metadata(base, hashlib.sha256(data).hexdigest(), site_name, crop, measured_scale, median, shas)
    colour, note, meta, site, preview = _site_file(base, out, plain, measured, say, cancel)
    base_preview = preview_model(base, measured, say, cancel, (0.9, 1.0), "the model as it is")
    say("done", 1.0)
    spread = (q3 - q1) / median
    return Calibration(
        site,
        meta,
        len(fractions),
        median,
        spread,
        measured_scale,
        fraction,
        skipped,
        colour,
        note,
        len(unmeasured),
        preview,
        base_preview,
    )


def _read_base(base: Model) -> tuple[bytes, OnnxFile]:
    try:
        data = base.path.read_bytes()
        return data, OnnxFile(data)
    except (OSError, ProtoError) as exc:
        raise AdaptError(f"{base.path.name} cannot be read ({exc})") from None


def _site_file(
    base: Model,
    out: OnnxFile,
    plain: ModelMetadata,
    measured: list[Path],
    say: Callable[[str, float], None],
    cancel: Callable[[], bool] | None,
) -> tuple[ChannelStats | None, str, ModelMetadata, bytes, LabPreview]:
    """(lab colours or None, the colour note, metadata, file bytes, preview) of the site model: the square from
    ``plain``, with the lab's colours matched unless the square alone flags clearly fewer of the lab's own images.

    Why the check: at a lab that already looks like one training lab, moving its colours towards the training labs'
    mean moves its cells away from that lab (model 2.0.0 at deepbionet: 12 % -> 48 % flagged; CHANGELOG 2.0.0).
    Both choices are site models the app has shipped; the review rule still judges every cell."""
    colour, note = _colour_match(base, plain.preprocessing, measured, say, cancel)
    meta = site_colours(plain, base.info, colour)
    if colour is None and base.info.colour() is not None:
        meta = with_colours_unmatched(meta, note)
    site = with_metadata(out, meta)
    preview = preview_site_model(site, measured, say, cancel, span=(0.75, 0.83), threads=base.threads)
    if colour is None:
        return colour, note, meta, site, preview
    unmatched = site_colours(plain, base.info, None)
    alone = with_metadata(out, unmatched)
    alone_preview = preview_site_model(alone, measured, say, cancel, (0.83, 0.9), base.threads, "the square alone")
    if not clearly_fewer(alone_preview, preview):
        return colour, note, meta, site, preview
    note = (
        f"colours: not matched (matching them flagged {preview.flagged} of {preview.classified} images, the square "
        f"alone {alone_preview.flagged})"
    )
    kept = with_colours_kept(unmatched, note)
    return None, note, kept, with_metadata(out, kept), alone_preview


def _colour_match(
    base: Model, prep: Preprocessing, paths: list[Path], say: Callable[[str, float], None], cancel: Callable[[], bool] | None
) -> tuple[ChannelStats | None, str]:
    """The lab's colour statistics of the crops the site model will see (a second read of the measured images, one at
    a time), or None and the reason in words when the colours are not matched."""
    size = base.input_size

    def crops() -> Iterator[np.ndarray]:
        for i, path in enumerate(paths):
            if cancel and cancel():
                raise AdaptError("cancelled")
            say(f"matching colours {i + 1} of {len(paths)}", 0.5 + 0.25 * i / max(1, len(paths)))
            try:
                yield load_for_model(path, size, prep)
            except (ImageError, OSError):
                continue  # read once already; a file changed since is left out of the statistics

    return lab_colours(crops(), base.info.colour())  # lazy: nothing is read when there is no reference


def _check_base(base: Model) -> None:
    """Only a model that crops a fixed square around the cell, and not already a site model, can be matched."""
    crop = base.info.preprocessing.crop
    if crop == "nucleus":
        raise AdaptError(f"{base.path.name} already sizes its square by each cell's nucleus: no magnification to match")
    if crop != "cell":
        raise AdaptError(
            f"{base.path.name} shows the model the whole image (no square around the cell): no magnification to match"
        )
    if base.info.site_adaptation:
        raise AdaptError(
            f"{base.path.name} is already a site model; match the magnification from the model it was made from "
            "(Review ▸ Use Shipped Model first)"
        )


def _measure(
    files: list[Path],
    skipped: list[tuple[Path, str]],
    say: Callable[[str, float], None],
    cancel: Callable[[], bool] | None,
    base_fraction: float,
) -> tuple[np.ndarray, list[str], list[float], list[Path]]:
    """(nucleus radius / short side per measured image, their sha256, the readings of the images read whose nucleus
    the ruler cannot use (nan: none found; see :func:`~hv_desktop.core.site.ruler.is_measured`), the measured files);
    each image is measured as it is read and let go, so memory stays flat however many there are."""
    fractions: list[float] = []
    shas: list[str] = []
    measured: list[Path] = []
    seen: set[str] = set()
    unmeasured: list[float] = []
    for i, path in enumerate(files):
        if cancel and cancel():
            raise AdaptError("cancelled")
        say(f"measuring {i + 1} of {len(files)}", 0.5 * i / len(files))
        try:
            read = read_image(path, seen)
        except (ImageError, OSError) as exc:
            skipped.append((path, str(exc) if isinstance(exc, ImageError) else (exc.strerror or str(exc))))
            continue
        if read is None:
            continue  # the same picture twice counts once
        im, digest = read
        seen.add(digest)
        r = nucleus_radius(im) / min(im.size)
        if is_measured(r, base_fraction):
            fractions.append(r)
            shas.append(digest)
            measured.append(path)
        else:
            unmeasured.append(r)
    return np.asarray(fractions, dtype=float), shas, unmeasured, measured


def _calibrated_metadata(
    base: Model, base_sha256: str, site: str, crop: float, scale: float, median: float, shas: list[str]
) -> ModelMetadata:
    info = base.info
    resize = (
        f"as the base model, with the square's side {crop:.3g} x the image's short side (this lab's magnification "
        f"x{scale:.2f}, from its median nucleus radius; padded with the image's background colour beyond it)"
    )
    return info.with_updates(
        metrics=None,
        preprocessing=replace(info.preprocessing, crop_fraction=crop),
        preprocessing_notes={**info.preprocessing_notes, "resize": resize},
        **site_identity(info, f"at {site}'s magnification"),
        site_adaptation={
            "kind": CALIBRATED_KIND,
            **site_provenance(info, site, base_sha256),
            "magnification": round(scale, 4),
            "trained_crop_fraction": info.preprocessing.crop_fraction,  # calibrate refuses site models: the base's
            "median_nucleus_radius_per_short_side": round(median, 5),
            "reference_radii": REFERENCE_RADII,
            "images_measured": len(shas),
            "images_sha256": sorted(shas),
        },
    )
