"""Matching a model to a lab's magnification from unlabelled images (hematovision calibrate; issue 17)."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from hv_desktop.core.site.ruler import MIN_IMAGES, REFERENCE_RADII
from hv_desktop.core.site.site_model import AdaptError
from tests.support.cli import run_hematovision
from tests.support.images import disc_image
from tests.support.onnx_factory import tiny_model

CELL = {"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 0.75}}


def _lab(folder, n=24, radius=20, size=(320, 240)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        disc_image(radius + (i % 3), size=size, centre=(size[0] // 2 + i, size[1] // 2)).save(folder / f"cell{i:02}.png")
    return folder


def test_the_crop_is_the_reference_radii_of_the_lab_median_nucleus(tmp_path):
    base_path = tiny_model(tmp_path / "base.onnx", metadata=CELL)
    before = base_path.read_bytes()
    result = calibrate(Model(base_path), [_lab(tmp_path / "lab")], site_name="Ward 3")
    # median drawn radius 21 px: radius of gyration 21 / sqrt(2) on a 240 px short side
    expected = REFERENCE_RADII * 21 / math.sqrt(2) / 240
    assert result.metadata.preprocessing.crop_fraction == pytest.approx(expected, rel=0.05)
    assert result.scale == pytest.approx(result.metadata.preprocessing.crop_fraction / 0.75, rel=1e-9)
    site = tmp_path / "site.onnx"
    result.save(site, Model(base_path))
    loaded = Model(site)
    assert loaded.info.preprocessing.crop_fraction == pytest.approx(expected, rel=0.05)
    provenance = loaded.info.site_adaptation
    assert provenance["kind"] == "magnification from unlabelled images" and provenance["site"] == "Ward 3"
    assert provenance["images_measured"] == 24 and len(provenance["images_sha256"]) == 24
    assert loaded.info.version.endswith("+site") and base_path.read_bytes() == before


def test_a_lab_at_twice_the_magnification_gets_twice_the_square(tmp_path):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata=CELL))
    one = calibrate(base, [_lab(tmp_path / "x1", radius=12)]).metadata.preprocessing.crop_fraction
    two = calibrate(base, [_lab(tmp_path / "x2", radius=24)]).metadata.preprocessing.crop_fraction
    assert two / one == pytest.approx(2.0, rel=0.08)


def test_too_few_measurable_images_and_uncropped_models_are_refused(tmp_path):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata=CELL))
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(MIN_IMAGES + 5):
        Image.new("RGB", (120, 90), (200, 200, 200)).save(blank / f"b{i}.png")
    with pytest.raises(AdaptError, match=f"at least {MIN_IMAGES}"):
        calibrate(base, [blank])
    whole = Model(tiny_model(tmp_path / "whole.onnx"))
    with pytest.raises(AdaptError, match="no\\s+magnification to match"):
        calibrate(whole, [_lab(tmp_path / "lab")])


def test_the_command_writes_a_new_model_and_never_over_its_inputs(tmp_path):
    base = tiny_model(tmp_path / "base.onnx", metadata=CELL)
    lab = _lab(tmp_path / "lab")
    done = run_hematovision("calibrate", lab, "--model", base, "--out", tmp_path / "site.onnx", "--site-name", "Ward 3", "-q")
    assert done.returncode == 0, done.stderr
    assert "as large as in the model's training labs" in done.stdout and (tmp_path / "site.onnx").exists()
    over_base = run_hematovision("calibrate", lab, "--model", base, "--out", base, "-q")
    assert over_base.returncode == 2 and base.read_bytes() == tiny_model(tmp_path / "again.onnx", metadata=CELL).read_bytes()
    over_image = run_hematovision("calibrate", lab / "cell00.png", lab, "--model", base, "--out", lab / "cell00.png", "-q")
    assert over_image.returncode == 2 and Image.open(lab / "cell00.png").size == (320, 240)


def test_site_names_that_cannot_be_stored_are_refused_plainly(tmp_path):
    base = tiny_model(tmp_path / "base.onnx", metadata=CELL)
    lab = _lab(tmp_path / "lab")
    for name in ("A" * 190, "tab\there", "S\udcffite", "   "):
        with pytest.raises(AdaptError, match="site name"):
            calibrate(Model(base), [lab], site_name=name)
    done = run_hematovision("calibrate", lab, "--model", base, "--out", tmp_path / "o.onnx", "--site-name", "A" * 190, "-q")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "site name" in done.stderr


def test_site_models_and_per_cell_crops_are_not_matched_again(tmp_path):
    base = tiny_model(tmp_path / "base.onnx", metadata=CELL)
    lab = _lab(tmp_path / "lab")
    site = calibrate(Model(base), [lab]).save(tmp_path / "site.onnx", Model(base))
    with pytest.raises(AdaptError, match="already a site model"):
        calibrate(Model(site), [lab])
    nucleus = tiny_model(tmp_path / "n.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "nucleus"}})
    with pytest.raises(AdaptError, match="already sizes its square"):
        calibrate(Model(nucleus), [lab])


def test_what_was_measured_and_what_was_not_is_said(tmp_path):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata=CELL))
    lab = _lab(tmp_path / "lab")
    Image.new("RGB", (120, 90), (200, 200, 200)).save(lab / "blank.png")  # read, but no nucleus to measure
    (lab / "broken.png").write_bytes(b"not a picture")
    result = calibrate(base, [lab])
    assert result.measured == 24 and len(result.metadata.site_adaptation["images_sha256"]) == 24
    assert any(p.name == "broken.png" for p, _ in result.skipped)
    with pytest.raises(AdaptError, match="no images found to measure .*not found"):
        calibrate(base, [tmp_path / "no-such-folder"])
    # a "nucleus" larger than any square can show (the stain measure flooding the frame) is not measured: refused
    too_large = "0 with a stained nucleus the ruler can measure; in 24 the stain covers more than the largest square"
    with pytest.raises(AdaptError, match=f"24 image.s. read, {too_large} can show .cells over x2.7"):
        calibrate(base, [_lab(tmp_path / "huge", radius=100, size=(320, 240))])
    # cells nearly as large as the largest square (2 short sides) can show
    big = calibrate(base, [_lab(tmp_path / "big", radius=90, size=(320, 240))])
    assert 1.8 < big.metadata.preprocessing.crop_fraction <= 2.0
    # and the user is told that such a lab's cells may stay flagged until reviewed cells adapt the model
    padding = "filled out with background"  # (the preview's lines may name Adapt to This Lab for other reasons)
    assert any(padding in line and "Adapt to This Lab" in line for line in big.summary_lines())
    assert not any(padding in line for line in result.summary_lines())
    padded = calibrate(base, [_lab(tmp_path / "padded", radius=58)])  # a square of ~1.2 short sides, within the limit
    assert 1.15 < padded.metadata.preprocessing.crop_fraction < 1.4
    assert any(padding in line for line in padded.summary_lines())
    assert not any("at its limit" in line for line in padded.summary_lines())
    unpadded = calibrate(base, [_lab(tmp_path / "unpadded", radius=44)])  # ~0.95: shows the image, no padding note
    assert 0.8 < unpadded.metadata.preprocessing.crop_fraction < 1.1
    assert not any(padding in line for line in unpadded.summary_lines())


def test_the_ruler_ignores_a_radius_no_nucleus_can_have():
    """deepbionet: 146 of 361 images read 0.47 of the short side (the stain measure flooded a pale field whose red cells
    take the stain); a draw of 40 reviewed cells whose median landed there set adapt's square to its largest (x2.67)."""
    from hv_desktop.core.site.ruler import is_measured, largest_radius, ruler_magnification

    assert largest_radius(0.75) == pytest.approx(2.0 * 0.75 / (7.0 * 0.75))
    assert not is_measured(0.47, 0.75) and not is_measured(float("nan"), 0.75) and is_measured(0.107, 0.75)
    flooded = [0.47] * 25
    assert ruler_magnification([0.107] * 15 + flooded, 0.75) is None  # 15 real measurements are too few
    assert ruler_magnification([0.107] * 21 + flooded, 0.75) == pytest.approx(7.0 * 0.107 / 0.75)


def test_a_site_models_square_is_not_given_the_labs_magnification_twice():
    """The ruler's target is the square the network was trained at; a calibrated or adapted model's square already
    holds its lab's magnification (found by a fresh-eyes review: adapt on a calibrated model applied x1.1 twice)."""
    from dataclasses import replace

    from hv_desktop.core.inference.metadata import ModelMetadata
    from hv_desktop.core.site.ruler import ruler_magnification, trained_fraction

    base = ModelMetadata.from_dict({"labels": ["a", "b"], **CELL})
    site = base.with_updates(
        preprocessing=replace(base.preprocessing, crop_fraction=0.75 * 1.5),
        site_adaptation={"site": "x", "magnification": 1.5, "trained_crop_fraction": 0.75},
    )
    legacy = site.with_updates(site_adaptation={"site": "x", "magnification": 1.5})
    assert trained_fraction(base) == base.preprocessing.crop_fraction
    assert trained_fraction(site) == 0.75 and trained_fraction(legacy) == pytest.approx(0.75)
    at_lab = [0.107 * 1.5] * 30  # nuclei of a lab at x1.5 (0.107 of the short side at the training labs' size)
    assert ruler_magnification(at_lab, 0.75) == pytest.approx(1.5, rel=0.01)  # from the shipped square
    assert ruler_magnification(at_lab, 0.75 * 1.5, trained_fraction(site)) == pytest.approx(1.0, rel=0.01)


def test_calibrate_says_what_the_site_model_will_flag_at_the_lab_and_why(tmp_path):
    """Issue 26 item 3: the measured images, classified by the site model just made, say what the lab will see."""
    base = Model(tiny_model(tmp_path / "base.onnx", metadata=CELL))
    result = calibrate(base, [_lab(tmp_path / "lab")])
    preview = result.preview
    assert preview is not None and preview.classified == result.measured == 24
    site = Model(result.save(tmp_path / "site.onnx", base))
    from hv_desktop.core.inference.batch import classify_paths

    again = [r for r in classify_paths([tmp_path / "lab"], site) if r.ok]
    assert preview.flagged == sum(r.needs_review for r in again)  # the saved file flags exactly what was said
    assert sum(preview.called.values()) == 24
    lines = "\n".join(result.summary_lines())
    assert f"on these 24 images the site model flags {preview.flagged} for review" in lines
