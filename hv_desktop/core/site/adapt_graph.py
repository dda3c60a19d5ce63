"""The base model's graph as site adaptation reads and edits it: a probe session that also returns the pooled
features and the review layers' features, and the typicality subgraph mirrored in numpy.

Why numpy: the clinic PC has onnxruntime but no TensorFlow; the needs-review rule of training/review.py is a few
constants per layer, read back from the file's initializers, so its output can be recomputed at any temperature
and with the lab's class centres added (written back with :meth:`ReviewGraph.add_centres`).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile, ProtoError
from hv_desktop.core.site.site_model import AdaptError

REVIEW = "review/"


class Probe:
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
        self.review = ReviewGraph(self.file) if base.review_name == "typicality" else None
        probe = OnnxFile(self.file.to_bytes())
        names = [base.scores_name, self.embedding]
        if self.review is not None:
            for i in range(self.review.layers):
                for t in (f"{REVIEW}l{i}_f", f"{REVIEW}l{i}_dist"):
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
            for n, a in zip(self.names, part, strict=True):
                out.setdefault(n, []).append(np.asarray(a, np.float64))
        return {n: np.concatenate(v) for n, v in out.items()}


class ReviewGraph:
    """The typicality subgraph of training/review.py, read back from its initializers and mirrored in numpy."""

    def __init__(self, f: OnnxFile) -> None:
        names = set(f.initializer_names)
        self.layers = 0
        while f"{REVIEW}l{self.layers}_k" in names:
            self.layers += 1
        need = [f"{REVIEW}a", f"{REVIEW}c", f"{REVIEW}temperature"]
        if not self.layers or any(n not in names for n in need):
            raise AdaptError("the model's typicality output is not one this version can adapt")
        self.file = f
        self.a, self.c = float(f.initializer(f"{REVIEW}a")), float(f.initializer(f"{REVIEW}c"))
        self.k = [float(f.initializer(f"{REVIEW}l{i}_k")) for i in range(self.layers)]
        self.kc = [float(f.initializer(f"{REVIEW}l{i}_c")) for i in range(self.layers)]
        # Per layer, the metrics it measures in: one (tag l{i}), or one per training lab (l{i}s{j}, training.review
        # --per-lab: each lab's standardised log distance, the smallest carried as exp(z)).
        self.parts: list[list[str]] = []
        self.zmax: list[float | None] = []  # per-lab layers only: the bound on |z|
        for i in range(self.layers):
            labs: list[str] = []
            while f"{REVIEW}l{i}s{len(labs)}_a" in names:
                labs.append(f"l{i}s{len(labs)}")
            self.parts.append(labs or [f"l{i}"])
            self.zmax.append(float(self._get(f"l{i}_zmax")) if labs else None)
        # each lab's standardisation z = a * log d + b (per-lab layers)
        self.ab = {
            t: (float(self._get(f"{t}_a")), float(self._get(f"{t}_b")))
            for p, z in zip(self.parts, self.zmax, strict=True)
            if z is not None
            for t in p
        }
        self.basis = {t: f"{REVIEW}{t}_basis16" in names for p in self.parts for t in p}
        # the graph's smallest distance per layer: its eps, or exp(-zmax) where the distance is exp(clipped z)
        self.floor = [1e-6 if z is None else float(np.exp(-z)) for z in self.zmax]

    def _get(self, name: str) -> np.ndarray:
        return self.file.initializer(f"{REVIEW}{name}").astype(np.float64)

    def _distance(self, tag: str, feats: np.ndarray, centres: np.ndarray) -> np.ndarray:
        if not self.basis[tag]:
            proj = self._get(f"{tag}_proj16")
            return _sqdist(feats @ proj, centres @ proj).min(1)
        basis, scale = self._get(f"{tag}_basis16"), self._get(f"{tag}_scale")
        inv_rest = float(self._get(f"{tag}_inv_rest"))
        yb, cb = feats @ basis, centres @ basis
        d = _sqdist(yb * scale, cb * scale) + np.maximum(_sqdist(feats, centres) - _sqdist(yb, cb), 0) * inv_rest
        return d.min(1)

    def lab_distance(self, i: int, feats: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Layer i's distance of ``feats`` to the nearest of ``centres``, in the units of its ``l{i}_dist`` output:
        the squared Mahalanobis distance, or for a per-lab layer exp(the smallest standardised log distance)."""
        if not len(centres):
            return np.full(len(feats), np.inf)
        zmax = self.zmax[i]
        if zmax is None:
            return self._distance(self.parts[i][0], feats, centres)
        zs = [np.log(np.maximum(self._distance(t, feats, centres), 1e-6)) * self.ab[t][0] + self.ab[t][1] for t in self.parts[i]]
        return np.exp(np.clip(np.min(zs, 0), -zmax, zmax))

    def typicality(self, logits: np.ndarray, t: float, dists: list[np.ndarray]) -> np.ndarray:
        conf = softmax(logits / t).max(1)
        s = self.a * conf + self.c
        for i, d in enumerate(dists):
            s = s + np.log(np.maximum(d, self.floor[i])) * self.k[i] + self.kc[i]
        return 1.0 / (1.0 + np.exp(s))

    def add_centres(self, out: OnnxFile, i: int, centres: np.ndarray) -> None:
        """Append ``centres`` (m, D) to layer i's centre constants in ``out`` (the graph's ReduceMin takes any K)."""

        def extend(tag: str, c: np.ndarray) -> None:
            ct, cc = self._get(f"{tag}_ct"), self._get(f"{tag}_cc")
            out.set_initializer(f"{REVIEW}{tag}_ct", np.hstack([ct, c.T]).astype(np.float32))
            out.set_initializer(f"{REVIEW}{tag}_cc", np.hstack([cc, (c * c).sum(1)[None]]).astype(np.float32))

        for tag in self.parts[i]:  # per lab: the lab's centres join every training lab's (the minimum is the same)
            if not self.basis[tag]:
                extend(tag, centres @ self._get(f"{tag}_proj16"))
                continue
            basis, scale = self._get(f"{tag}_basis16"), self._get(f"{tag}_scale")
            cb = centres @ basis
            extend(tag, cb * scale)
            extend(f"{tag}_raw", centres)
            extend(f"{tag}_kept", cb)


def _sqdist(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (y * y).sum(1)[:, None] - 2 * y @ c.T + (c * c).sum(1)[None]


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
