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
