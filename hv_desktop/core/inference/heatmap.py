"""Class-activation heatmaps from the model's own ``cam`` output (onnxruntime only).

The shipped model computes ``cam[i, j, k] = features[i, j] . W[:, k] + b[k]``
inside its graph, from the last feature map and the classifier weights (CAM,
Zhou et al. 2016); its spatial mean *is* the class logit, so the map shows
exactly the evidence the classifier summed, not a post-hoc approximation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hv_desktop.core.imaging.preprocess import (
    Box,
    model_box,
    normalise,
    open_image,
    resize_for_model,
)
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result

NO_CAM = "this model has no class-activation output"
#: How strongly the heatmap is laid over the image on screen (0: not at all, 1: opaque where the evidence is strong).
OPACITY = 0.45


def cam_for(
    model: Model, image: Image.Image, class_index: int | None = None, box: Box | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(heat in [0, 1] at the cam's resolution, probabilities) for one RGB image.

    The heat covers the region the model saw: ``box`` if given, else
    ``model_box(image, model.info.preprocessing)`` (pass it to :func:`overlay`).
    """
    if model.cam_name is None:
        raise ValueError(NO_CAM)
    prep = model.info.preprocessing
    x = normalise(resize_for_model(image, model.input_size, prep, box)[None], prep)
    probs, cams = model.run(x, with_cam=True)
    if cams is None:  # pragma: no cover - run() returns the maps whenever the model has a cam output
        raise ValueError(NO_CAM)
    k = int(probs[0].argmax()) if class_index is None else class_index
    return normalise_heat(cams[0, :, :, k]), probs[0]


def normalise_heat(cam: np.ndarray) -> np.ndarray:
    """Positive evidence only, scaled to [0, 1] (a flat map stays all zero)."""
    heat = np.maximum(np.asarray(cam, np.float32) - float(np.median(cam)), 0.0)
    top = float(heat.max())
    return heat / top if top > 0 else heat


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Heat (h, w) to image size (W, H), smooth (bilinear), values kept in [0, 1]."""
    im = Image.fromarray((heat * 255).astype(np.uint8), "L").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(im, np.float32) / 255.0, 0, 1)


def _colormap(v: np.ndarray) -> np.ndarray:
    """A perceptually ordered blue-to-yellow-to-red map (no matplotlib at run time)."""
    stops = np.array(
        [[0.0, 0, 0, 130], [0.25, 0, 90, 255], [0.5, 0, 220, 160], [0.75, 255, 220, 0], [1.0, 230, 20, 0]], np.float32
    )
    out = np.empty(v.shape + (3,), np.float32)
    for c in range(3):
        out[..., c] = np.interp(v, stops[:, 0], stops[:, c + 1])
    return out


def overlay(image: Image.Image, heat: np.ndarray, opacity: float = OPACITY, box: Box | None = None) -> Image.Image:
    """The image with the heatmap blended on top; weak evidence stays transparent.

    ``box`` is the region the heat covers (a cell-cropping model sees only part of
    the image; outside it there is no evidence to show).
    """
    base = np.asarray(image.convert("RGB"), np.float32)
    if box is None or tuple(box) == (0, 0) + image.size:
        h = upsample(heat, image.size)
    else:
        left, top, right, bottom = box
        h = np.zeros(base.shape[:2], np.float32)
        h[top:bottom, left:right] = upsample(heat, (right - left, bottom - top))
    alpha = (opacity * np.clip(h * 1.5, 0, 1))[..., None]
    out = base * (1 - alpha) + _colormap(h) * alpha
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def view_for(model: Model, image: Image.Image, **options: Any) -> Image.Image:
    """What a person should see of one image: optionally the heatmap, and for a
    model that crops, an outline of the square it classified (with two cells in
    a field, this says which one the answer is about). ``options``: as :func:`explain`'s."""
    return explain(model, image, **options)[1]


def explain(
    model: Model,
    image: Image.Image,
    heat: bool = False,
    class_index: int | None = None,
    opacity: float = OPACITY,
    box: Box | None = None,
) -> tuple[np.ndarray | None, Image.Image]:
    """(probabilities or None, the :func:`view_for` picture) from one nucleus search and at most one
    inference: the practice window needs the answer and its heatmap together. ``heat``: overlay the heatmap
    of ``class_index`` (the top class by default) at ``opacity``; ``box``: the model's square, if the caller
    already found it."""
    box = box or model_box(image, model.info.preprocessing)
    out, probs = image, None
    if heat and model.cam_name:
        h, probs = cam_for(model, image, class_index, box)
        out = overlay(image, h, opacity, box)
    if box != (0, 0) + image.size:
        out = outline(out, box, max(2, round(min(image.size) / 150)))
    return probs, out


def cell_view(
    model: Model | None,
    path: Path,
    cell_box: Box,
    heat: bool = False,
    class_index: int | None = None,
    opacity: float = OPACITY,
    max_side: int = 800,
) -> tuple[np.ndarray | None, Image.Image]:
    """(probabilities or None, the picture) of a camera field's cell (issue 28): the square
    ``fields.cell_square`` cut around its box, from the field decoded as a run decodes it, so the heatmap is the
    evidence for the cell that row classified, never a nucleus search of the whole field; its box outlined.
    ``cell_box``: ``Result.cell_box`` (the stored file's pixels); ImageError when the file cannot be read."""
    from hv_desktop.core.inference.fields import cell_square, open_field

    im, scale = open_field(path)
    box = scale(cell_box)
    square = cell_square(box)
    side = max(1, min(max_side, square[2] - square[0]))
    view = Image.fromarray(resize_for_model(im, (side, side), None, box=square))
    probs = None
    if heat and model is not None and model.cam_name:
        h, probs = cam_for(model, im, class_index, square)
        view = overlay(view, h, opacity)
    f = side / max(1, square[2] - square[0])
    inner = tuple(round((v - o) * f) for v, o in zip(box, square[:2] * 2, strict=True))
    return probs, outline(view, (inner[0], inner[1], inner[2], inner[3]), max(1, round(side / 120)))


def outline(image: Image.Image, box: Box, width: int = 2, colour: tuple[int, int, int] = (0, 190, 110)) -> Image.Image:
    """A copy with a rectangle drawn just inside ``box``. Plain numpy, not ImageDraw: ImageDraw pulls in
    Pillow's font stack (FreeType, HarfBuzz), which the standalone bundle leaves out."""
    arr = np.array(image.convert("RGB"))
    left, top, right, bottom = box
    w = max(1, min(width, (right - left) // 2, (bottom - top) // 2))
    for sl in (
        (slice(top, top + w), slice(left, right)),
        (slice(bottom - w, bottom), slice(left, right)),
        (slice(top, bottom), slice(left, left + w)),
        (slice(top, bottom), slice(right - w, right)),
    ):
        arr[sl] = colour
    return Image.fromarray(arr, "RGB")


#: Default overlay strength for written heatmaps: the cell's shape stays readable under the colour.
PNG_OPACITY = 0.35


def heatmap_png(
    model: Model, path: Path, out: Path, opacity: float = PNG_OPACITY, max_side: int = 800, result: Result | None = None
) -> None:
    """Write the overlay for one image file (PNG), sized for a report or a screen, with a legend strip
    below it naming the class and confidence (``result``: the row's classification; else the model's answer)."""
    import io

    from hv_desktop.core.system.writing import atomic_write_bytes

    k = model.labels.index(result.label) if result is not None and result.label in model.labels else None
    if result is not None and result.cell_box is not None:  # a camera field's cell: its square, as it was classified
        probs, view = cell_view(model, path, result.cell_box, True, k, opacity, max_side)
    else:
        im = open_image(path, draft_size=(max_side, max_side))
        im.thumbnail((max_side, max_side))
        probs, view = explain(model, im, heat=True, class_index=k, opacity=opacity)
    if result is not None and result.label:
        label, conf = result.label, result.confidence or 0.0
    elif probs is not None:
        label, conf = model.labels[int(np.argmax(probs))], float(np.max(probs))
    else:
        label, conf = "", 0.0
    buf = io.BytesIO()
    with_legend(view, f"{label} {conf * 100:.0f}%" if label else "").save(buf, "PNG")
    atomic_write_bytes(out, buf.getvalue())


def with_legend(view: Image.Image, text: str) -> Image.Image:
    """``view`` above a strip with ``text`` and the colour scale (low to high evidence). Pillow's built-in
    bitmap font: no FreeType, which the standalone bundle leaves out."""
    from PIL import ImageDraw, ImageFont

    w, h = view.size
    strip = 22
    canvas = Image.new("RGB", (w, h + strip), (255, 255, 255))
    canvas.paste(view, (0, 0))
    bar_w = min(120, w // 3)
    ramp = _colormap(np.tile(np.linspace(0, 1, bar_w, dtype=np.float32), (10, 1)))
    canvas.paste(Image.fromarray(np.clip(ramp + 0.5, 0, 255).astype(np.uint8), "RGB"), (w - bar_w - 6, h + 6))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default()
    except Exception:  # no font at all: the strip keeps its colour scale
        return canvas
    draw.text((6, h + 5), text, fill=(0, 0, 0), font=font)
    draw.text((w - bar_w - 6 - 52, h + 5), "evidence", fill=(80, 80, 80), font=font)  # 8 characters of 6 px
    return canvas
