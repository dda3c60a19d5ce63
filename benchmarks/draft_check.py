"""Does the fast JPEG path (decode at a reduced scale with Pillow's draft()) change answers?

    python benchmarks/draft_check.py [--n 300] [--scale 4]

Real TEST images are enlarged (as a high-resolution camera would deliver them), saved as JPEG, then
classified twice: with the draft path the app uses and with a full-size decode. Prints agreement, accuracy
of both, and decode time per image.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hv_desktop.core.imaging.preprocess import normalise, open_image, resize_for_model  # noqa: E402
from hv_desktop.core.inference.model import Model  # noqa: E402
from training.data import list_labelled  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "blood-cells" / "TEST")
    ap.add_argument("--model", type=Path, default=ROOT / "assets" / "model" / "hematovision.onnx")
    args = ap.parse_args()
    model = Model(args.model)
    items = list_labelled(args.data)[:: max(1, len(list_labelled(args.data)) // args.n)][: args.n]
    size = model.input_size
    preds = {"draft": [], "full": []}
    times = {"draft": 0.0, "full": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (p, _) in enumerate(items):
            im = Image.open(p).convert("RGB")
            big = im.resize((im.width * args.scale, im.height * args.scale), Image.Resampling.BICUBIC)
            path = Path(tmp) / f"{i}.jpg"
            big.save(path, quality=92)
            for mode, draft in (("draft", size), ("full", None)):
                t = time.perf_counter()
                arr = resize_for_model(open_image(path, draft_size=draft), size)
                times[mode] += time.perf_counter() - t
                preds[mode].append(int(model.probabilities(normalise(arr[None], model.info.preprocessing)).argmax()))
    y = np.asarray([lab for _, lab in items])
    a, b = np.asarray(preds["draft"]), np.asarray(preds["full"])
    print(f"{len(items)} TEST images enlarged x{args.scale} ({big.width}x{big.height} JPEG)")
    print(f"agreement draft vs full decode: {np.mean(a == b) * 100:.1f} %")
    print(f"accuracy: draft {np.mean(a == y) * 100:.1f} %, full {np.mean(b == y) * 100:.1f} %")
    print(f"decode+resize ms/image: draft {times['draft'] / len(items) * 1000:.1f}, full {times['full'] / len(items) * 1000:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
