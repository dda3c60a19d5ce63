"""Finding every white blood cell in a camera field (issue 28): one box per cell, not one crop per file.

Classical stain segmentation, numpy and Pillow only, grown from what ``core.imaging.preprocess`` knows: Romanowsky stains
colour nuclear chromatin purple (``cell_centre``'s purple excess). What it adds, and why:

- **A ruler from the red cells.** Every field holds red cells, about 7.5 um across in every lab, while a field
  without a white cell has only platelets for a nucleus ruler to measure. The lag at which the field's
  autocorrelation falls to half is about a third of a red cell, so every size below is in red-cell diameters (D)
  and the field is reduced to a fixed number of pixels per red cell before it is segmented: the finder sees every
  magnification at one scale.
- **A stain level set by the field itself**: part way from the field's median purple excess to its strongest
  nucleus, and clear of its upper quartile (red cells that take the stain in some labs), so a paler, stronger or
  shifted stain moves the level with it.
- **Lobes merged, platelets dropped**: components of the stained mask dilated by half the lobe gap (a run-length
  union-find in numpy), so a neutrophil's separate lobes make one cell; a platelet or a clump of them is too small
  for a nucleus, or beside a nucleus in the same field, too small or too pale next to it.
- **The cell's box** is the nucleus's box grown by the cytoplasm's usual width; one that had to be clipped to
  the image is ``at_edge`` (left out of a manual differential).

Measured by ``python -m training.analysis.detect_eval`` (recall and precision per lab, per number of cells and on
simulated labs); the rule and its history: docs/research/rules/detect.txt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Red-cell diameter / the lag at which a field's autocorrelation falls to half (lag / red-cell box, median of
#: bccd-fields: 0.33; ``python -m training.analysis.detect_eval --lab bccd --ruler``).
RULER_TO_RBC = 1 / 0.33


@dataclass(frozen=True)
class FinderParams:
    """The finder's settings; sizes are in red-cell diameters (D), measured in each field."""

    rbc_px: float = 14.0  # the field is reduced so that a red cell is at least this many pixels across
    stain_frac: float = 0.4  # mask: purple > median + stain_frac * (strongest - median)
    floor_q: float = 0.75  # and purple > the field's floor_q quantile + floor_margin * (strongest - median) ...
    floor_margin: float = 0.25  # ... so red cells stained purple (some labs) stay below a nucleus
    min_contrast: float = 20.0  # strongest - median below this: no stained nucleus in the field
    merge: float = 0.2  # stained parts closer than this (in D) are one nucleus (a neutrophil's lobes)
    min_area: float = 0.25  # a nucleus covers at least this many D^2 (a platelet is ~0.05)
    min_peak: float = 0.75  # its strongest stain (90th percentile) reaches this share of the field's strongest ...
    big_area: float = 1.0  # ... unless it covers this many D^2 (a paler cell beside a dark one)
    min_rel: float = 0.15  # and at least this share of the field's largest (platelet clumps beside a nucleus)
    max_fill: float = 4.0  # its box is at most this many times its stained area (a spiky platelet clump is not)
    grow: float = 0.2  # the cell box: the nucleus's box plus this much (in D) on every side
    min_side: float = 1.0  # and at least this many D on each side
    ruler_side: int = 160  # the ruler is measured on a copy about this many pixels on its long side


@dataclass(frozen=True)
class FoundCell:
    """One white cell: ``box`` (x0, y0, x1, y1) in the original image's pixels, x1 and y1 exclusive."""

    box: tuple[int, int, int, int]
    score: float  # for ranking only (0-1: stain strength x size), not a probability
    at_edge: bool  # the box touches or is cut by the image border


def find_cells(im: Image.Image, params: FinderParams | None = None) -> list[FoundCell]:
    """Every white cell in ``im``, top to bottom then left to right; [] where nothing is stained."""
    p = params or FinderParams()
    if im.mode != "RGB":
        im = im.convert("RGB")
    w, h = im.size
    if min(w, h) < 8:
        return []
    d = rbc_diameter(im, p.ruler_side)
    k = max(1, int(d / p.rbc_px))
    small = im.reduce(k) if k > 1 else im
    purple = purple_excess(small)
    mask, base, top = stain_mask(purple, p)
    if mask is None:
        return []
    d_w = d / k
    labels, n = label(dilate(mask, int(round(p.merge * d_w / 2))))
    comps = _components(mask, labels, n, purple)
    largest = max((c[4] for c in comps), default=0)
    cells = []
    for x0, y0, x1, y1, area, peak in comps:
        strength = min(1.0, max(0.0, (peak - base) / (top - base)))
        size = area / (d_w * d_w)
        if _is_nucleus(size, area / largest, strength, (x1 - x0) * (y1 - y0) / area, p):
            box, at_edge = _cell_box((x0, y0, x1, y1), d_w, p, (w / small.size[0], h / small.size[1]), (w, h))
            cells.append(FoundCell(box, round(strength * size / (size + p.min_area), 4), at_edge))
    return sorted(cells, key=lambda c: (c.box[1], c.box[0]))


def _is_nucleus(size: float, share: float, strength: float, fill: float, p: FinderParams) -> bool:
    """Whether a stained component is a white cell's nucleus: ``size`` in D^2, ``share`` of the field's largest
    component, ``strength`` of its stain (0-1 of the field's strongest), ``fill`` = its box / its area."""
    if size < p.min_area or share < p.min_rel or fill > p.max_fill:
        return False  # a platelet, a clump of them beside a nucleus, or a spiky clump
    return strength >= p.min_peak or size >= p.big_area  # a pale small blob is a platelet; a pale large one a cell


def purple_excess(im: Image.Image) -> np.ndarray:
    """``cell_centre``'s measure of nuclear stain, per pixel: blue over green, less any red over green."""
    a = np.asarray(im, dtype=np.float32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    purple = (b - g) - 0.35 * np.maximum(r - g, 0)
    purple[(r + g + b) <= 30] = np.nan  # black corners left by rotation: no evidence either way
    return purple


def stain_mask(purple: np.ndarray, p: FinderParams) -> tuple[np.ndarray | None, float, float]:
    """Pixels stained like a nucleus, by the field's own scale: (mask or None, median, strongest)."""
    valid = purple[np.isfinite(purple)]
    if valid.size < 4:
        return None, 0.0, 0.0
    base = float(np.median(valid))
    filled = np.where(np.isfinite(purple), purple, base)
    # The strongest stain over 2x2 pixels, so one dark speck of debris does not set it.
    top = float(((filled[:-1, :-1] + filled[1:, :-1] + filled[:-1, 1:] + filled[1:, 1:]) / 4).max(initial=base))
    if top - base < p.min_contrast:
        return None, base, top
    level = base + p.stain_frac * (top - base)
    if p.floor_q > 0:
        level = max(level, float(np.quantile(filled, p.floor_q)) + p.floor_margin * (top - base))
    return filled > level, base, top


def rbc_diameter(im: Image.Image, side: int = 160) -> float:
    """The field's red-cell diameter in ``im``'s pixels, from the lag at which its autocorrelation falls to half.

    Red cells tile a field, so the field's texture has their size. Measured on the green channel (haemoglobin's
    contrast), normalised for the overlap of the shifted copies, so a cell-free border does not shorten it.
    A field with no texture gives a quarter of its short side. It also reads packing: a dense monolayer of red
    cells reads smaller than a thin area (docs/research/rules/detect.txt); the finder's sizes have the margin.
    """
    w, h = im.size
    k = max(1, max(w, h) // side)
    small = im.reduce(k) if k > 1 else im
    if min(small.size) < 8:
        return min(w, h) / 4
    a = np.asarray(small.getchannel("G"), dtype=np.float32)
    a = a - a.mean()
    hh, ww = a.shape
    reach = max(2, min(hh, ww) // 2)
    # Zero-padded by the largest lag needed (no wrap-around), to sizes numpy's FFT is fast at.
    fh, fw = _fast_len(hh + reach), _fast_len(ww + reach)
    spec = np.fft.rfft2(a, s=(fh, fw))
    full = np.fft.irfft2(spec.real**2 + spec.imag**2, s=(fh, fw))
    rows = np.r_[0:reach, fh - reach + 1 : fh]
    cols = np.r_[0:reach, fw - reach + 1 : fw]
    ac = full[np.ix_(rows, cols)]
    dy = np.abs(np.r_[0:reach, -reach + 1 : 0])[:, None].astype(np.float64)
    dx = dy.T
    overlap = (hh - dy) * (ww - dx)
    if ac[0, 0] <= 0:
        return min(w, h) / 4
    corr = (ac / overlap) / (ac[0, 0] / (hh * ww))
    rr = np.rint(np.sqrt(dy**2 + dx**2)).astype(np.int64)
    keep = rr < reach
    profile = np.bincount(rr[keep], corr[keep], minlength=reach) / np.maximum(np.bincount(rr[keep], minlength=reach), 1)
    below = np.nonzero(profile < 0.5)[0]
    if below.size == 0:
        return min(w, h) / 4
    i = int(below[0])
    lag = i - 1 + (profile[i - 1] - 0.5) / max(profile[i - 1] - profile[i], 1e-6)
    d = lag * k * RULER_TO_RBC
    return float(min(max(d, min(w, h) / 80), min(w, h) / 2)) if math.isfinite(d) else min(w, h) / 4


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (an FFT length numpy handles fast)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction (a square), by shifted ORs along each axis."""
    if radius <= 0:
        return mask
    out = mask.copy()
    for i in range(1, radius + 1):
        out[:, i:] |= mask[:, :-i]
        out[:, :-i] |= mask[:, i:]
    rows = out.copy()
    for i in range(1, radius + 1):
        out[i:, :] |= rows[:-i, :]
        out[:-i, :] |= rows[i:, :]
    return out


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask``: (labels, count), 0 outside and 1..count inside.

    Runs of each row are the nodes; runs touching in adjacent rows are joined by a vectorised union-find, so the
    cost follows the number of runs (hundreds), not pixels, and stays in numpy.
    """
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    row, start = np.nonzero(step == 1)
    _, end = np.nonzero(step == -1)  # exclusive; nonzero's row-major order pairs each start with its end
    n = row.size
    labels = np.zeros((h, w), np.int32)
    if n == 0:
        return labels, 0
    stride = w + 2
    start_key, end_key = row * stride + start, row * stride + end
    below = (row + 1) * stride
    hi = np.searchsorted(start_key, below + end, side="right")
    lo = np.searchsorted(end_key, below + start, side="left")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), count)
    b = np.repeat(lo, count) + np.arange(a.size) - np.repeat(np.cumsum(count) - count, count)
    root = _union(n, a, b)
    _, comp = np.unique(root, return_inverse=True)
    lengths = end - start
    pix = np.repeat(row * w + start, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.ravel()[pix] = np.repeat(comp.ravel() + 1, lengths)
    return labels, int(comp.max()) + 1


def _union(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The root (smallest member) of each of ``n`` nodes joined by the edges ``a``-``b``."""
    parent = np.arange(n)
    while True:
        pa, pb = parent[a], parent[b]
        if np.array_equal(pa, pb):
            return parent
        low = np.minimum(pa, pb)
        np.minimum.at(parent, pa, low)
        np.minimum.at(parent, pb, low)
        while True:  # pointer jumping: every node straight to its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _components(mask: np.ndarray, labels: np.ndarray, n: int, purple: np.ndarray) -> list[tuple[int, int, int, int, int, float]]:
    """Per component: the box (x0, y0, x1, y1, exclusive) of its stained pixels, their count and the 90th
    percentile of their purple (its strongest stain, robust to a speck)."""
    ys, xs = np.nonzero(mask)
    lab = labels[ys, xs] - 1
    area = np.bincount(lab, minlength=n)
    values = np.nan_to_num(purple[ys, xs])
    order = np.lexsort((values, lab))  # by component, then by stain
    first = np.cumsum(area) - area
    peak = values[order][np.minimum(first + (0.9 * np.maximum(area - 1, 0)).astype(np.int64), values.size - 1)]
    big = np.iinfo(np.int64).max
    x0, y0 = np.full(n, big), np.full(n, big)
    x1, y1 = np.full(n, -1), np.full(n, -1)
    np.minimum.at(x0, lab, xs)
    np.minimum.at(y0, lab, ys)
    np.maximum.at(x1, lab, xs)
    np.maximum.at(y1, lab, ys)
    return [
        (int(x0[i]), int(y0[i]), int(x1[i]) + 1, int(y1[i]) + 1, int(area[i]), float(peak[i])) for i in range(n) if area[i] > 0
    ]


def _cell_box(
    nucleus: tuple[int, int, int, int], d_w: float, p: FinderParams, scale: tuple[float, float], size: tuple[int, int]
) -> tuple[tuple[int, int, int, int], bool]:
    """The cell's box in original pixels from its nucleus's box in working pixels, and whether it was clipped."""
    x0, y0, x1, y1 = nucleus
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) / 2 + p.grow * d_w, p.min_side * d_w / 2)
    half_h = max((y1 - y0) / 2 + p.grow * d_w, p.min_side * d_w / 2)
    (sx, sy), (w, h) = scale, size
    bx0, bx1 = round((cx - half_w) * sx), round((cx + half_w) * sx)
    by0, by1 = round((cy - half_h) * sy), round((cy + half_h) * sy)
    at_edge = bx0 <= 0 or by0 <= 0 or bx1 >= w or by1 >= h
    return (max(0, bx0), max(0, by0), min(w, bx1), min(h, by1)), at_edge
