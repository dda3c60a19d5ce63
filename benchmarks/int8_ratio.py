"""INT8 vs FP32 model-only speed, interleaved, and where each model's time goes (onnxruntime's per-node profile).

    python benchmarks/int8_ratio.py [--fp32 M.onnx] [--int8 M.onnx] [--batch 8 16] [--rounds 7]

Timing rounds alternate between the two sessions on the same 64 real images, so drift on this noisy
machine hits both equally; the ratio of medians is printed. One inference thread (the app's default);
several live multi-thread sessions interfere, so 2-thread figures belong to throughput.py.
The profile groups node time by operator and by part: int8 kernels, float kernels (in the INT8 file mostly
the stem that `training.quantize --float-convs` keeps in float, and the input transpose) and the
needs-review head; the last two are what INT8 cannot speed up.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.imaging.preprocess import load_for_model, normalise  # noqa: E402
from hv_desktop.core.imaging.scan import scan  # noqa: E402
from hv_desktop.core.inference.model import Model  # noqa: E402

OUTPUTS = ["logits", "typicality"]


def session(path: Path, profile_prefix: str | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def interleaved(paths: dict[str, Path], x: np.ndarray, batch: int, rounds: int) -> dict[str, list[float]]:
    sessions = {k: session(p) for k, p in paths.items()}
    rates: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for k, s in sessions.items():
            s.run(OUTPUTS, {"image": x[:batch]})
            t0 = time.perf_counter()
            for i in range(0, len(x) - batch + 1, batch):
                s.run(OUTPUTS, {"image": x[i : i + batch]})
            rates[k].append((len(x) // batch) * batch / (time.perf_counter() - t0))
    return rates


def profile(path: Path, x: np.ndarray, batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = session(path, os.path.join(tmp, "p"))
        for _ in range(3):
            for i in range(0, len(x) - batch + 1, batch):
                s.run(OUTPUTS, {"image": x[i : i + batch]})
        with open(s.end_profiling()) as fh:
            events = [e for e in json.load(fh) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    images = 3 * (len(x) // batch) * batch
    by_op: collections.Counter = collections.Counter()
    by_part: collections.Counter = collections.Counter()
    for e in events:
        op = e["args"]["op_name"]
        by_op[op] += e["dur"]
        if "review" in e["name"]:
            by_part["needs-review head"] += e["dur"]
        elif op.startswith("QLinear") or op in ("QuantizeLinear", "DequantizeLinear"):
            by_part["int8 kernels (+ (de)quantise)"] += e["dur"]
        else:
            by_part["float kernels"] += e["dur"]  # in the INT8 file: the stem, the input transpose, the pooling
    total = sum(by_op.values())
    print(f"  {path.name}: {total / 1000 / images:.3f} ms per image in nodes")
    for part, us in by_part.most_common():
        print(f"    {part:<30} {us / 1000 / images:.3f} ms  ({us / total:.0%})")
    for op, us in by_op.most_common(6):
        print(f"    op {op:<19} {us / 1000 / images:.3f} ms  ({us / total:.0%})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32", type=Path, default=ROOT / "assets" / "model" / "hematovision.onnx")
    ap.add_argument("--int8", type=Path, default=ROOT / "assets" / "model" / "hematovision-int8.onnx")
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "blood-cells" / "TEST")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    model = Model(args.fp32)
    prep = model.info.preprocessing
    paths = [i.path for i in scan([args.images]) if not i.error][::25][:64]
    x = normalise(np.stack([load_for_model(p, model.input_size, prep) for p in paths]), prep)
    print(f"{len(x)} images from {args.images}, 1 inference thread, {args.rounds} interleaved rounds")
    for batch in args.batch:
        rates = interleaved({"fp32": args.fp32, "int8": args.int8}, x, batch, args.rounds)
        fp, q = np.median(rates["fp32"]), np.median(rates["int8"])
        print(f"batch {batch:>2}: FP32 {fp:6.0f} img/s, INT8 {q:6.0f} img/s (medians) -> INT8/FP32 {q / fp:.2f}x")
    print("per-node profile, batch", args.batch[0])
    for path in (args.fp32, args.int8):
        profile(path, x, args.batch[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
