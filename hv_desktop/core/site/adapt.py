"""Adapt a model to one lab from that lab's own reviewed cells, and write the result as a new model file.

Why: at a lab it was not trained on (another microscope, camera, stain, magnification) the shipped model
misreads many cells and flags nearly all of them; in its own labs it is excellent. A technologist reviews the
flagged cells anyway, and those reviews are labels. From a few of them per class this module fits, in seconds
and with numpy alone:

- the lab's magnification: the "cell" crop's size, measured with the nucleus ruler (:mod:`ruler`) on the reviewed
  cells' images (cross-validating :data:`SCALES` on 40 cells swung between draws and cost more than the head
  gained: docs/research/rules/adapt_ruler.txt), so the network sees the lab's cells at the size it was trained
  on; chosen among :data:`SCALES` by cross-validation only when fewer than 20 cells have a nucleus to measure;
- the lab's colours, matched to the training labs' as calibrate matches them (:mod:`site_colour`), so the head
  reads colour-matched features (deepbionet 85 -> 92 % at 10 cells/class: docs/research/rules/adapt_on_calibrate.txt);
- the classifier head: class-balanced multinomial logistic regression on the model's own pooled features
  (its ``embedding`` output), pulled toward the base head by an L2 penalty (a class with fewer than
  :data:`MIN_PER_CLASS` cells keeps its base weights); fitted in the dual (n x n Gram matrix), as n << d;
- the calibration temperature, on the cross-validated predictions;
- the needs-review reference: the lab's class centres are added to the typical region of the model's
  ``typicality`` output, so the lab's genuine cells stop being unusual by their look alone (the threshold is
  the base model's, unchanged).

The new file is the base file with those initializers and its metadata replaced (:mod:`onnx_proto`), so it
loads like any model (``--model``, File > Load Model) and states its provenance: base model, site, date,
cells per class, the sha256 of every cell used, and a cross-validated before/after estimate.
The base file is never modified.

Here is the order of the fit; the parts are the cells' reading (:mod:`lab_images`), the base graph
(:mod:`adapt_graph`), the numpy fit (:mod:`adapt_fit`) and the site model's file (:mod:`site_model`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import Preprocessing, box_around, cell_centre, normalise, nucleus_radius, resize_for_model
from hv_desktop.core.inference.colour import ChannelStats, matched
from hv_desktop.core.inference.metadata import FLAG_ALL, MAX_CROP_FRACTION, ModelMetadata, needs_review
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.site.adapt_fit import (
    RIDGE,
    balanced_accuracy,
    cross_validated_logits,
    cv_review_inputs,
    fit_head,
    fit_temperature,
    fold_count,
    nll,
    review_temperature,
    stratified_folds,
)
from hv_desktop.core.site.adapt_graph import REVIEW, Probe, ReviewGraph, softmax
from hv_desktop.core.site.adaptation import MIN_PER_CLASS, Adaptation, Estimate
from hv_desktop.core.site.lab_images import LabelledCell, limit_by_class, load_images, within_limit
from hv_desktop.core.site.ruler import ruler_magnification, trained_fraction
from hv_desktop.core.site.site_colour import already_matched, colours_kept, lab_colours, site_colours
from hv_desktop.core.site.site_model import (
    AdaptError,
    base_review_threshold,
    check_site_name,
    site_identity,
    site_provenance,
    with_metadata,
)
from hv_desktop.core.site.unflag import UnflagCheck, unflag_check

#: Magnifications of the lab relative to the model's training labs that are tried (the crop's side is the
#: base ``crop_fraction`` times this, within [0.2, 2] of the short side).
SCALES = (0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0)
#: Cells per class the magnification is chosen on (all cells are then used at the chosen one).
SELECT_PER_CLASS = 20

ProgressFn = Callable[[str, float], None]


def adapt(
    base: Model,
    cells: Sequence[LabelledCell],
    site_name: str = "this lab",
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    add_review_centres: bool = True,
    magnification: str = "ruler",
) -> Adaptation:
    """Fit a site adaptation of ``base`` from reviewed cells (see the module docstring). ``magnification``:
    "ruler" (the default) measures it with the nucleus ruler on the cells' images when enough have a
    nucleus, else as "cv"; "cv" chooses it among :data:`SCALES` by cross-validation (docs/research/rules/adapt_ruler.txt)."""
    site_name = check_site_name(site_name)
    say = progress or (lambda _msg, _frac: None)
    labels = base.labels
    floor = base_review_threshold(base.info)  # an old site model that cannot be adapted again says so before any work
    probe = Probe(base)
    cells = within_limit(cells)
    given_labels = Counter(c.label.strip().lower() for c in cells)
    given = {k: given_labels[k.lower()] for k in labels}
    say("reading images", 0.0)
    laps = _Laps()
    ims, y_all, shas, outside, skipped, duplicates = load_images(cells, labels, cancel)
    counts, enough = _fitted_classes(y_all, labels, len(cells), skipped)
    frozen = [i for i in range(len(labels)) if i not in enough]
    target = y_all >= 0
    laps.lap("read")
    measure = _Measure(base, probe, ims, laps)
    folds = stratified_folds(y_all[target], fold_count(y_all[target]))
    ruler = _ruler_magnification(measure) if magnification == "ruler" else None
    colour, colour_note = _match_colours(base, measure, ruler or 1.0)
    best, scores = (ruler, {}) if ruler is not None else _choose_magnification(measure, y_all, frozen, say, cancel)
    say("fitting", 0.9)
    every = np.arange(len(measure.ims))
    f_best = measure.features(best, every)
    f_base = f_best if best == 1.0 and measure.prep == measure.base_prep else measure.features(1.0, every, as_base=True)

    def refit(keep: list[int]) -> tuple[OnnxFile, np.ndarray, float, np.ndarray, np.ndarray]:
        return _refit(base, probe, f_best, f_base, y_all, keep, enough, folds, add_review_centres)

    fit = _fit_never_worse(refit, frozen, f_best[base.scores_name], y_all, say, cancel)
    out, cv_logits, t, base_typ, after_typ, frozen, kept_classes = fit
    check = unflag_check(y_all[target], cv_logits.argmax(1), after_typ[target], floor, labels)
    before, after = _before_after(y_all, f_base[base.scores_name], base_typ, cv_logits, after_typ, floor, check.threshold)
    if not check.verified:  # nothing unflagged that the lab's own reviews have not shown to be right
        after = replace(after, flagged=1.0, other_flagged=None if after.other_flagged is None else 1.0)
    meta = _site_metadata(base, probe.sha256, site_name, best, t, counts, shas, before, after, frozen, check)
    meta = site_colours(meta, base.info, colour)
    # what it was given before duplicates and unreadable files were left out: the step a refresh was offered at
    meta = meta.with_updates(site_adaptation={**(meta.site_adaptation or {}), "cells_given_per_class": given})
    data = with_metadata(out, meta)
    laps.lap("fit")
    say("done", 1.0)
    kept_base = [labels[i] for i in frozen]
    report = (skipped, outside, scores, laps.seconds, check, duplicates, colour_note, kept_classes)
    in_use = base.info.review_threshold
    in_use_flagged = float(np.mean([needs_review(v, in_use) for v in base_typ[target]]))
    return Adaptation(data, meta, counts, best, before, after, kept_base, *report, in_use_flagged=in_use_flagged)


def _fit_never_worse(
    refit: Callable[[list[int]], tuple[OnnxFile, np.ndarray, float, np.ndarray, np.ndarray]],
    frozen: list[int],
    matched_logits: np.ndarray,
    y_all: np.ndarray,
    say: ProgressFn,
    cancel: Callable[[], bool] | None,
) -> tuple[OnnxFile, np.ndarray, float, np.ndarray, np.ndarray, list[int], tuple[float, float] | None]:
    """``refit(frozen)`` (:func:`_refit`), unless the fitted classes read the lab's reviewed cells worse (cross-validated)
    than the base classes at the lab's square and colours (``matched_logits``), which need no cross-validation
    (nothing was fitted on these cells): then every class keeps the base head (rules/adapt_keep_head.txt). Returns
    _refit's, the classes kept, and (fitted, base) accuracy when the base classes were kept."""
    target = y_all >= 0
    fit = refit(frozen)
    y = y_all[target]
    fitted_acc = float(np.mean(fit[1].argmax(1) == y))
    matched_acc = float(np.mean(matched_logits[target].argmax(1) == y))
    if fitted_acc >= matched_acc:
        return (*fit, frozen, None)
    if cancel and cancel():
        raise AdaptError("cancelled")
    say("keeping the model's own classes", 0.95)
    every_class = list(range(matched_logits.shape[1]))
    return (*refit(every_class), every_class, (fitted_acc, matched_acc))


def _refit(
    base: Model,
    probe: Probe,
    f_best: dict[str, np.ndarray],
    f_base: dict[str, np.ndarray],
    y_all: np.ndarray,
    frozen: list[int],
    enough: list[int],
    folds: np.ndarray,
    add_centres: bool,
) -> tuple[OnnxFile, np.ndarray, float, np.ndarray, np.ndarray]:
    """The base file with the lab's head (and needs-review rule) written in, from the probe's outputs at the lab's
    square and colours (``f_best``) and at the base model's own (``f_base``), and :func:`_refit_typicality`'s or
    :func:`_refit_confidence`'s figures."""
    target = y_all >= 0
    emb = f_best[probe.embedding]
    w, b = fit_head(emb[target], y_all[target], probe.w0, probe.b0, RIDGE, frozen)
    out = OnnxFile(probe.file.to_bytes())
    out.set_initializer(probe.head["weight"], w.astype(np.float32))
    out.set_initializer(probe.head["bias"], b.astype(np.float32))
    # before: the base model as it is; after: every cell scored by a fit that did not see it
    if probe.review is not None:
        refit = _refit_typicality(base, probe.review, out, f_best, f_base, probe, y_all, frozen, enough, folds, add_centres)
    else:
        refit = _refit_confidence(base, f_base, emb, probe, y_all, frozen, folds)
    return (out, *refit)


class _Laps:
    """Wall seconds per stage (reading, features, fitting), added up over the stage's laps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.clock
        self.clock = now


def _fitted_classes(
    y_all: np.ndarray, labels: Sequence[str], n_cells: int, skipped: list[tuple[Path, str]]
) -> tuple[dict[str, int], list[int]]:
    """(cells per class, the classes with enough cells to refit); an error when nothing can be fitted."""
    counts = {lab: int(np.sum(y_all == i)) for i, lab in enumerate(labels)}
    if not (y_all >= 0).any():
        raise AdaptError(
            f"none of the {n_cells} reviewed cells is one of the model's classes "
            f"({', '.join(labels)})" + (f"; {len(skipped)} could not be read" if skipped else "")
        )
    problem = coverage_problem(counts, labels)
    if problem:
        raise AdaptError(problem)
    return counts, [i for i, lab in enumerate(labels) if counts[lab] >= MIN_PER_CLASS]


def classes_needed(labels: Sequence[str]) -> int:
    """How many of the model's classes need :data:`MIN_PER_CLASS` reviewed cells: all but one (at least two).

    Why: a class without them keeps the base model's weights, but the fit can only raise the reviewed classes'
    scores against it, and its cross-validated estimate cannot see that: in issue 30, 40 neutrophils alone made a
    site model that read eosinophils and monocytes as neutrophils, unflagged, while the estimate said 95 %.
    """
    return max(2, len(labels) - 1) if len(labels) > 1 else 1


def coverage_problem(counts: Mapping[str, int], labels: Sequence[str]) -> str:
    """Why reviewed cells (``counts``: model class -> cells) cannot make a site model, or "" when they can: the one
    rule the command line and the dialog both apply."""
    need = classes_needed(labels)
    if sum(counts.get(lab, 0) >= MIN_PER_CLASS for lab in labels) >= need:
        return ""
    have = ", ".join(f"{lab} {counts.get(lab, 0)}" for lab in labels)
    return (
        f"too few reviewed cells: at least {MIN_PER_CLASS} cells of each of {need} of the model's {len(labels)} "
        f"classes are needed, so the site model learns to tell them apart (have {have})"
    )


class _Measure:
    """The probe's outputs for chosen cells at a magnification; each cell's centre (and, for a nucleus crop,
    its radius) found once. A "nucleus" crop already shows every lab's cell at one scale: it keeps its
    square, measured per cell."""

    def __init__(self, base: Model, probe: Probe, ims: list[Image.Image], laps: _Laps) -> None:
        self.prep = self.base_prep = prep = base.info.preprocessing
        self.trained = trained_fraction(base.info)  # the square the network was trained at
        self.scales = SCALES if prep.crop == "cell" else (1.0,)
        self.n_labels = len(base.labels)
        self.size, self.probe, self.ims, self.laps = base.input_size, probe, ims, laps
        self.centres = [cell_centre(im) if prep.crop in ("cell", "nucleus") else None for im in ims]
        self.radii = [
            nucleus_radius(im, c) if prep.crop == "nucleus" and c else None for im, c in zip(ims, self.centres, strict=True)
        ]

    def square(self, s: float, i: int, prep: Preprocessing | None = None) -> np.ndarray:
        """Cell i's square at magnification s, uint8 (what the normalisation is applied to)."""
        p = _at_scale(prep or self.prep, s)
        return resize_for_model(self.ims[i], self.size, p, box_around(self.ims[i].size, self.centres[i], p, self.radii[i]))

    def features(self, s: float, idx: np.ndarray, as_base: bool = False) -> dict[str, np.ndarray]:
        """The probe's outputs; ``as_base``: with the base model's colours (the lab's when matched: :attr:`prep`)."""
        prep = self.base_prep if as_base else self.prep
        out = self.probe.run(normalise(np.stack([self.square(s, i, prep) for i in idx]), _at_scale(prep, s)))
        self.laps.lap("features")
        return out


def _match_colours(base: Model, measure: _Measure, scale: float) -> tuple[ChannelStats | None, str]:
    """The lab's colours from the cells' own squares, folded into ``measure.prep`` so the head is fitted on
    colour-matched features (docs/research/rules/adapt_on_calibrate.txt); a base matched already is left as it is."""
    if already_matched(base.info):
        return None, "colours: kept as the model it was made from matched them (Use Shipped Model to match anew)"
    kept = colours_kept(base.info)
    if kept:
        return None, f"colours: kept as captured, as calibrate left them at this lab ({kept.removeprefix('colours: ')})"
    reference = base.info.colour()
    lab, note = lab_colours((measure.square(scale, i) for i in range(len(measure.ims))), reference)
    if lab is not None and reference is not None:
        measure.prep = matched(measure.prep, lab, reference)
    return lab, note


def _ruler_magnification(measure: _Measure) -> float | None:
    """The lab's magnification from the cells' median nucleus radius (the nucleus ruler); None when the model
    has no "cell" square or fewer than the ruler's minimum of images have a nucleus to measure."""
    if measure.prep.crop != "cell":
        return None
    pairs = zip(measure.ims, measure.centres, strict=True)
    radii = [nucleus_radius(im, c) / min(im.size) for im, c in pairs if c is not None]
    return ruler_magnification(radii, measure.prep.crop_fraction, measure.trained)


def _choose_magnification(
    measure: _Measure, y_all: np.ndarray, frozen: list[int], say: ProgressFn, cancel: Callable[[], bool] | None
) -> tuple[float, dict[float, float]]:
    """(the magnification whose refitted head cross-validates best, the score of each one tried).

    The choice is made on at most SELECT_PER_CLASS cells per class (it settles well before that; this keeps
    200 cells within seconds), then every cell is measured at the chosen one."""
    probe, scales, n_labels = measure.probe, measure.scales, measure.n_labels
    target = y_all >= 0
    sel = limit_by_class(np.where(target, y_all, n_labels), SELECT_PER_CLASS * (n_labels + 1))
    sel = sel[target[sel]]
    y_sel = y_all[sel]
    sel_folds = stratified_folds(y_sel, fold_count(y_sel))
    scores: dict[float, float] = {}
    for si, s in enumerate(scales):
        if cancel and cancel():
            raise AdaptError("cancelled")
        say(f"measuring at magnification x{s:g}", 0.05 + 0.8 * si / len(scales))
        emb_s = measure.features(s, sel)[probe.embedding]
        cv = cross_validated_logits(emb_s, y_sel, probe.w0, probe.b0, frozen, sel_folds)
        # balanced accuracy, ties broken by log-loss (a lower one adds < 0.01)
        scores[s] = balanced_accuracy(y_sel, cv.argmax(1)) - 0.01 * math.tanh(nll(cv, y_sel, 1.0))
        measure.laps.lap("fit")
    best = max(scales, key=lambda s: (round(scores[s], 6), -abs(math.log(s))))
    return best, scores


def _refit_typicality(
    base: Model,
    rv: ReviewGraph,
    out: OnnxFile,
    f_best: dict[str, np.ndarray],
    f_base: dict[str, np.ndarray],
    probe: Probe,
    y_all: np.ndarray,
    frozen: list[int],
    enough: list[int],
    folds: np.ndarray,
    add_centres: bool,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A model with a typicality output: its temperature refitted to the lab's flag rate and, optionally, the
    lab's class centres added to its typical region (both written into ``out``). Returns (cross-validated
    logits of the target cells, temperature, typicality before, typicality after, cross-validated)."""
    target = y_all >= 0
    thr = base_review_threshold(base.info)
    base_layers = [f_base[f"{REVIEW}l{i}_dist"] for i in range(rv.layers)]
    base_typ = rv.typicality(f_base[base.scores_name], base.info.temperature, base_layers)
    emb = f_best[probe.embedding]
    logits_cv, dists_cv = cv_review_inputs(rv, f_best, emb, y_all, probe, frozen, folds, add_centres)
    t = review_temperature(rv, logits_cv[target], [d[target] for d in dists_cv], thr)
    after_typ = rv.typicality(logits_cv, t, dists_cv)
    out.set_initializer(f"{REVIEW}temperature", np.asarray(t, np.float32))
    if add_centres:
        for i in range(rv.layers):
            f = f_best[f"{REVIEW}l{i}_f"]
            rv.add_centres(out, i, np.stack([f[y_all == c].mean(0) for c in enough]))
    # the same fold fits give the cross-validated predictions
    return logits_cv[target], t, base_typ, after_typ


def _refit_confidence(
    base: Model,
    f_base: dict[str, np.ndarray],
    emb: np.ndarray,
    probe: Probe,
    y_all: np.ndarray,
    frozen: list[int],
    folds: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A model whose review rule is its confidence: the log-loss temperature on cross-validated logits.
    Returns (cross-validated logits of the target cells, temperature, confidence before, confidence after)."""
    target = y_all >= 0
    y = y_all[target]
    cv_logits = cross_validated_logits(emb[target], y, probe.w0, probe.b0, frozen, folds)
    t = fit_temperature(cv_logits, y)
    base_typ = softmax(f_base[base.scores_name] / base.info.temperature).max(1)
    full = np.zeros((len(y_all), len(base.labels)))
    full[target] = cv_logits
    after_typ = softmax(full / t).max(1)
    return cv_logits, t, base_typ, after_typ


def _before_after(
    y_all: np.ndarray,
    base_logits: np.ndarray,
    base_typ: np.ndarray,
    cv_logits: np.ndarray,
    after_typ: np.ndarray,
    thr: float,
    site_thr: float,
) -> tuple[Estimate, Estimate]:
    """The base model as it is (its threshold ``thr``), and the adapted one (``site_thr``) with every target cell
    scored by a fit that did not see it."""
    before = _estimate(y_all, base_logits.argmax(1), base_typ, thr)
    after_pred = np.full(len(y_all), -1)
    after_pred[y_all >= 0] = cv_logits.argmax(1)
    return before, _estimate(y_all, after_pred, after_typ, site_thr)


def _estimate(y_all: np.ndarray, pred: np.ndarray, typ: np.ndarray, thr: float) -> Estimate:
    target = y_all >= 0
    flagged = typ < thr
    other = (~target).any()
    return Estimate(
        accuracy=float(np.mean(pred[target] == y_all[target])),
        flagged=float(np.mean(flagged[target])),
        other_flagged=float(np.mean(flagged[~target])) if other else None,
    )


def _at_scale(prep: Preprocessing, s: float) -> Preprocessing:
    if prep.crop != "cell":
        return prep
    return replace(prep, crop_fraction=float(min(MAX_CROP_FRACTION, max(0.2, prep.crop_fraction * s))))


def _site_metadata(
    base: Model,
    base_sha256: str,
    site: str,
    scale: float,
    t: float,
    counts: dict,
    shas: list[str],
    before: Estimate,
    after: Estimate,
    frozen: list[int],
    check: UnflagCheck,
) -> ModelMetadata:
    """The base model's metadata with the site's crop, temperature, name and provenance (its test figures,
    which do not describe the site model, left out)."""
    info = base.info
    prep = _at_scale(info.preprocessing, scale)
    resize = (
        f"as the base model, with the square's side {prep.crop_fraction:.3g} x the image's short side "
        f"(this lab's magnification x{scale:g}; padded with the image's background colour beyond it)"
        if prep.crop == "cell"
        else info.preprocessing_notes.get("resize", "as the base model")
    )
    return info.with_updates(
        metrics=None,
        preprocessing=prep,
        preprocessing_notes={**info.preprocessing_notes, "resize": resize},
        temperature=t,
        review_threshold=check.threshold if check.verified else FLAG_ALL,
        **site_identity(info, f"adapted to {site}"),
        site_adaptation={
            **site_provenance(info, site, base_sha256),
            "magnification": scale,
            "trained_crop_fraction": trained_fraction(info),
            "cells_per_class": counts,
            "classes_kept_from_base": [base.labels[i] for i in frozen],
            "ridge": RIDGE,
            "estimate_before": before.as_dict(),
            "estimate_after_cross_validated": after.as_dict(),
            "unflag_check": check.as_dict(),
            "base_review_threshold": base_review_threshold(info),
            "cells_sha256": sorted(set(shas)),
        },
    )
