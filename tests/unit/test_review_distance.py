"""The needs-review distance (training.review.Distance) against the textbook formula (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

review = pytest.importorskip("training.review")


def _data(d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    groups = np.repeat(np.arange(3), 60)
    feats = rng.normal(size=(180, d)) @ mix + groups[:, None] * 0.5
    return feats, groups, rng.normal(size=(7, d)) @ mix


def _textbook(feats, groups, queries, cov_of):
    centres = np.stack([feats[groups == g].mean(0) for g in np.unique(groups)])
    resid = feats - centres[groups]
    cov = resid.T @ resid / len(resid)
    cov += review.SHRINK * np.trace(cov) / len(cov) * np.eye(len(cov))
    inv = np.linalg.inv(cov_of(cov))
    return np.min([np.einsum("nd,de,ne->n", queries - c, inv, queries - c) for c in centres], axis=0)


def test_exact_whitening_is_the_mahalanobis_distance():
    feats, groups, q = _data(12)
    got = review.Distance(feats, groups)(q)
    assert np.allclose(got, _textbook(feats, groups, q, lambda c: c), rtol=1e-6)


def test_large_layers_keep_leading_directions_and_an_isotropic_rest(monkeypatch):
    monkeypatch.setattr(review, "FULL_MAX", 8)
    monkeypatch.setattr(review, "TOP_K", 4)
    feats, groups, q = _data(12, seed=1)

    def approx(cov):
        evals, evecs = np.linalg.eigh(cov)
        top, rest = evecs[:, -4:], evals[:-4].mean()
        return top @ np.diag(evals[-4:]) @ top.T + rest * (np.eye(len(cov)) - top @ top.T)

    dist = review.Distance(feats, groups)
    assert dist.basis.shape == (12, 4) and dist.rest > 0
    assert np.allclose(dist(q), _textbook(feats, groups, q, approx), rtol=1e-6)
    # and it stays near the exact distance (the rest of the spectrum is flat after shrinkage)
    exact = _textbook(feats, groups, q, lambda c: c)
    assert np.corrcoef(np.log(dist(q)), np.log(exact))[0, 1] > 0.9


def test_pooled_stats_are_mean_and_std_over_space_in_either_layout():
    rng = np.random.default_rng(2)
    nhwc = rng.normal(size=(3, 5, 5, 4))
    f, axes = review.pooled_stats(nhwc)
    assert axes == (1, 2) and f.shape == (3, 8)
    assert np.allclose(f[:, :4], nhwc.mean((1, 2))) and np.allclose(f[:, 4:], nhwc.std((1, 2)))
    f2, axes2 = review.pooled_stats(nhwc.transpose(0, 3, 1, 2))
    assert axes2 == (2, 3) and np.allclose(f2, f)
    flat, none = review.pooled_stats(nhwc[:, 0, 0, :])
    assert none is None and np.allclose(flat, nhwc[:, 0, 0, :])


def test_youden_threshold_separates_and_prefers_the_best_cut():
    genuine = np.array([0.9, 0.8, 0.7, 0.65, 0.3])  # one genuine cell looks untypical
    other = np.array([0.1, 0.2, 0.25, 0.6])
    thr = review.youden_threshold(genuine, other)
    assert 0.25 < thr <= 0.65  # flags three of four others and no genuine cell, or all others and one genuine
    j = np.mean(other < thr) - np.mean(genuine < thr)
    for cut in np.linspace(0, 1, 101):
        assert np.mean(other < cut) - np.mean(genuine < cut) <= j + 1e-12


def test_magnification_keeps_size_and_scales_the_content():
    from PIL import Image, ImageDraw

    from training.magnification import at_magnification

    im = Image.new("RGB", (120, 90), (230, 220, 215))
    ImageDraw.Draw(im).ellipse([50, 35, 70, 55], fill=(100, 50, 160))  # a 21 px "nucleus" in the middle
    rng = np.random.default_rng(0)

    def nucleus_width(x: Image.Image) -> int:
        a = np.asarray(x).astype(int)
        return int(((a[..., 2] - a[..., 1]) > 60).any(0).sum())

    assert at_magnification(im, 1.0, rng) is im
    for scale in (0.5, 0.7, 1.4, 2.0):
        out = at_magnification(im, scale, rng)
        assert out.size == im.size
        assert abs(nucleus_width(out) - 21 * scale) <= 2.5
    small = np.asarray(at_magnification(im, 0.5, rng))
    assert (small[0, 0] == (230, 220, 215)).all()  # the wider field is filled with the image's own background


def test_per_lab_distance_is_the_smallest_standardised_lab_distance_and_stays_finite():
    feats_a, groups_a, q = _data(6, seed=3)
    feats_b, groups_b, _ = _data(6, seed=4)
    a, b = review.Distance(feats_a, groups_a), review.Distance(feats_b + 3.0, groups_b)
    lab = review.LabDistance([a, b], [0.5, 1.0], [2.0, 0.5])
    want = np.minimum((np.log(a(q)) - 0.5) / 2.0, (np.log(b(q)) - 1.0) / 0.5)
    assert np.allclose(np.log(lab(q)), want)
    # a lab whose genuine cells all sat at one distance (sd ~ 1e-9): z is clipped, so exp(z) is neither 0 nor inf
    tiny = review.LabDistance([a, b], [50.0, 1.0], [1e-9, 1e-9])
    out = tiny(q)
    assert np.all(np.isfinite(out)) and np.all(out > 0)
    assert np.allclose(np.log(out), np.clip(np.log(out), -review.ZMAX, review.ZMAX))
    assert np.isclose(np.log(out).min(), -review.ZMAX)
