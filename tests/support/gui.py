"""What the window tests share: small coloured cells the tiny test model reads by colour, and a run awaited."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

#: red -> eosinophil, blue -> lymphocyte, green -> monocyte, grey -> neutrophil (flagged: low confidence)
COLOURS = [(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128)]


def images(folder: Path, n: int, start: int = 0) -> Path:
    """``folder`` with ``n`` 24 px cells named cell_NNNN.png, in the order of COLOURS."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.new("RGB", (24, 24), COLOURS[i % 4]).save(folder / f"cell_{i:04d}.png")
    return folder


def run(qtbot, w, action) -> None:
    """Do ``action`` and wait for the run it starts to finish."""
    with qtbot.waitSignal(w.runFinished, timeout=30000):
        action()
