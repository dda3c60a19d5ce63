"""The fit behind site adaptation, with numpy alone: the classifier head pulled toward the base head, stratified
cross-validation, and the two temperatures (log-loss, and the needs-review rule's at the lab's flag rate).

Why numpy: the clinic PC has no TensorFlow, and a fit on a few hundred cells takes seconds this way (the head is
fitted in the dual, on the n x n Gram matrix, as n << d).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hv_desktop.core.site.adapt_graph import REVIEW, Probe, ReviewGraph, softmax

#: L2 pull toward the base head, relative to the mean squared feature norm (docs/research/rules/adapt.txt).
RIDGE = 1.0
FOLDS = 5
#: Share of the lab's genuine cells (cross-validated) the adapted needs-review rule may flag (review_temperature).
REVIEW_FLAG_RATE = 0.25


def fit_head(
    x: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: np.ndarray, ridge: float, frozen: Sequence[int] = (), iterations: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced softmax regression pulled toward (w0, b0): returns (W, b).

    Minimises sum_i v_i CE(x_i W + b, y_i) + lam/2 ||W - w0||^2 + lam/2 ||b - b0||^2 with v_i = 1 / (classes x
    cells of y_i's class) and lam = ridge x mean ||x||^2 / n. W - w0 lies in the span of the cells' features,
    so it is X^T A and the fit runs on the n x n Gram matrix (Nesterov steps, preconditioned by K^-1).
    """
    n, c = len(x), w0.shape[1]
    counts = np.bincount(y, minlength=c).astype(np.float64)
    v = 1.0 / (np.count_nonzero(counts) * counts[y])
    onehot = np.eye(c)[y]
    k = x @ x.T
    lam = ridge * float(np.trace(k)) / n / n
    base = x @ w0 + b0
    free = np.ones(c)
    free[list(frozen)] = 0.0
    lip = 0.5 * float(np.linalg.eigvalsh(k)[-1]) * float(v.max()) + 0.5 * float(v.max()) * n + lam
    eta = 1.0 / lip
    a = np.zeros((n, c))
    beta = np.zeros(c)
    a_prev, beta_prev = a.copy(), beta.copy()
    for it in range(1, iterations + 1):
        mom = (it - 1) / (it + 2)
        ya, yb = a + mom * (a - a_prev), beta + mom * (beta - beta_prev)
        g = (softmax(base + k @ ya + yb) - onehot) * v[:, None]
        a_prev, beta_prev = a, beta
        a = ya - eta * (g + lam * ya) * free
        beta = yb - eta * (g.sum(0) + lam * yb) * free
    return w0 + x.T @ a, b0 + beta


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """A stratified fold number per cell (deterministic)."""
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        # a fixed multiplicative-hash shuffle (the standalone bundle leaves numpy.random out)
        idx = idx[np.argsort((idx.astype(np.uint64) * np.uint64(2654435761) + np.uint64(seed)) % np.uint64(2**32))]
        fold[idx] = np.arange(len(idx)) % k
    return fold


def cross_validated_logits(
    x: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: np.ndarray, frozen: Sequence[int], folds: np.ndarray
) -> np.ndarray:
    """Each cell's logits from a head fitted without its fold."""
    out = np.zeros((len(y), w0.shape[1]))
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        w, b = fit_head(x[tr], y[tr], w0, b0, RIDGE, frozen)
        out[te] = x[te] @ w + b
    return out


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = softmax(logits / t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Log-loss temperature on cross-validated logits, kept in [0.5, 5] (a few dozen cells that CV classifies
    perfectly would otherwise drive it to zero: certainty the data cannot support)."""
    grid = np.exp(np.linspace(np.log(0.5), np.log(5.0), 41))
    return float(grid[int(np.argmin([nll(logits, y, t) for t in grid]))])


def fold_count(y: np.ndarray) -> int:
    """Cross-validation folds for labels ``y``: :data:`FOLDS`, fewer when the smallest class has fewer cells."""
    per_class = np.bincount(y)
    return min(FOLDS, max(2, int(per_class[per_class > 0].min())))


def cv_review_inputs(
    rv: ReviewGraph,
    f: dict[str, np.ndarray],
    emb: np.ndarray,
    y_all: np.ndarray,
    probe: Probe,
    frozen: Sequence[int],
    folds: np.ndarray,
    add_centres: bool,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(logits, per-layer distances) of every labelled cell after adaptation, each from a fit without its own
    fold (non-target cells, which no fold holds, from the fit on all target cells): typicality at any T."""
    target = y_all >= 0
    tidx = np.flatnonzero(target)
    logits = np.zeros((len(y_all), probe.w0.shape[1]))
    dists = [np.zeros(len(y_all)) for _ in range(rv.layers)]
    groups = [(tidx[folds == k], tidx[folds != k]) for k in np.unique(folds)]
    groups.append((np.flatnonzero(~target), tidx))
    for test, train in groups:
        if not len(test):
            continue
        w, b = fit_head(emb[train], y_all[train], probe.w0, probe.b0, RIDGE, frozen)
        logits[test] = emb[test] @ w + b
        for i in range(rv.layers):
            d = f[f"{REVIEW}l{i}_dist"][test]
            if add_centres:
                lf = f[f"{REVIEW}l{i}_f"]
                cs = [lf[train][y_all[train] == c].mean(0) for c in np.unique(y_all[train]) if c not in frozen]
                if cs:
                    d = np.minimum(d, rv.lab_distance(i, lf[test], np.stack(cs)))
            dists[i][test] = d
    return logits, dists


def review_temperature(
    rv: ReviewGraph, logits: np.ndarray, dists: list[np.ndarray], threshold: float, flag_rate: float | None = None
) -> float:
    """The largest temperature (least confident, so the most cells flagged) at which no more than ``flag_rate``
    of the lab's genuine cells, cross-validated, fall under the review threshold.

    Why: a head refitted on a few dozen cells is sharper than the base's on everything, non-target cells
    included; its log-loss temperature would stop flagging them. The base rule flags about this share of its
    own labs' genuine cells (15-17 %, model card), so the lab's genuine cells are brought to the same footing,
    and no further: everything unlike them keeps the flag it would get.
    """
    flag_rate = REVIEW_FLAG_RATE if flag_rate is None else flag_rate

    def rate(t: float) -> float:
        return float(np.mean(rv.typicality(logits, t, dists) < threshold))

    lo, hi = np.log(0.05), np.log(20.0)
    if rate(np.exp(lo)) > flag_rate:
        return float(np.exp(lo))
    for _ in range(50):
        mid = (lo + hi) / 2
        if rate(float(np.exp(mid))) <= flag_rate:
            lo = mid
        else:
            hi = mid
    return float(np.exp(lo))
