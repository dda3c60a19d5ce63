"""PDF report and heatmaps, through the core and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hv_desktop.core.batch import classify_paths  # noqa: E402
from hv_desktop.core.heatmap import normalise_heat, overlay, upsample  # noqa: E402
from hv_desktop.core.model import Model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _folder(tmp_path, n):
    colours = [(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128)]
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(n):
        Image.new("RGB", (40, 30), colours[i % 4]).save(d / f"c{i:03d}.png")
    (d / "broken.jpg").write_bytes(b"")
    return d


def test_report_pages_and_text(qapp, tmp_path, tiny_model_path):
    from hv_desktop.gui.report import ReportInfo, write_pdf

    model = Model(tiny_model_path)
    results = list(classify_paths([_folder(tmp_path, 40)], model, thumbnail=96))
    next(r for r in results if r.label == "eosinophil").reviewer_label = "monocyte"
    out = tmp_path / "report.pdf"
    pages = write_pdf(
        out,
        results,
        model.labels,
        model.info.name,
        model.info.version,
        ReportInfo("CASE <42> & co", "first line\nsecond line", "J. Doe"),
        model,
    )
    reader = PdfReader(str(out))
    assert len(reader.pages) == pages >= 2
    # pypdf emits tabs between words and the font's ligatures (ﬁ, ﬀ): normalise both
    text = " ".join(unicodedata.normalize("NFKC", " ".join(p.extract_text() for p in reader.pages)).split())
    assert "CASE <42> & co" in text  # escaped in HTML, shown literally
    assert "Differential" in text and "Eosinophil" in text and "J. Doe" in text
    assert "broken.jpg" in text and "empty file" in text
    assert "PRELIMINARY: 10 cells flagged for review have not been reviewed" in text  # the 10 grey cells
    assert "tiny-test" in text and "not a diagnosis" in text.lower()
    # eosinophils: 10 by model, 9 after one was reviewed as monocyte
    assert "Eosinophil 10 25.0 % 9 22.5 %" in text


def test_cli_report_and_heatmaps(tmp_path, tiny_model_path):
    folder = _folder(tmp_path, 6)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hv_desktop",
            "--model",
            str(tiny_model_path),
            "classify",
            str(folder),
            "--csv",
            str(tmp_path / "o.csv"),
            "--report",
            str(tmp_path / "r.pdf"),
            "--heatmaps",
            str(tmp_path / "heat"),
            "--case-id",
            "S-1",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert len(PdfReader(str(tmp_path / "r.pdf")).pages) >= 1
    heat = sorted((tmp_path / "heat").iterdir())
    assert len(heat) == 6 and all(p.name.endswith(".heatmap.png") for p in heat)
    assert Image.open(heat[0]).size == (40, 30 + 22)  # the picture and its legend strip


def test_heat_normalisation_and_overlay():
    cam = np.zeros((7, 7), np.float32)
    cam[3, 4] = 5.0
    heat = normalise_heat(cam)
    assert heat.max() == 1.0 and heat[3, 4] == 1.0 and heat[0, 0] == 0.0
    assert normalise_heat(np.ones((7, 7))).max() == 0.0  # no evidence anywhere: nothing drawn
    up = upsample(heat, (70, 70))
    y, x = np.unravel_index(up.argmax(), up.shape)
    assert 25 <= y <= 45 and 35 <= x <= 55
    img = Image.new("RGB", (70, 70), (255, 255, 255))
    out = np.asarray(overlay(img, heat)).astype(int)
    assert (out[0, 0] == 255).all() and out[35, 45].sum() < 3 * 255  # coloured only where the heat is


@pytest.mark.realdata
@pytest.mark.slow
def test_report_pages_keep_headings_with_cells_and_show_every_flagged_cell(qapp, tmp_path, shared_data, shipped_model):
    """Issue 18's report defects, on TEST_SIMPLE: every page names the case and 'Page X of N', no class heading
    is left at a page's foot, a class continued on a new page is named again, every flagged cell is shown, and
    'By review' is '–' until a cell is reviewed."""
    from hv_desktop.gui.report import ReportInfo, write_pdf

    model = Model(shipped_model)
    results = list(classify_paths([shared_data / "blood-cells" / "TEST_SIMPLE"], model))
    out = tmp_path / "r.pdf"
    n = write_pdf(out, results, model.labels, model.info.name, model.info.version, ReportInfo("S-114"), model)
    pages = [" ".join(unicodedata.normalize("NFKC", p.extract_text()).split()) for p in PdfReader(str(out)).pages]
    assert len(pages) == n == 3
    for i, text in enumerate(pages, 1):
        assert "Case S-114" in text and f"Page {i} of {n}" in text, (i, text[:200])
    names = {lab: [r.path.name[:22] for r in results if r.label == lab] for lab in model.labels}
    for text in pages:
        for lab in model.labels:
            heading = f"{lab.capitalize()} — "
            if heading in text:  # a heading is followed, on its own page, by cells of its class
                after = text[text.index(heading) :]
                assert any(name in after for name in names[lab]), (lab, after[:300])
    assert "Neutrophil (continued)" in pages[2]
    import shutil

    if shutil.which("pdftoppm"):  # the pages as a person sees them (poppler-utils, scripts/install_system_deps.sh)
        subprocess.run(["pdftoppm", "-r", "40", "-png", str(out), str(tmp_path / "page")], check=True, timeout=60)
        pngs = sorted(tmp_path.glob("page-*.png"))
        assert len(pngs) == 3
        for png in pngs:
            ink = np.asarray(Image.open(png).convert("L")) < 200
            assert ink.mean() > 0.01  # each page carries printed content, not a blank sheet
    elif os.environ.get("CI") == "true":
        pytest.fail("pdftoppm (poppler-utils) is missing: scripts/install_system_deps.sh installs it")
    everything = " ".join(pages)
    flagged = [r.path.name[:22] for r in results if r.ok and r.needs_review]
    assert flagged and all(name in everything for name in flagged)
    assert "Eosinophil 12 16.9 % – –" in pages[0]
