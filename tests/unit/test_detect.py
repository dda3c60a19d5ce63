"""The white-cell finder (issue 28, step 1) on fields drawn here: red cells, nuclei, lobes, platelets, the border.
Recall and precision on real boxed fields: tests/realdata/test_detect_fields.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hv_desktop.core.imaging.detect import FoundCell, dilate, find_cells, label, rbc_diameter

BACKGROUND = (236, 228, 222)
RED_CELL = (214, 150, 158)
PALLOR = (228, 190, 192)
CYTOPLASM = (212, 196, 226)
NUCLEUS = (104, 58, 168)
D = 40  # red-cell diameter, in pixels of a 640 x 480 field


def field(nuclei=(), lobed=(), platelets=(), size=(640, 480), seed=0) -> Image.Image:
    """A smear field: red cells with pallor on a light background, about 1.6 D apart (a thin area of a smear; the
    ruler reads a denser monolayer as smaller cells), then white cells (a cytoplasm disc of 1.6 D around a round
    nucleus of 1 D, or a nucleus of four lobes) and platelets (purple dots of 0.25 D)."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(im)
    w, h = size
    for y in range(-D // 2, h + D, int(D * 1.6)):
        for x in range(-D // 2, w + D, int(D * 1.6)):
            cx, cy = x + rng.uniform(-6, 6), y + rng.uniform(-6, 6)
            r = D / 2 * rng.uniform(0.92, 1.05)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=RED_CELL)
            draw.ellipse([cx - r / 3, cy - r / 3, cx + r / 3, cy + r / 3], fill=PALLOR)
    for cx, cy in list(nuclei) + list(lobed):
        draw.ellipse([cx - 0.8 * D, cy - 0.8 * D, cx + 0.8 * D, cy + 0.8 * D], fill=CYTOPLASM)
    for cx, cy in nuclei:
        draw.ellipse([cx - D / 2, cy - D / 2, cx + D / 2, cy + D / 2], fill=NUCLEUS)
    for cx, cy in lobed:  # four lobes 0.45 D across, about 0.1 D apart: a segmented neutrophil
        for dx, dy in ((-0.3, -0.28), (0.28, -0.3), (-0.28, 0.3), (0.3, 0.28)):
            lx, ly, r = cx + dx * D, cy + dy * D, 0.22 * D
            draw.ellipse([lx - r, ly - r, lx + r, ly + r], fill=NUCLEUS)
    for cx, cy in platelets:
        r = 0.125 * D
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=NUCLEUS)
    return im


def holds(cell: FoundCell, x: float, y: float) -> bool:
    x0, y0, x1, y1 = cell.box
    return x0 <= x < x1 and y0 <= y < y1


def test_two_white_cells_give_two_boxes_around_them():
    cells = find_cells(field(nuclei=[(180, 200), (450, 300)]))
    assert len(cells) == 2, cells
    assert holds(cells[0], 180, 200) and holds(cells[1], 450, 300)  # top to bottom
    for c in cells:
        side = c.box[2] - c.box[0]
        assert 1.2 * D <= side <= 2.5 * D, c  # the cell, not the nucleus alone nor the field
        assert not c.at_edge and 0 < c.score <= 1


def test_a_field_of_red_cells_alone_gives_no_box():
    assert find_cells(field()) == []


def test_a_white_cell_cut_by_the_border_is_found_and_marked_at_edge():
    cells = find_cells(field(nuclei=[(300, 240), (630, 100)]))
    assert len(cells) == 2, cells
    edge = [c for c in cells if holds(c, 625, 100)]
    inner = [c for c in cells if holds(c, 300, 240)]
    assert len(edge) == 1 and edge[0].at_edge and edge[0].box[2] == 640
    assert len(inner) == 1 and not inner[0].at_edge


def test_a_lobed_nucleus_is_one_cell():
    cells = find_cells(field(lobed=[(320, 240)]))
    assert len(cells) == 1, cells
    assert holds(cells[0], 320, 240)


def test_a_platelet_is_not_a_white_cell():
    assert find_cells(field(platelets=[(200, 150), (420, 330)])) == []
    # Beside a white cell, still only the white cell.
    cells = find_cells(field(nuclei=[(400, 260)], platelets=[(150, 120), (200, 380)]))
    assert len(cells) == 1 and holds(cells[0], 400, 260)


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.5, 2.0])
def test_magnification_changes_nothing_but_the_pixels(scale):
    im = field(nuclei=[(180, 200), (450, 300)], lobed=[(330, 120)], platelets=[(520, 420)])
    w, h = im.size
    cells = find_cells(im.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
    assert len(cells) == 3, cells
    for x, y in ((180, 200), (450, 300), (330, 120)):
        assert sum(holds(c, x * scale, y * scale) for c in cells) == 1


def test_the_red_cell_ruler_follows_magnification():
    im = field()
    base = rbc_diameter(im)
    assert 0.7 * D <= base <= 1.4 * D
    big = rbc_diameter(im.resize((1280, 960), Image.Resampling.BILINEAR))
    assert big / base == pytest.approx(2, rel=0.12)


def reference_labels(mask: np.ndarray) -> int:
    """Number of 8-connected components, by a plain flood fill."""
    seen = np.zeros_like(mask, bool)
    h, w = mask.shape
    count = 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        count += 1
        stack = [(y0, x0)]
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            for yy in range(max(0, y - 1), min(h, y + 2)):
                for xx in range(max(0, x - 1), min(w, x + 2)):
                    if mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
    return count


@pytest.mark.parametrize("seed", range(6))
def test_labelling_matches_a_flood_fill(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) < (0.3 + 0.1 * seed)
    labels, n = label(mask)
    assert n == reference_labels(mask)
    assert ((labels > 0) == mask).all()
    # One label per component and one component per label: pixels joined 8-way share a label.
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = labels[max(0, -dy) : labels.shape[0] - max(0, dy), max(0, -dx) : labels.shape[1] - max(0, dx)]
        b = labels[max(0, dy) :, max(0, dx) : labels.shape[1] + min(0, dx) or None]
        b = b[: a.shape[0], : a.shape[1]]
        both = (a > 0) & (b > 0)
        assert (a[both] == b[both]).all()
    assert set(np.unique(labels)) == set(range(n + 1))


def test_labelling_an_empty_or_full_mask():
    assert label(np.zeros((5, 7), bool))[1] == 0
    labels, n = label(np.ones((5, 7), bool))
    assert n == 1 and (labels == 1).all()


def test_dilation_grows_by_the_radius():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert dilate(mask, 2).sum() == 25 and dilate(mask, 0).sum() == 1


@pytest.mark.parametrize(
    "im",
    [
        Image.new("RGB", (1, 1), NUCLEUS),
        Image.new("RGB", (4000, 2), NUCLEUS),
        Image.new("RGB", (9, 900), NUCLEUS),
        Image.new("RGB", (320, 240), (0, 0, 0)),
        Image.new("L", (320, 240), 128),
        Image.new("RGBA", (64, 48), (104, 58, 168, 0)),
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)),
        Image.new("RGB", (320, 240), NUCLEUS),
    ],
    ids=["1x1", "4000x2", "9x900", "black", "grey", "rgba", "noise", "all-stain"],
)
def test_odd_images_give_a_list_never_an_error(im):
    cells = find_cells(im)
    assert isinstance(cells, list)
    for c in cells:
        x0, y0, x1, y1 = c.box
        assert 0 <= x0 < x1 <= im.size[0] and 0 <= y0 < y1 <= im.size[1]
