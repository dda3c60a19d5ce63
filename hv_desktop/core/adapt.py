"""Adapt a model to one lab from that lab's own reviewed cells, and write the result as a new model file.

Why: at a lab it was not trained on (another microscope, camera, stain, magnification) the shipped model
misreads many cells and flags nearly all of them; in its own labs it is excellent. A technologist reviews the
flagged cells anyway, and those reviews are labels. From a few of them per class this module fits, in seconds
and with numpy alone:

- the lab's magnification: the "cell" crop's size, measured with calibrate's nucleus ruler on the reviewed
  cells' images (cross-validating :data:`SCALES` on 40 cells swung between draws and cost more than the head
  gained: docs/research/rules/adapt_ruler.txt), so the network sees the lab's cells at the size it was trained
  on; chosen among :data:`SCALES` by cross-validation only when fewer than 20 cells have a nucleus to measure;
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
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from hv_desktop.core.files import read_regular, regular_path
from hv_desktop.core.metadata import FLAG_ALL, MAX_CROP_FRACTION, METADATA_KEY, ModelMetadata
from hv_desktop.core.model import Model
from hv_desktop.core.onnx_proto import OnnxFile, ProtoError
from hv_desktop.core.paths import display_name, text_to_path
from hv_desktop.core.preprocess import (
    ImageError,
    Preprocessing,
    box_around,
    cell_centre,
    normalise,
    nucleus_radius,
    open_image,
    resize_for_model,
)
from hv_desktop.core.unflag import UnflagCheck, unflag_check, wilson_interval

#: Magnifications of the lab relative to the model's training labs that are tried (the crop's side is the
#: base ``crop_fraction`` times this, within [0.2, 2] of the short side).
SCALES = (0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0)
#: A class needs this many labelled cells to be refitted (fewer: it keeps the base head's weights).
MIN_PER_CLASS = 5
#: L2 pull toward the base head, relative to the mean squared feature norm (docs/research/rules/adapt.txt).
RIDGE = 1.0
FOLDS = 5
#: Cells per class the magnification is chosen on (all cells are then used at the chosen one).
SELECT_PER_CLASS = 20
#: Share of the lab's genuine cells (cross-validated) the adapted needs-review rule may flag (review_temperature).
REVIEW_FLAG_RATE = 0.25
#: Most labelled cells used (taken by class in turn, before any image is read): the published recipe needs
#: <= 100 per class, and this keeps time and memory bounded on any PC.
MAX_CELLS = 400
#: Images are kept at most this large (short side) between the magnifications tried: ~0.8 MB each.
KEEP_SHORT_SIDE = 640
#: The longest site name (it is part of the site model's name, which the metadata limits to 200 characters).
MAX_SITE_NAME = 80
MAX_FILE_BYTES = 64 * 1024 * 1024


class AdaptError(Exception):
    """Input that cannot produce a site model, with a one-line message fit for a terminal or a dialog."""


@dataclass
class LabelledCell:
    path: Path
    label: str


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
class SiteModel:
    """A new model file made from a base model for one lab (never written over the base)."""

    model_bytes: bytes
    metadata: ModelMetadata

    def save(self, path: str | os.PathLike, base: Model) -> Path:
        from hv_desktop.core.export import atomic_write_bytes

        target = Path(path)
        if target.exists() and target.resolve() == base.path.resolve():
            raise AdaptError("the site model must not replace the model it was made from; choose another file")
        atomic_write_bytes(target, self.model_bytes)
        return target


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

    def summary_lines(self) -> list[str]:
        lines = ["cells used per class: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        if self.duplicates:
            lines.append(
                "left out, the same picture as a cell already used: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.duplicates.items()))
            )
        if self.kept_base:
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

        n = sum(self.counts.values())

        def est(e: Estimate) -> str:
            lo, hi = wilson_interval(round(e.accuracy * n), n)
            s = f"about {e.accuracy:.0%} correct (between {lo:.0%} and {hi:.0%} with {n} cells), {e.flagged:.0%} flagged"
            unusual = e.other_flagged
            return s + (f"; unusual cells (not one of the classes) still flagged: {unusual:.0%}" if unusual is not None else "")

        lines.append(f"before (base model): {est(self.before)}")
        lines.append(f"after (cross-validated): {est(self.after)}")
        if self.unflag is not None:
            lines.append(self.unflag.message)
        return lines


# ---------------------------------------------------------------------------------------------- inputs


def read_labelled_csv(paths: Sequence[str | os.PathLike]) -> list[LabelledCell]:
    """Cells from the app's results CSV (or any CSV with ``path`` and ``reviewer_label`` columns).

    Relative paths resolve against the CSV's folder; rows without a reviewer label are skipped. Every row is
    read, streamed (a CSV over 64 MB was once cut there, silently: "no reviewed cells"); memory stays bounded
    because only the cells :func:`adapt` could choose are kept (:class:`_Choosable`).
    """
    kept = _Choosable()
    for p in paths:
        src = Path(p)
        try:
            with open(regular_path(src), "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
                _read_rows(src, csv.reader(fh), kept)
        except FileNotFoundError:
            raise AdaptError(f"CSV not found: {src}") from None
        except UnicodeDecodeError:
            raise AdaptError(f"{src.name} is not a CSV file (not UTF-8 text)") from None
        except csv.Error as exc:
            raise AdaptError(f"{src.name} is not a readable CSV file ({exc})") from None
        except OSError as exc:
            raise AdaptError(f"CSV cannot be read: {src} ({exc.strerror or exc})") from None
    return kept.cells()


def _read_rows(src: Path, rows: Iterator[list[str]], kept: _Choosable) -> None:
    header = [h.strip().lower() for h in next(rows, [])]
    if not header:
        raise AdaptError(f"{src.name} is empty")
    if "path" not in header or "reviewer_label" not in header:
        raise AdaptError(f"{src.name} needs 'path' and 'reviewer_label' columns (found: {', '.join(header[:8]) or 'none'})")
    ip, il = header.index("path"), header.index("reviewer_label")
    for row in rows:
        if len(row) <= max(ip, il):
            continue
        label, path = _uncell(row[il]).strip(), _uncell(row[ip]).strip()
        if label and path:
            q = text_to_path(path)
            kept.add(LabelledCell(q if q.is_absolute() else src.parent / q, label))


class _Choosable:
    """The cells :func:`_within_limit` can choose among those added, in the order added: the first
    :data:`MAX_CELLS` of each label, of the :data:`MAX_CELLS` labels first in sorted order (it takes the labels in
    sorted order, one cell each in turn, the first of each first). Its choice from these is its choice from all."""

    def __init__(self) -> None:
        self.by_label: dict[str, list[tuple[int, LabelledCell]]] = {}
        self.names: list[str] = []  # the kept labels, sorted
        self.added = 0

    def add(self, cell: LabelledCell) -> None:
        key, n = cell.label.strip().lower(), self.added
        self.added += 1
        kept = self.by_label.get(key)
        if kept is None:
            if len(self.names) >= MAX_CELLS:
                if key > self.names[-1]:
                    return
                del self.by_label[self.names.pop()]
            bisect.insort(self.names, key)
            kept = self.by_label[key] = []
        if len(kept) < MAX_CELLS:
            kept.append((n, cell))

    def cells(self) -> list[LabelledCell]:
        return [cell for _, cell in sorted((pair for kept in self.by_label.values() for pair in kept), key=lambda p: p[0])]


def _uncell(text: str) -> str:
    """Undo the export's spreadsheet guard (a leading ' before = + - @)."""
    return text[1:] if text.startswith("'") and text[1:2] in ("=", "+", "-", "@") else text


# ---------------------------------------------------------------------------------------------- the probe

_REVIEW = "review/"


class _Probe:
    """The base graph with its pooled features and review-layer features as extra outputs."""

    def __init__(self, base: Model) -> None:
        import onnxruntime as ort

        embedding = base.info.embedding_output
        head = base.info.head or {}
        if not embedding or not head.get("weight") or not head.get("bias"):
            raise AdaptError(
                f"{base.path.name} cannot be adapted: it names no embedding output and head "
                "(a model exported before HematoVision 1.3)"
            )
        self.embedding: str = embedding
        try:
            data = base.path.read_bytes()
            self.sha256 = hashlib.sha256(data).hexdigest()
            self.file = OnnxFile(data)
            self.w0 = self.file.initializer(head["weight"]).astype(np.float64)
            self.b0 = self.file.initializer(head["bias"]).astype(np.float64).reshape(-1)
        except (OSError, KeyError, ProtoError) as exc:
            raise AdaptError(f"{base.path.name} cannot be adapted ({exc})") from None
        self.head = head
        n_cls = len(base.labels)
        if self.w0.ndim != 2 or self.w0.shape[1] != n_cls or self.b0.shape != (n_cls,):
            raise AdaptError(f"{base.path.name} cannot be adapted: its head does not fit its labels")
        self.review = _ReviewGraph(self.file) if base.review_name == "typicality" else None
        probe = OnnxFile(self.file.to_bytes())
        names = [base.scores_name, self.embedding]
        if self.review is not None:
            for i in range(self.review.layers):
                for t in (f"{_REVIEW}l{i}_f", f"{_REVIEW}l{i}_dist"):
                    probe.add_output(t)
                    names.append(t)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(probe.to_bytes(), sess_options=opts, providers=["CPUExecutionProvider"])
        self.names, self.input_name = names, base.input_name

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(x), 32):
            part = self.session.run(self.names, {self.input_name: x[i : i + 32]})
            for n, a in zip(self.names, part):
                out.setdefault(n, []).append(np.asarray(a, np.float64))
        return {n: np.concatenate(v) for n, v in out.items()}


class _ReviewGraph:
    """The typicality subgraph of training/review.py, read back from its initializers and mirrored in numpy."""

    def __init__(self, f: OnnxFile) -> None:
        names = set(f.initializer_names)
        self.layers = 0
        while f"{_REVIEW}l{self.layers}_k" in names:
            self.layers += 1
        need = [f"{_REVIEW}a", f"{_REVIEW}c", f"{_REVIEW}temperature"]
        if not self.layers or any(n not in names for n in need):
            raise AdaptError("the model's typicality output is not one this version can adapt")
        self.file = f
        self.a, self.c = float(f.initializer(f"{_REVIEW}a")), float(f.initializer(f"{_REVIEW}c"))
        self.k = [float(f.initializer(f"{_REVIEW}l{i}_k")) for i in range(self.layers)]
        self.kc = [float(f.initializer(f"{_REVIEW}l{i}_c")) for i in range(self.layers)]
        self.basis = [f"{_REVIEW}l{i}_basis16" in names for i in range(self.layers)]

    def _get(self, name: str) -> np.ndarray:
        return self.file.initializer(f"{_REVIEW}{name}").astype(np.float64)

    def lab_distance(self, i: int, feats: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of ``feats`` to the nearest of ``centres`` in layer i's metric."""
        if not len(centres):
            return np.full(len(feats), np.inf)
        if not self.basis[i]:
            proj = self._get(f"l{i}_proj16")
            return _sqdist(feats @ proj, centres @ proj).min(1)
        basis, scale = self._get(f"l{i}_basis16"), self._get(f"l{i}_scale")
        inv_rest = float(self._get(f"l{i}_inv_rest"))
        yb, cb = feats @ basis, centres @ basis
        d = _sqdist(yb * scale, cb * scale) + np.maximum(_sqdist(feats, centres) - _sqdist(yb, cb), 0) * inv_rest
        return d.min(1)

    def typicality(self, logits: np.ndarray, t: float, dists: list[np.ndarray]) -> np.ndarray:
        conf = _softmax(logits / t).max(1)
        s = self.a * conf + self.c
        for i, d in enumerate(dists):
            s = s + np.log(np.maximum(d, 1e-6)) * self.k[i] + self.kc[i]
        return 1.0 / (1.0 + np.exp(s))

    def add_centres(self, out: OnnxFile, i: int, centres: np.ndarray) -> None:
        """Append ``centres`` (m, D) to layer i's centre constants in ``out`` (the graph's ReduceMin takes any K)."""

        def extend(tag: str, c: np.ndarray) -> None:
            ct, cc = self._get(f"{tag}_ct"), self._get(f"{tag}_cc")
            out.set_initializer(f"{_REVIEW}{tag}_ct", np.hstack([ct, c.T]).astype(np.float32))
            out.set_initializer(f"{_REVIEW}{tag}_cc", np.hstack([cc, (c * c).sum(1)[None]]).astype(np.float32))

        if not self.basis[i]:
            extend(f"l{i}", centres @ self._get(f"l{i}_proj16"))
            return
        basis, scale = self._get(f"l{i}_basis16"), self._get(f"l{i}_scale")
        cb = centres @ basis
        extend(f"l{i}", cb * scale)
        extend(f"l{i}_raw", centres)
        extend(f"l{i}_kept", cb)


def _sqdist(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (y * y).sum(1)[:, None] - 2 * y @ c.T + (c * c).sum(1)[None]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


# ---------------------------------------------------------------------------------------------- the fit


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
        g = (_softmax(base + k @ ya + yb) - onehot) * v[:, None]
        a_prev, beta_prev = a, beta
        a = ya - eta * (g + lam * ya) * free
        beta = yb - eta * (g.sum(0) + lam * yb) * free
    return w0 + x.T @ a, b0 + beta


def _folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """A stratified fold number per cell (deterministic)."""
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        # a fixed multiplicative-hash shuffle (the standalone bundle leaves numpy.random out)
        idx = idx[np.argsort((idx.astype(np.uint64) * np.uint64(2654435761) + np.uint64(seed)) % np.uint64(2**32))]
        fold[idx] = np.arange(len(idx)) % k
    return fold


def _cv_logits(x: np.ndarray, y: np.ndarray, w0, b0, frozen, folds: np.ndarray) -> np.ndarray:
    out = np.zeros((len(y), w0.shape[1]))
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        w, b = fit_head(x[tr], y[tr], w0, b0, RIDGE, frozen)
        out[te] = x[te] @ w + b
    return out


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = _softmax(logits / t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Log-loss temperature on cross-validated logits, kept in [0.5, 5] (a few dozen cells that CV classifies
    perfectly would otherwise drive it to zero: certainty the data cannot support)."""
    grid = np.exp(np.linspace(np.log(0.5), np.log(5.0), 41))
    return float(grid[int(np.argmin([_nll(logits, y, t) for t in grid]))])


# ---------------------------------------------------------------------------------------------- adapt

ProgressFn = Callable[[str, float], None]


def read_image(path: Path, seen: set[str]) -> tuple[Image.Image, str] | None:
    """(the image, its sha256), or None when a picture with that digest was read already; ImageError or OSError
    when it cannot be. Large captures are reduced (memory stays bounded whatever the camera's resolution)."""
    if not path.exists():
        raise ImageError("not found")
    data = read_regular(path, MAX_FILE_BYTES)
    if len(data) > MAX_FILE_BYTES:
        raise ImageError("file too large")
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen:
        return None
    im = open_image(io.BytesIO(data))
    if min(im.size) > KEEP_SHORT_SIDE:
        im.thumbnail(
            (im.size[0] * KEEP_SHORT_SIDE // min(im.size) + 1, im.size[1] * KEEP_SHORT_SIDE // min(im.size) + 1),
            reducing_gap=2.0,
        )
    return im, digest


def check_site_name(name: str) -> str:
    """The lab's name as stored in a site model: 1-80 printable characters (it becomes part of the model's name,
    shown and stamped on every export)."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_SITE_NAME or not name.isprintable():
        raise AdaptError(f"the site name must be 1 to {MAX_SITE_NAME} printable characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise AdaptError("the site name holds characters that cannot be stored (not valid text)") from None
    return name


def site_identity(info: ModelMetadata, what: str) -> dict[str, str]:
    """A site model's name and version: from the base's, said once however many times a site model is remade."""
    earlier = info.site_adaptation or {}
    base = earlier.get("base_model") if isinstance(earlier, dict) else None
    root = base["name"] if isinstance(base, dict) and isinstance(base.get("name"), str) else info.name
    version = info.version if info.version.endswith("+site") else f"{info.version}+site"
    return {"name": f"{root} {what}"[:200], "version": version[:64]}


def load_images(cells: Sequence[LabelledCell], labels: Sequence[str], cancel: Callable[[], bool] | None):
    """(images, label index or -1, sha256, outside counts, skipped, duplicates per label); each image read once."""
    index = {lab.lower(): i for i, lab in enumerate(labels)}
    ims, ys, shas, skipped = [], [], [], []
    duplicates: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    seen: set[str] = set()
    for cell in cells:
        if cancel and cancel():
            raise AdaptError("cancelled")
        try:
            read = read_image(cell.path, seen)
        except (ImageError, OSError) as exc:
            skipped.append((cell.path, str(exc) if isinstance(exc, ImageError) else (exc.strerror or str(exc))))
            continue
        if read is None:  # the same picture twice must not count twice (nor leak into its own CV fold): said
            duplicates[cell.label.strip()] += 1
            continue
        im, digest = read
        seen.add(digest)
        y = index.get(cell.label.strip().lower(), -1)
        if y < 0:
            outside[cell.label.strip()] += 1
        ims.append(im)
        ys.append(y)
        shas.append(digest)
    return ims, np.asarray(ys, int), shas, dict(outside), skipped, dict(duplicates)


def _limit(y: np.ndarray, most: int) -> np.ndarray:
    """Indices of at most ``most`` cells, taking the classes in turn (deterministic)."""
    if len(y) <= most:
        return np.arange(len(y))
    queues = [np.flatnonzero(y == c).tolist() for c in np.unique(y)]
    keep: list[int] = []
    while len(keep) < most:
        for q in queues:
            if q and len(keep) < most:
                keep.append(q.pop(0))
    return np.asarray(sorted(keep))


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
    "ruler" (the default) measures it with calibrate's nucleus ruler on the cells' images when enough have a
    nucleus, else as "cv"; "cv" chooses it among :data:`SCALES` by cross-validation (docs/research/rules/adapt_ruler.txt)."""
    site_name = check_site_name(site_name)
    say = progress or (lambda _msg, _frac: None)
    labels = base.labels
    probe = _Probe(base)
    cells = _within_limit(cells)
    say("reading images", 0.0)
    laps = _Laps()
    ims, y_all, shas, outside, skipped, duplicates = load_images(cells, labels, cancel)
    counts, enough = _fitted_classes(y_all, labels, len(cells), skipped)
    frozen = [i for i in range(len(labels)) if i not in enough]
    target = y_all >= 0
    laps.lap("read")
    measure = _Measure(base, probe, ims, laps)
    folds = _folds(y_all[target], _fold_count(y_all[target]))
    ruler = _ruler_magnification(measure) if magnification == "ruler" else None
    best, scores = (ruler, {}) if ruler is not None else _choose_magnification(measure, y_all, frozen, say, cancel)
    say("fitting", 0.9)
    every = np.arange(len(ims))
    f_best = measure.features(best, every)
    f_base = f_best if best == 1.0 else measure.features(1.0, every)
    emb = f_best[probe.embedding]
    w, b = fit_head(emb[target], y_all[target], probe.w0, probe.b0, RIDGE, frozen)
    out = OnnxFile(probe.file.to_bytes())
    out.set_initializer(probe.head["weight"], w.astype(np.float32))
    out.set_initializer(probe.head["bias"], b.astype(np.float32))
    # before: the base model as it is; after: every cell scored by a fit that did not see it
    if probe.review is not None:
        cv_logits, t, base_typ, after_typ = _refit_typicality(
            base, probe.review, out, f_best, f_base, probe, y_all, frozen, enough, folds, add_review_centres
        )
    else:
        cv_logits, t, base_typ, after_typ = _refit_confidence(base, f_base, emb, probe, y_all, frozen, folds)
    thr = base.info.review_threshold
    before, after = _before_after(y_all, f_base[base.scores_name], base_typ, cv_logits, after_typ, thr)
    check = unflag_check(y_all[target], cv_logits.argmax(1), after_typ[target], thr, labels)
    if not check.verified:  # nothing unflagged that the lab's own reviews have not shown to be right
        after = replace(after, flagged=1.0, other_flagged=None if after.other_flagged is None else 1.0)
    meta = _site_metadata(base, probe.sha256, site_name, best, t, counts, shas, before, after, frozen, check)
    out.set_metadata(METADATA_KEY, meta.to_json())
    data = out.to_bytes()
    laps.lap("fit")
    say("done", 1.0)
    return Adaptation(
        data,
        meta,
        counts,
        best,
        before,
        after,
        [labels[i] for i in frozen],
        skipped,
        outside,
        scores,
        laps.seconds,
        check,
        duplicates,
    )


class _Laps:
    """Wall seconds per stage (reading, features, fitting), added up over the stage's laps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.clock
        self.clock = now


def _within_limit(cells: Sequence[LabelledCell]) -> Sequence[LabelledCell]:
    """The cells, or a class-balanced subset of :data:`MAX_CELLS` of them, chosen before anything is read."""
    if not cells:
        raise AdaptError("no reviewed cells: give cells with a reviewer label (review some cells first)")
    if len(cells) <= MAX_CELLS:
        return cells
    names = sorted({c.label.strip().lower() for c in cells})
    order = np.asarray([names.index(c.label.strip().lower()) for c in cells])
    return [cells[i] for i in _limit(order, MAX_CELLS)]


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


def _fold_count(y: np.ndarray) -> int:
    """Cross-validation folds for labels ``y``: :data:`FOLDS`, fewer when the smallest class has fewer cells."""
    per_class = np.bincount(y)
    return min(FOLDS, max(2, int(per_class[per_class > 0].min())))


class _Measure:
    """The probe's outputs for chosen cells at a magnification; each cell's centre (and, for a nucleus crop,
    its radius) found once. A "nucleus" crop already shows every lab's cell at one scale: it keeps its
    square, measured per cell."""

    def __init__(self, base: Model, probe: _Probe, ims: list, laps: _Laps) -> None:
        self.prep = prep = base.info.preprocessing
        self.scales = SCALES if prep.crop == "cell" else (1.0,)
        self.n_labels = len(base.labels)
        self.size, self.probe, self.ims, self.laps = base.input_size, probe, ims, laps
        self.centres = [cell_centre(im) if prep.crop in ("cell", "nucleus") else None for im in ims]
        self.radii = [nucleus_radius(im, c) if prep.crop == "nucleus" and c else None for im, c in zip(ims, self.centres)]

    def features(self, s: float, idx: np.ndarray) -> dict[str, np.ndarray]:
        p = _at_scale(self.prep, s)
        ims, centres, radii = self.ims, self.centres, self.radii
        x = normalise(
            np.stack([resize_for_model(ims[i], self.size, p, box_around(ims[i].size, centres[i], p, radii[i])) for i in idx]),
            p,
        )
        out = self.probe.run(x)
        self.laps.lap("features")
        return out


def _ruler_magnification(measure: _Measure) -> float | None:
    """The lab's magnification from the cells' median nucleus radius (calibrate's ruler); None when the model
    has no "cell" square or fewer than calibrate's minimum of images have a nucleus to measure."""
    from hv_desktop.core.calibrate import MIN_IMAGES, lab_square

    if measure.prep.crop != "cell":
        return None
    radii = [nucleus_radius(im, c) / min(im.size) for im, c in zip(measure.ims, measure.centres) if c is not None]
    finite = [r for r in radii if math.isfinite(r)]
    if len(finite) < MIN_IMAGES:
        return None
    crop, _ = lab_square(measure.prep.crop_fraction, float(np.median(finite)))
    return crop / measure.prep.crop_fraction


def _choose_magnification(
    measure: _Measure, y_all: np.ndarray, frozen: list[int], say: ProgressFn, cancel: Callable[[], bool] | None
) -> tuple[float, dict[float, float]]:
    """(the magnification whose refitted head cross-validates best, the score of each one tried).

    The choice is made on at most SELECT_PER_CLASS cells per class (it settles well before that; this keeps
    200 cells within seconds), then every cell is measured at the chosen one."""
    probe, scales, n_labels = measure.probe, measure.scales, measure.n_labels
    target = y_all >= 0
    sel = _limit(np.where(target, y_all, n_labels), SELECT_PER_CLASS * (n_labels + 1))
    sel = sel[target[sel]]
    y_sel = y_all[sel]
    sel_folds = _folds(y_sel, _fold_count(y_sel))
    scores: dict[float, float] = {}
    for si, s in enumerate(scales):
        if cancel and cancel():
            raise AdaptError("cancelled")
        say(f"measuring at magnification x{s:g}", 0.05 + 0.8 * si / len(scales))
        emb_s = measure.features(s, sel)[probe.embedding]
        cv = _cv_logits(emb_s, y_sel, probe.w0, probe.b0, frozen, sel_folds)
        # balanced accuracy, ties broken by log-loss (a lower one adds < 0.01)
        scores[s] = _balanced_accuracy(y_sel, cv.argmax(1)) - 0.01 * math.tanh(_nll(cv, y_sel, 1.0))
        measure.laps.lap("fit")
    best = max(scales, key=lambda s: (round(scores[s], 6), -abs(math.log(s))))
    return best, scores


def _refit_typicality(
    base: Model,
    rv: _ReviewGraph,
    out: OnnxFile,
    f_best: dict[str, np.ndarray],
    f_base: dict[str, np.ndarray],
    probe: _Probe,
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
    thr = base.info.review_threshold
    base_layers = [f_base[f"{_REVIEW}l{i}_dist"] for i in range(rv.layers)]
    base_typ = rv.typicality(f_base[base.scores_name], base.info.temperature, base_layers)
    emb = f_best[probe.embedding]
    logits_cv, dists_cv = _cv_review_inputs(rv, f_best, emb, y_all, probe, frozen, folds, add_centres)
    t = review_temperature(rv, logits_cv[target], [d[target] for d in dists_cv], thr)
    after_typ = rv.typicality(logits_cv, t, dists_cv)
    out.set_initializer(f"{_REVIEW}temperature", np.asarray(t, np.float32))
    if add_centres:
        for i in range(rv.layers):
            f = f_best[f"{_REVIEW}l{i}_f"]
            rv.add_centres(out, i, np.stack([f[y_all == c].mean(0) for c in enough]))
    # the same fold fits give the cross-validated predictions
    return logits_cv[target], t, base_typ, after_typ


def _refit_confidence(
    base: Model,
    f_base: dict[str, np.ndarray],
    emb: np.ndarray,
    probe: _Probe,
    y_all: np.ndarray,
    frozen: list[int],
    folds: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A model whose review rule is its confidence: the log-loss temperature on cross-validated logits.
    Returns (cross-validated logits of the target cells, temperature, confidence before, confidence after)."""
    target = y_all >= 0
    y = y_all[target]
    cv_logits = _cv_logits(emb[target], y, probe.w0, probe.b0, frozen, folds)
    t = fit_temperature(cv_logits, y)
    base_typ = _softmax(f_base[base.scores_name] / base.info.temperature).max(1)
    full = np.zeros((len(y_all), len(base.labels)))
    full[target] = cv_logits
    after_typ = _softmax(full / t).max(1)
    return cv_logits, t, base_typ, after_typ


def _before_after(
    y_all: np.ndarray, base_logits: np.ndarray, base_typ: np.ndarray, cv_logits: np.ndarray, after_typ: np.ndarray, thr: float
) -> tuple[Estimate, Estimate]:
    """The base model as it is, and the adapted one with every target cell scored by a fit that did not see it."""
    before = _estimate(y_all, base_logits.argmax(1), base_typ, thr)
    after_pred = np.full(len(y_all), -1)
    after_pred[y_all >= 0] = cv_logits.argmax(1)
    return before, _estimate(y_all, after_pred, after_typ, thr)


def _cv_review_inputs(
    rv: _ReviewGraph, f: dict, emb: np.ndarray, y_all: np.ndarray, probe: _Probe, frozen, folds: np.ndarray, add_centres: bool
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
            d = f[f"{_REVIEW}l{i}_dist"][test]
            if add_centres:
                lf = f[f"{_REVIEW}l{i}_f"]
                cs = [lf[train][y_all[train] == c].mean(0) for c in np.unique(y_all[train]) if c not in frozen]
                if cs:
                    d = np.minimum(d, rv.lab_distance(i, lf[test], np.stack(cs)))
            dists[i][test] = d
    return logits, dists


def review_temperature(
    rv: _ReviewGraph, logits: np.ndarray, dists: list[np.ndarray], threshold: float, flag_rate: float | None = None
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
        review_threshold=info.review_threshold if check.verified else FLAG_ALL,
        **site_identity(info, f"adapted to {site}"),
        site_adaptation={
            "site": site,
            "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            "base_model": {"name": info.name, "version": info.version, "sha256": base_sha256},
            "magnification": scale,
            "cells_per_class": counts,
            "classes_kept_from_base": [base.labels[i] for i in frozen],
            "ridge": RIDGE,
            "estimate_before": before.as_dict(),
            "estimate_after_cross_validated": after.as_dict(),
            "unflag_check": check.as_dict(),
            "cells_sha256": sorted(set(shas)),
        },
    )
