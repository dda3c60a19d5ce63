"""Site adaptation on real images: `hematovision adapt` end to end, the review graph it writes, and how it counts
the reviewed cells (pbc/train and pbc/val from ../shared)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile
from hv_desktop.core.site import adapt as A
from hv_desktop.core.site import lab_images as LI
from hv_desktop.core.site.adapt_graph import Probe
from tests.support.cli import run_hematovision as run

CLASSES = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def _lab_look(im: Image.Image) -> Image.Image:
    """Another lab: a warm (yellow) cast and 1.5x the magnification."""
    w, h = im.size
    cw, ch = round(w / 1.5), round(h / 1.5)
    im = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((w, h))
    a = np.asarray(im, np.float32) * np.asarray([1.0, 0.95, 0.72], np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def lab(shared_data, tmp_path_factory):
    """A synthetic lab made from PBC: 10 reviewed cells per class (pbc/train) and 15 more per class to score
    (pbc/val), and 3 basophils the reviewer labelled as such."""
    root = tmp_path_factory.mktemp("lab")
    rows, score = [], []
    for c in CLASSES:
        train = sorted((shared_data / "pbc" / "train" / c).iterdir())[::23][:10]
        val = sorted((shared_data / "pbc" / "val" / c).iterdir())[::13][:15]
        for split, files in (("reviewed", train), ("score", val)):
            (root / split / c).mkdir(parents=True)
            for f in files:
                out = root / split / c / (f.stem + ".png")
                _lab_look(Image.open(f).convert("RGB")).save(out)
                if split == "reviewed":
                    rows.append([f"{split}/{c}/{out.name}", c])
                else:
                    score.append((out, c))
    for f in sorted((shared_data / "pbc" / "other" / "basophil").iterdir())[:3]:
        out = root / "reviewed" / f"baso_{f.stem}.png"
        _lab_look(Image.open(f).convert("RGB")).save(out)
        rows.append([f"reviewed/{out.name}", "basophil"])
    rows.append(["reviewed/missing.png", "monocyte"])
    (root / "reviewed" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rows.append(["reviewed/broken.png", "lymphocyte"])
    with open(root / "labelled.csv", "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "file_name", "predicted_label", "reviewer_label"])
        w.writerows([[p, Path(p).name, "", lab] for p, lab in rows])
    return root, score


def _accuracy_and_flags(model: Model, score):
    res = list(classify_paths([p for p, _ in score], model))
    acc = np.mean([r.label == c for r, (_, c) in zip(res, score, strict=True)])
    return acc, np.mean([r.needs_review for r in res])


@pytest.mark.realdata
@pytest.mark.slow
def test_adapt_cli_end_to_end(lab, shipped_model, tmp_path):
    root, score = lab
    before_sha = hashlib.sha256(shipped_model.read_bytes()).hexdigest()
    out = tmp_path / "site.onnx"
    r = run("adapt", root / "labelled.csv", "--out", out, "--site-name", "Test Lab", "-q")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "eosinophil 10" in r.stdout and "basophil 3" in r.stdout
    assert "skipped 2" in r.stdout
    assert hashlib.sha256(shipped_model.read_bytes()).hexdigest() == before_sha  # never overwritten

    site = Model(out)  # the normal loader
    meta = site.info.site_adaptation
    assert meta["site"] == "Test Lab" and meta["base_model"]["version"] == Model(shipped_model).info.version
    assert meta["cells_per_class"] == {c: 10 for c in CLASSES}
    assert len(meta["cells_sha256"]) == 43  # 40 cells and 3 basophils, each by content
    assert meta["estimate_after_cross_validated"]["accuracy"] >= 0.9
    assert site.info.preprocessing.crop_fraction > 0.75  # a higher magnification: a wider square
    assert "Test Lab" in site.info.name

    base_acc, base_flags = _accuracy_and_flags(Model(shipped_model), score)
    acc, flags = _accuracy_and_flags(site, score)
    assert acc >= 0.9 and acc >= base_acc - 0.02
    # 40 reviewed cells cannot verify unflagged results at 97 % (issue 27: even 40 of 40 right bounds at 91 %), so
    # the site model re-classifies but leaves every cell flagged, and says what to review
    assert not meta["unflag_check"]["verified"] and site.info.review_threshold == 1.0
    assert flags == 1.0 >= base_flags and "every cell stays flagged" in r.stdout


@pytest.mark.realdata
@pytest.mark.slow
def test_written_review_graph_matches_the_numpy_mirror(lab, shipped_model, tmp_path):
    """The lab centres written into the graph give exactly the distances, and typicality, that adapt() used."""
    from hv_desktop.core.imaging.preprocess import normalise, resize_for_model

    root, score = lab
    base = Model(shipped_model)
    cells = [
        c
        for c in LI.read_labelled_csv([root / "labelled.csv"])
        if c.label in CLASSES and c.path.is_file() and c.path.name != "broken.png"
    ]
    site = Model(A.adapt(base, cells, site_name="x").save(tmp_path / "s.onnx", base))
    prep = site.info.preprocessing

    def tensor(paths):
        ims = [Image.open(p).convert("RGB") for p in paths]
        return normalise(np.stack([resize_for_model(i, site.input_size, prep) for i in ims]), prep)

    probe_base, probe_site = Probe(base), Probe(site)
    rv = probe_base.review
    assert rv is not None
    fl = probe_base.run(tensor([c.path for c in cells]))
    y = np.asarray([CLASSES.index(c.label) for c in cells])
    x = tensor([p for p, _ in score[::6]])
    fb, fs = probe_base.run(x), probe_site.run(x)
    dists = []
    for i in range(rv.layers):
        lf = fl[f"review/l{i}_f"]
        centres = np.stack([lf[y == c].mean(0) for c in range(4)])
        want = np.minimum(fb[f"review/l{i}_dist"], rv.lab_distance(i, fb[f"review/l{i}_f"], centres))
        np.testing.assert_allclose(fs[f"review/l{i}_dist"], want, rtol=2e-3, atol=1e-3)
        dists.append(fs[f"review/l{i}_dist"])
    t = float(OnnxFile(site.path.read_bytes()).initializer("review/temperature"))
    assert t == pytest.approx(site.info.temperature, rel=1e-5)
    np.testing.assert_allclose(site.assess(x)[1], rv.typicality(fs["logits"], t, dists), atol=1e-4)


def test_a_class_with_few_cells_keeps_the_base_head(shared_data, shipped_model):
    cells = []
    for c, n in zip(CLASSES, (6, 6, 2, 6), strict=True):
        files = sorted((shared_data / "pbc" / "train" / c).iterdir())[:n]
        cells += [LI.LabelledCell(f, c) for f in files]
    base = Model(shipped_model)
    result = A.adapt(base, cells, site_name="few")
    assert result.kept_base == ["monocyte"]
    assert any("base weights kept: monocyte" in line for line in result.summary_lines())
    site = OnnxFile(result.model_bytes)
    head = base.info.head
    w0 = OnnxFile(base.path.read_bytes()).initializer(head["weight"])
    np.testing.assert_array_equal(site.initializer(head["weight"])[:, 2], w0[:, 2])


def test_duplicate_pictures_count_once(shared_data, shipped_model, tmp_path):
    cells = []
    for c in CLASSES:
        for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:5]:
            cells.append(LI.LabelledCell(f, c))
            copy = tmp_path / f"copy_{f.name}"
            copy.write_bytes(f.read_bytes())
            cells.append(LI.LabelledCell(copy, c))
    result = A.adapt(Model(shipped_model), cells)
    assert result.counts == {c: 5 for c in CLASSES}
    assert result.duplicates == {c: 5 for c in CLASSES}  # said, not dropped silently (issue 27: 3 shown, 2 used)
    lines = result.summary_lines()
    assert any(line.startswith("left out, the same picture") and "eosinophil 5" in line for line in lines)
    assert any("between" in line and "with 20 cells" in line for line in lines)  # the estimate with its uncertainty


def test_huge_csv_reads_a_bounded_class_balanced_subset(shared_data, shipped_model, tmp_path):
    real = [LI.LabelledCell(f, c) for c in CLASSES for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:6]]
    ghosts = [LI.LabelledCell(tmp_path / f"gone_{i}.png", "neutrophil") for i in range(5000)]
    result = A.adapt(Model(shipped_model), ghosts + real)
    assert len(result.skipped) + sum(result.counts.values()) <= LI.MAX_CELLS  # never 5,024 reads
    assert [result.counts[c] for c in CLASSES[:3]] == [6, 6, 6]  # the rare classes are all kept


def test_the_ruler_measures_the_magnification_instead_of_cross_validating(lab, shipped_model):
    root, _ = lab
    cells = [c for c in LI.read_labelled_csv([root / "labelled.csv"]) if c.label in CLASSES and c.path.exists()]
    base = Model(shipped_model)
    ruled = A.adapt(base, cells, site_name="ruler", magnification="ruler")
    assert ruled.scale_scores == {}  # no magnification was cross-validated
    assert any("measured from the nuclei" in line for line in ruled.summary_lines())
    # the lab is PBC at 1.5x; PBC itself measures x1.08 against the training labs (calibrate on pbc/train)
    assert 1.5 * 1.08 * 0.85 < ruled.scale < 1.5 * 1.08 * 1.15
    assert ruled.metadata.preprocessing.crop_fraction == pytest.approx(0.75 * ruled.scale, rel=1e-6)


@pytest.mark.realdata
@pytest.mark.slow
def test_adapt_matches_the_labs_colours_before_it_fits_and_never_twice(lab, shipped_model, tmp_path):
    """Issue 27 item 4 (docs/research/rules/adapt_on_calibrate.txt): the head is fitted on the lab's colours matched to
    the training labs', as calibrate matches them; a base whose colours were matched already keeps them."""
    from hv_desktop.core.site.calibrate import calibrate

    root, _ = lab
    cells = [c for c in LI.read_labelled_csv([root / "labelled.csv"]) if c.label in CLASSES and c.path.exists()]
    base = Model(shipped_model)
    site = A.adapt(base, cells, site_name="warm")
    match = site.metadata.site_adaptation["colour_match"]
    assert match["lab"]["images"] == 40  # every readable reviewed cell (broken.png is skipped)
    assert match["lab"]["mean"][2] < match["reference"]["mean"][2] - 10  # the warm cast: less blue than the training labs
    assert site.metadata.preprocessing.mean != base.info.preprocessing.mean
    assert any(line.startswith("colours: matched to the model's training labs from 40 images") for line in site.summary_lines())

    calibrated = calibrate(base, [root / "reviewed"], site_name="warm")
    assert calibrated.colour is not None
    cal = Model(calibrated.save(tmp_path / "cal.onnx", base))
    on_cal = A.adapt(cal, cells, site_name="warm")
    assert on_cal.metadata.preprocessing.mean == cal.info.preprocessing.mean  # not matched a second time
    assert on_cal.metadata.site_adaptation["colour_match"] == cal.info.site_adaptation["colour_match"]
    assert any(line.startswith("colours: kept as the model it was made from") for line in on_cal.summary_lines())
    # the calibrated square already holds the lab's magnification: adapt measures about x1 against it, not x1.6 again
    assert on_cal.scale == pytest.approx(1.0, abs=0.1)
    assert on_cal.metadata.site_adaptation["trained_crop_fraction"] == base.info.preprocessing.crop_fraction


def test_a_fit_that_reads_the_reviewed_cells_worse_than_no_fit_is_not_used(shared_data, shipped_model, monkeypatch):
    """rules/adapt_keep_head.txt: at BCCD a two-lab model's fitted head read fewer cells right than its own classes with
    the lab's colours matched. Made to happen here with a fit that swaps two classes: the site model keeps the
    model's own classes, and its report says why."""
    from hv_desktop.core.site import adapt_fit

    real = adapt_fit.fit_head

    def swapping(x, y, w0, b0, ridge, frozen=(), iterations=300):
        w, b = real(x, y, w0, b0, ridge, frozen, iterations)
        if len(frozen) == w0.shape[1]:
            return w, b  # nothing is fitted: the base head itself
        perm = np.array([1, 0, 2, 3])  # eosinophil <-> lymphocyte
        return w[:, perm], b[perm]

    monkeypatch.setattr(adapt_fit, "fit_head", swapping)
    monkeypatch.setattr(A, "fit_head", swapping)
    cells = []
    for c in CLASSES:
        cells += [LI.LabelledCell(f, c) for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:8]]
    base = Model(shipped_model)
    result = A.adapt(base, cells, site_name="swapped")
    assert result.kept_classes is not None
    fitted, matched = result.kept_classes
    assert fitted < 0.8 <= matched  # the swapped fit is wrong on the two classes; the shipped model is not
    assert result.after.accuracy == pytest.approx(matched)  # the estimate is of the model the lab gets
    head = base.info.head
    w0 = OnnxFile(base.path.read_bytes()).initializer(head["weight"])
    np.testing.assert_array_equal(OnnxFile(result.model_bytes).initializer(head["weight"]), w0)
    assert any("keeps the original model's cell identification" in line for line in result.summary_lines())
    assert not any("base weights kept" in line for line in result.summary_lines())


def test_enough_reviewed_cells_choose_a_threshold_that_leaves_verified_cells_unflagged(shared_data, shipped_model, tmp_path):
    """Issue 27 item 1, end to end: with enough reviewed cells (here the model's own lab, where the base threshold
    already holds) the threshold the reviewed cells verify is the one written into the file the lab loads, and that
    file leaves cells unflagged. The choice of a stricter threshold is tested in tests/unit/test_unflag.py."""
    cells = [LI.LabelledCell(f, c) for c in CLASSES for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[::7][:60]]
    base = Model(shipped_model)
    result = A.adapt(base, cells, site_name="many")
    check = result.unflag
    assert check is not None and check.verified, check
    assert check.unflagged >= 125 and check.lower >= 0.97 and check.threshold >= base.info.review_threshold
    assert result.after.flagged < 1.0 and check.message in result.summary_lines()
    out = tmp_path / "site.onnx"
    out.write_bytes(result.model_bytes)
    site = Model(out)
    assert site.info.review_threshold == pytest.approx(check.threshold)
    val = [f for c in CLASSES for f in sorted((shared_data / "pbc" / "val" / c).iterdir())[:10]]
    rows = [r for r in classify_paths(val, site) if r.error is None]
    assert len(rows) == 40 and 0 < sum(not r.needs_review for r in rows) < 40


def test_a_raised_threshold_is_the_one_written_into_the_site_model(shared_data, shipped_model, tmp_path, monkeypatch):
    """The file the lab loads carries the threshold the reviewed cells verified, and the estimate is made at it."""
    from hv_desktop.core.site import unflag

    raised: list[float] = []

    def choosing(y, pred, values, threshold, labels):
        check = unflag.unflag_check(y, pred, values, threshold, labels)
        t = float(np.quantile(values, 0.5))  # as if only the more typical half were verified
        raised.append(t)
        return unflag.UnflagCheck(True, int((values >= t).sum()), int((values >= t).sum()), 0.98, check.message, t)

    monkeypatch.setattr(A, "unflag_check", choosing)
    cells = [LI.LabelledCell(f, c) for c in CLASSES for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:10]]
    base = Model(shipped_model)
    result = A.adapt(base, cells, site_name="raised")
    assert raised and raised[0] > base.info.review_threshold
    out = tmp_path / "site.onnx"
    out.write_bytes(result.model_bytes)
    site = Model(out)
    assert site.info.review_threshold == pytest.approx(raised[0])
    assert site.info.site_adaptation["base_review_threshold"] == pytest.approx(base.info.review_threshold)
    assert result.after.flagged == pytest.approx(0.5, abs=0.05)  # the estimate at the raised threshold


def test_adapting_a_site_model_again_chooses_from_the_shipped_models_rule(shared_data, shipped_model, tmp_path):
    """A site model that flags every cell (too few reviews) is what the app adapts again as reviews accumulate: its
    FLAG_ALL must not become the floor, or no later site model could ever leave a cell unflagged."""
    from hv_desktop.core.inference.metadata import FLAG_ALL, METADATA_KEY

    cells = [LI.LabelledCell(f, c) for c in CLASSES for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:10]]
    base = Model(shipped_model)
    first = A.adapt(base, cells, site_name="first")
    assert first.metadata.review_threshold == FLAG_ALL  # 40 cells verify nothing
    path = tmp_path / "first.onnx"
    path.write_bytes(first.model_bytes)
    again = A.adapt(Model(path), cells, site_name="again")
    assert again.metadata.site_adaptation["base_review_threshold"] == pytest.approx(base.info.review_threshold)
    assert again.unflag is not None and again.unflag.threshold == pytest.approx(base.info.review_threshold)  # the floor
    # a site model from before the floor was stored, flagging every cell, says what to do instead of never unflagging
    old = OnnxFile(first.model_bytes)
    meta = first.metadata.with_updates(
        site_adaptation={k: v for k, v in first.metadata.site_adaptation.items() if k != "base_review_threshold"}
    )
    old.set_metadata(METADATA_KEY, meta.to_json())
    older = tmp_path / "older.onnx"
    older.write_bytes(old.to_bytes())
    with pytest.raises(A.AdaptError, match="Use Shipped Model"):
        A.adapt(Model(older), cells, site_name="older")
