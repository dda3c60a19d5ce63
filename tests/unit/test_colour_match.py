"""A lab's colours matched to the training labs' inside calibrate (issue 26; rule docs/research/rules/colour_match.txt)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.imaging.preprocess import Preprocessing, normalise
from hv_desktop.core.inference.colour import Accumulator, ChannelStats, match_problem, matched, mixture
from hv_desktop.core.inference.metadata import ModelError, ModelMetadata
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.calibrate import calibrate
from tests.support.images import disc_image
from tests.support.onnx_factory import tiny_model

REFERENCE = {"mean": [200.0, 178.0, 185.0], "std": [47.0, 52.0, 34.0], "images": 400}
CELL = {"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 0.75}}


def test_a_lab_pixel_lands_where_the_same_standard_score_of_the_reference_lands():
    prep = Preprocessing()
    lab = ChannelStats((150.0, 160.0, 170.0), (30.0, 55.0, 44.0))
    ref = ChannelStats((200.0, 178.0, 185.0), (47.0, 52.0, 34.0))
    site = matched(prep, lab, ref)
    for k in (-2.0, 0.0, 1.5):
        at_lab = np.asarray(lab.mean) + k * np.asarray(lab.std)
        at_ref = np.asarray(ref.mean) + k * np.asarray(ref.std)
        got = (at_lab - np.asarray(site.mean)) / np.asarray(site.std)
        want = (at_ref - np.asarray(prep.mean)) / np.asarray(prep.std)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_the_app_normalises_with_the_matched_values():
    lab = ChannelStats((150.0, 160.0, 170.0), (30.0, 55.0, 44.0))
    ref = ChannelStats((200.0, 178.0, 185.0), (47.0, 52.0, 34.0))
    site = matched(Preprocessing(), lab, ref)
    pixel = np.array([[[150, 160, 170]]], dtype=np.uint8)  # the lab's mean maps to the reference's mean
    out = normalise(pixel, site)
    np.testing.assert_allclose(out[0, 0], (np.asarray(ref.mean) - 127.5) / 127.5, atol=1e-5)


def test_statistics_and_the_equal_weight_mixture():
    acc = Accumulator()
    acc.add(np.full((4, 4, 3), 100, np.uint8))
    acc.add(np.full((4, 4, 3), 200, np.uint8))
    s = acc.stats()
    assert s is not None and s.mean == pytest.approx((150, 150, 150)) and s.std == pytest.approx((50, 50, 50), abs=1e-3)
    assert Accumulator().stats() is None
    m = mixture([ChannelStats((100, 100, 100), (0.001,) * 3, 10), ChannelStats((200, 200, 200), (0.001,) * 3, 1000)])
    assert m.mean == pytest.approx((150, 150, 150)) and m.std == pytest.approx((50, 50, 50), abs=1e-3)  # labs, not images


def test_a_flat_lab_is_not_matched():
    ref = ChannelStats((200.0, 178.0, 185.0), (47.0, 52.0, 34.0))
    assert match_problem(ChannelStats((200, 200, 200), (40, 50, 30)), ref) is None
    assert "too far" in (match_problem(ChannelStats((200, 200, 200), (2, 50, 30)), ref) or "")


@pytest.mark.parametrize(
    "bad",
    [{"mean": [1, 2], "std": [1, 1, 1]}, {"mean": [1, 2, 3], "std": [0, 1, 1]}, {"mean": [1, 2, 999], "std": [1, 1, 1]}, "x"],
)
def test_a_bad_colour_reference_is_refused_with_a_message(bad):
    meta = {"labels": ["a", "b"], "colour_reference": bad}
    with pytest.raises(ModelError, match="colour_reference"):
        ModelMetadata.from_dict(meta, "m.onnx")


def test_a_colour_reference_round_trips():
    meta = ModelMetadata.from_dict({"labels": ["a", "b"], "colour_reference": REFERENCE})
    again = ModelMetadata.from_json(meta.to_json())
    assert again.colour() == ChannelStats((200.0, 178.0, 185.0), (47.0, 52.0, 34.0), 400)


def _lab(folder, tint, n=24):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = disc_image(20 + i % 3, size=(320, 240), centre=(160 + i, 120))
        a = np.asarray(im, np.float32) * np.asarray(tint, np.float32)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(folder / f"c{i:02}.png")
    return folder


def test_calibrate_matches_colours_when_the_model_carries_a_reference(tmp_path):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata={**CELL, "colour_reference": REFERENCE}))
    result = calibrate(base, [_lab(tmp_path / "lab", (0.8, 1.0, 1.0))])
    prep = result.metadata.preprocessing
    assert result.colour is not None and result.colour.images == 24
    assert prep.mean != base.info.preprocessing.mean and prep.std != base.info.preprocessing.std
    # the lab's own mean colour is shown to the network as the training labs' mean colour
    np.testing.assert_allclose(
        (np.asarray(result.colour.mean) - prep.mean) / prep.std, (np.asarray(REFERENCE["mean"]) - 127.5) / 127.5, atol=1e-6
    )
    site = Model(result.save(tmp_path / "site.onnx", base))
    assert site.info.preprocessing.mean == pytest.approx(prep.mean)
    assert site.info.site_adaptation["colour_match"]["lab"]["images"] == 24
    assert any(line.startswith("colours: matched") for line in result.summary_lines())


def test_calibrate_says_colours_are_not_matched_without_a_reference(tmp_path):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata=CELL))
    result = calibrate(base, [_lab(tmp_path / "lab", (1.0, 1.0, 1.0))])
    assert result.colour is None and result.metadata.preprocessing.mean == base.info.preprocessing.mean
    assert any("carries no colour reference" in line for line in result.summary_lines())


def test_a_site_model_made_from_a_matched_one_keeps_its_match_and_is_not_matched_again():
    """core.site.site_colour, the one definition calibrate and adapt share (issue 27 item 4)."""
    from hv_desktop.core.site.site_colour import already_matched, lab_colours, site_colours

    reference = ChannelStats((180.0, 150.0, 190.0), (40.0, 45.0, 30.0), 100)
    base = ModelMetadata.from_dict({"labels": ["a", "b"], "colour_reference": reference.to_dict()})
    warm = [np.full((8, 8, 3), (200, 160, 120), np.uint8), np.full((8, 8, 3), (120, 90, 60), np.uint8)]
    lab, note = lab_colours(warm, base.colour())
    assert lab is not None and lab.images == 2 and note.startswith("colours: matched")
    matched_meta = site_colours(base, base, lab)
    assert already_matched(matched_meta) and not already_matched(base)
    assert matched_meta.preprocessing.mean != base.preprocessing.mean
    # a site model made from it without new colours keeps the match on record and the same normalisation
    child = site_colours(matched_meta.with_updates(site_adaptation={"site": "b"}), matched_meta, None)
    assert child.site_adaptation["colour_match"] == matched_meta.site_adaptation["colour_match"]
    assert child.preprocessing.mean == matched_meta.preprocessing.mean
    assert lab_colours(warm, None) == (
        None,
        "colours: not matched (this model file carries no colour reference of its training labs)",
    )
    flat = [np.full((8, 8, 3), 128, np.uint8)] * 3
    assert lab_colours(flat, base.colour())[0] is None  # no spread to scale: refused, in words


def _previews(monkeypatch, flagged: dict[str, int], n: int = 24):
    """Each calibrate pass's flag count, by the model it checks (the real passes run; only their counts are set)."""
    import hv_desktop.core.site.calibrate as cal
    from hv_desktop.core.site.lab_preview import LabPreview

    real, real_base = cal.preview_site_model, cal.preview_model

    def fake(data, paths, say=None, cancel=None, span=(0.0, 1.0), threads=None, what="the site model"):
        real(data, paths, say, cancel, span, threads, what)
        return LabPreview(n, flagged[what], 0, {"neutrophil": n})

    def fake_base(model, paths, say=None, cancel=None, span=(0.0, 1.0), what="the model"):
        real_base(model, paths, say, cancel, span, what)
        return LabPreview(n, flagged[what], 0, {"neutrophil": n})

    monkeypatch.setattr(cal, "preview_site_model", fake)
    monkeypatch.setattr(cal, "preview_model", fake_base)


def test_colours_are_kept_as_they_are_where_matching_them_clearly_flags_more(tmp_path, monkeypatch):
    """At a lab that already looks like a training lab, matching its colours to the training labs' mean moved its cells
    away from that lab (2.0.0 at deepbionet: 12 -> 48 % flagged): calibrate keeps them as they are and says so."""
    base = Model(tiny_model(tmp_path / "base.onnx", metadata={**CELL, "colour_reference": REFERENCE}))
    _previews(monkeypatch, {"the site model": 12, "the square alone": 4, "the model as it is": 4})
    result = calibrate(base, [_lab(tmp_path / "lab", (0.8, 1.0, 1.0))])
    assert result.colour is None and result.metadata.preprocessing.mean == base.info.preprocessing.mean
    assert result.colour_note == "colours: not matched (matching them flagged 12 of 24 images, the square alone 4)"
    assert result.preview is not None and result.preview.flagged == 4
    site = Model(result.save(tmp_path / "site.onnx", base))
    assert "colour_match" not in site.info.site_adaptation
    assert result.warnings() == [] and "without calibrating, the model flags 4 of these 24 images" in result.summary_lines()
    # the choice is on record, so adapt (and every refresh after it) keeps it instead of matching anyway
    from hv_desktop.core.site.site_colour import colours_kept, site_colours

    assert colours_kept(site.info) == result.colour_note and colours_kept(base.info) is None
    child = site_colours(site.info.with_updates(site_adaptation={"site": "b"}), site.info, None)
    assert colours_kept(child) == result.colour_note and child.preprocessing.mean == base.info.preprocessing.mean


def test_a_difference_of_an_image_or_two_keeps_the_colours_matched(tmp_path, monkeypatch):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata={**CELL, "colour_reference": REFERENCE}))
    _previews(monkeypatch, {"the site model": 10, "the square alone": 9, "the model as it is": 9})
    result = calibrate(base, [_lab(tmp_path / "lab", (0.8, 1.0, 1.0))])
    assert result.colour is not None and result.warnings() == []


def _at_trained_size(folder, n=24):
    """Discs whose median radius of gyration makes the square the base model's own (scale ~1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        disc_image(35 + i % 3, size=(320, 240), centre=(140 + i, 120)).save(folder / f"c{i:02}.png")
    return folder


def test_a_site_model_that_clearly_flags_more_than_the_model_as_it_is_is_warned_of(tmp_path, monkeypatch):
    base = Model(tiny_model(tmp_path / "base.onnx", metadata={**CELL, "colour_reference": REFERENCE}))
    _previews(monkeypatch, {"the site model": 12, "the square alone": 12, "the model as it is": 3})
    result = calibrate(base, [_at_trained_size(tmp_path / "lab")])
    assert abs(result.scale - 1) < 0.1, result.scale
    assert result.warnings() and result.summary_lines()[0].startswith("WARNING: calibrating flags more")
    assert "without calibrating, the model flags 3 of these 24 images" in result.summary_lines()


def test_no_such_advice_where_calibrate_changes_the_size(tmp_path, monkeypatch):
    """At a lab seen at another size both models flag most cells; the base model's fewer flags there do not mean more
    cells read right (pbc/val at 2x: 75 % right unmatched, 100 % matched, 38 and 39 of 40 flagged)."""
    base = Model(tiny_model(tmp_path / "base.onnx", metadata={**CELL, "colour_reference": REFERENCE}))
    _previews(monkeypatch, {"the site model": 12, "the square alone": 12, "the model as it is": 3})
    result = calibrate(base, [_lab(tmp_path / "lab", (1.0, 1.0, 1.0))])
    assert abs(result.scale - 1) >= 0.1 and result.warnings() == []
    assert "without calibrating, the model flags 3 of these 24 images" in result.summary_lines()


def test_a_site_model_calibrated_by_app_1_10_0_keeps_its_colours_too():
    """1.10.0's calibrate kept colours without a record; its files are calibrated ones (their kind) with a colour
    reference and no match, and adapt keeps their colours as well. A site model made by adapt is no such file."""
    from hv_desktop.core.site.site_colour import colours_kept

    def meta(site):
        return ModelMetadata.from_dict({"labels": ["a", "b"], "colour_reference": REFERENCE, "site_adaptation": site})

    legacy = meta({"kind": "magnification from unlabelled images", "site": "Ward 3"})
    assert colours_kept(legacy) == "colours: not matched by calibrate"
    # where calibrate could not match them (1.10.1 says so), adapt tries on the reviewed cells
    assert colours_kept(meta({"kind": "magnification from unlabelled images", "colour_unmatched": "too far"})) is None
    assert colours_kept(meta({"kind": "magnification from unlabelled images", "colour_match": {"lab": {}}})) is None
    assert colours_kept(meta({"site": "Ward 3", "magnification": 1.0})) is None


def test_a_match_calibrate_could_not_make_is_recorded_as_such_and_adapt_may_still_try(tmp_path):
    """A refusal (the lab's spread too far from the reference) is not calibrate's choice to keep the colours: the file
    says which, so adapt does not read it as a choice (a fresh-eyes review found the two confused)."""
    from hv_desktop.core.site.site_colour import colours_kept

    narrow = {"mean": [200.0, 178.0, 185.0], "std": [1.0, 1.0, 1.0], "images": 400}
    base = Model(tiny_model(tmp_path / "base.onnx", metadata={**CELL, "colour_reference": narrow}))
    result = calibrate(base, [_lab(tmp_path / "lab", (0.8, 1.0, 1.0))])
    assert result.colour is None and "too far from the training labs'" in result.colour_note
    site = Model(result.save(tmp_path / "site.onnx", base))
    assert site.info.site_adaptation["colour_unmatched"] == result.colour_note
    assert "colour_kept" not in site.info.site_adaptation and colours_kept(site.info) is None
