"""Peak memory of `hematovision classify` over folders of growing size: it must stay flat.

    python benchmarks/stream_memory.py [--sizes 1000 10000] [--model assets/model/hematovision.onnx]

Each size runs in its own process (peak RSS is per process). Files are hard links to a few generated
320x240 JPEGs, so a 10,000-file folder costs no disk; every file is still opened, hashed, decoded and
classified.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import resource, sys, time
from pathlib import Path
from hv_desktop.cli import main
t = time.perf_counter()
code = main(["--model", sys.argv[1], "classify", sys.argv[2], "--csv", sys.argv[3], "-q"])
secs = time.perf_counter() - t
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{code} {peak_mb:.1f} {secs:.2f}")
"""


def make_folder(root: Path, n: int) -> Path:
    folder = root / f"n{n}"
    folder.mkdir()
    seeds = []
    rng = np.random.default_rng(0)
    for i in range(8):
        p = root / f"seed{i}.jpg"
        if not p.exists():
            Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(p, quality=90)
        seeds.append(p)
    for i in range(n):
        os.link(seeds[i % len(seeds)], folder / f"cell_{i:06d}.jpg")
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--model", type=Path, default=ROOT / "assets" / "model" / "hematovision.onnx")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print(f"{'files':>8} {'peak RSS MB':>12} {'seconds':>8} {'img/s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in args.sizes:
            folder = make_folder(root, n)
            out = root / f"out{n}.csv"
            r = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.model), str(folder), str(out)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            code, peak, secs = r.stdout.split()
            with open(out, encoding="utf-8-sig") as fh:
                rows = sum(1 for _ in fh) - 1
            assert rows == n, (rows, n)
            print(f"{n:>8} {float(peak):>12.1f} {float(secs):>8.1f} {n / float(secs):>7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
