"""PDF report and heatmaps, through the core and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata

from PIL import Image
from pypdf import PdfReader

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hv_desktop.core.inference.batch import classify_paths  # noqa: E402
from hv_desktop.core.inference.model import Model  # noqa: E402
from tests.support import ROOT  # noqa: E402


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
