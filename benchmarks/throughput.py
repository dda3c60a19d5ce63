"""Throughput of the model alone, of the whole `classify` path (files to CSV), and of the
tutorial's Keras predict-per-image path, measured in one run on the same images.

    python benchmarks/throughput.py [--images DIR] [--n 1000] [--model M.onnx] [--keras-run runs/main]

Prints a table; ratios are only meaningful within one run (this machine is noisy).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.imaging.preprocess import load_for_model, normalise  # noqa: E402
from hv_desktop.core.imaging.scan import scan  # noqa: E402
from hv_desktop.core.inference.batch import classify_stream  # noqa: E402
from hv_desktop.core.inference.model import Model  # noqa: E402
from hv_desktop.core.io.export import StreamingCsv  # noqa: E402


def model_only(model: Model, x: np.ndarray, batch: int, seconds: float = 4.0) -> float:
    model.probabilities(x[:batch])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(x) - batch + 1, batch):
            model.probabilities(x[i : i + batch])
            n += batch
    return n / (time.perf_counter() - t0)


def end_to_end(model: Model, paths: list[Path], batch: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with StreamingCsv(Path(d) / "o.csv", model.labels, "m", "1") as out:
            for r in classify_stream(paths, model, batch_size=batch):
                out.write(r)
        return len(paths) / (time.perf_counter() - t0)


def keras_per_image(run: Path, x_uint8: np.ndarray, n: int = 60) -> float | None:
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        from training.export_onnx import load_core
    except ImportError:
        return None
    core, _ = load_core(run)
    inp = keras.Input(x_uint8.shape[1:])
    logits, _ = core(keras.layers.Rescaling(1 / 127.5, offset=-1)(inp))
    m = keras.Model(inp, keras.layers.Softmax()(logits))
    m.predict(x_uint8[:1].astype(np.float32), verbose=0)
    t0 = time.perf_counter()
    for i in range(n):
        m.predict(x_uint8[i : i + 1].astype(np.float32), verbose=0)  # the tutorial's one-image predict
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "blood-cells" / "TEST")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", type=Path, nargs="+", default=[ROOT / "assets" / "model" / "hematovision.onnx"])
    ap.add_argument("--keras-run", type=Path, default=None, help="training run folder, for the Keras baseline")
    ap.add_argument("--threads", type=int, nargs="+", default=[None])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()

    paths = [i.path for i in scan([args.images]) if not i.error][: args.n]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {len(paths)} images from {args.images}"
    )
    rows = []
    for model_path in args.model:
        for threads in args.threads:
            model = Model(model_path, threads=threads)
            x = normalise(
                np.stack([load_for_model(p, model.input_size, model.info.preprocessing) for p in paths[:256]]),
                model.info.preprocessing,
            )
            for b in args.batch:
                mo = model_only(model, x, b)
                e2e = end_to_end(model, paths, b)
                rows.append((model_path.name, threads or "auto", b, mo, e2e))
                print(
                    f"{model_path.name:<28} threads={threads or 'auto':<4} batch={b:<3} model-only {mo:7.0f} img/s "
                    f"({1000 / mo:5.2f} ms)  end-to-end {e2e:7.0f} img/s ({1000 / e2e:5.2f} ms)  "
                    f"ratio {e2e / mo:4.2f}",
                    flush=True,
                )
    # Best against best: the model's own limit (any threads/batch) vs the best whole pipeline.
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        mo_best = max(mine, key=lambda r: r[3])
        e2e_best = max(mine, key=lambda r: r[4])
        print(
            f"{name}: best model-only {mo_best[3]:.0f} img/s (threads={mo_best[1]}, batch={mo_best[2]}), "
            f"best end-to-end {e2e_best[4]:.0f} img/s (threads={e2e_best[1]}, batch={e2e_best[2]}): "
            f"ratio {e2e_best[4] / mo_best[3]:.2f}"
        )
    names = list(dict.fromkeys(r[0] for r in rows))
    if len(names) > 1:  # model-only speed of every other model relative to the first, at the same settings
        base = {(r[1], r[2]): r[3] for r in rows if r[0] == names[0]}
        for r in rows:
            if r[0] != names[0] and (r[1], r[2]) in base:
                print(f"{r[0]} / {names[0]} model-only at threads={r[1]}, batch={r[2]}: {r[3] / base[(r[1], r[2])]:.2f}x")
    if args.keras_run:
        from training.data import preprocessing_for
        from training.train import load_config

        kprep = preprocessing_for(load_config(args.keras_run / "config.json"))
        x8 = np.stack([load_for_model(p, (kprep.width, kprep.height), kprep) for p in paths[:60]])
        k = keras_per_image(args.keras_run, x8)
        if k:
            best = max(r[4] for r in rows)
            print(f"Keras predict per image: {k:.1f} img/s ({1000 / k:.1f} ms); best end-to-end is {best / k:.0f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
