"""Cold-start times: `--version` and opening the window (targets: 1 s and 2 s).

    python benchmarks/cold_start.py [--bundle dist/HematoVision/HematoVision] [--repeat 3]

"Window" is `--screenshot OUT.png` with no paths: start, load the model, build and show the window,
render it, exit — an upper bound on the time until the window is usable. Best of N runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best(cmd: list[str], env: dict, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True, timeout=120)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "dist" / "HematoVision" / "HematoVision")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HV_DATA_DIR=tmp, PYTHONPATH=str(ROOT))
        faces = {"python -m hv_desktop": [sys.executable, "-m", "hv_desktop"]}
        if args.bundle.exists():
            faces["bundle"] = [str(args.bundle)]
        for name, cmd in faces.items():
            v = best(cmd + ["--version"], env, args.repeat)
            w = best(cmd + ["--screenshot", str(Path(tmp) / "s.png")], env, args.repeat)
            print(f"{name:<22} --version {v:5.2f} s   window {w:5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
