"""Site adaptation: the protobuf rewriter, the head fit, and `hematovision adapt` end to end on real images."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from hv_desktop.core import adapt as A
from hv_desktop.core.batch import classify_paths
from hv_desktop.core.model import Model, ModelError
from hv_desktop.core.onnx_proto import OnnxFile

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def run(*args):
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "hv_desktop", *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=e, timeout=300
    )


# ------------------------------------------------------------------ the protobuf rewriter


def test_onnx_file_round_trips_byte_for_byte_and_edits_load(shipped_model):
    data = shipped_model.read_bytes()
    f = OnnxFile(data)
    assert f.to_bytes() == data
    head = Model(shipped_model).info.head
    w = f.initializer(head["weight"])
    assert w.shape == (1280, 4) and w.dtype == np.float32
    f.set_initializer(head["weight"], np.zeros_like(w))
    f.add_output("review/l0_f")
    sess = ort.InferenceSession(f.to_bytes(), providers=["CPUExecutionProvider"])
    outs = {o.name for o in sess.get_outputs()}
    assert {"logits", "embedding", "typicality", "review/l0_f"} <= outs
    x = np.zeros((1, 224, 224, 3), np.float32)
    logits = sess.run(["logits"], {"image": x})[0]
    bias = f.initializer(head["bias"])
    np.testing.assert_allclose(logits[0], bias, atol=1e-6)  # zero weights: the logits are the bias alone


def test_shipped_model_states_embedding_and_head(shipped_model):
    m = Model(shipped_model)
    assert m.info.embedding_output == "embedding"
    names = {o.name for o in m.session.get_outputs()}
    assert "embedding" in names


# ------------------------------------------------------------------ the fit


def _blobs(n_per: int, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (4, d))
    x = np.concatenate([means[c] + rng.normal(0, 1, (n_per, d)) for c in range(4)])
    y = np.repeat(np.arange(4), n_per)
    return x, y


def test_fit_head_learns_and_pulls_toward_base():
    x, y = _blobs(10)
    w0, b0 = np.zeros((16, 4)), np.zeros(4)
    w, b = A.fit_head(x, y, w0, b0, ridge=0.01)
    assert np.mean((x @ w + b).argmax(1) == y) == 1.0
    xt, yt = _blobs(50, seed=0)
    assert np.mean((xt @ w + b).argmax(1) == yt) > 0.9
    # a huge pull leaves the head where it was
    w_big, b_big = A.fit_head(x, y, w0 + 1.0, b0, ridge=1e6)
    assert np.abs(w_big - (w0 + 1.0)).max() < 1e-3


def test_frozen_class_keeps_base_weights():
    x, y = _blobs(10)
    rng = np.random.default_rng(1)
    w0, b0 = rng.normal(size=(16, 4)), rng.normal(size=4)
    w, b = A.fit_head(x, y, w0, b0, ridge=0.1, frozen=[2])
    np.testing.assert_array_equal(w[:, 2], w0[:, 2])
    assert b[2] == b0[2]
    assert not np.allclose(w[:, 0], w0[:, 0])


# ------------------------------------------------------------------ end to end on real images


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
    acc = np.mean([r.label == c for r, (_, c) in zip(res, score)])
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
    assert flags <= 0.4 and flags < base_flags


@pytest.mark.realdata
@pytest.mark.slow
def test_written_review_graph_matches_the_numpy_mirror(lab, shipped_model, tmp_path):
    """The lab centres written into the graph give exactly the distances, and typicality, that adapt() used."""
    from hv_desktop.core.preprocess import normalise, resize_for_model

    root, score = lab
    base = Model(shipped_model)
    cells = [
        c
        for c in A.read_labelled_csv([root / "labelled.csv"])
        if c.label in CLASSES and c.path.is_file() and c.path.name != "broken.png"
    ]
    site = Model(A.adapt(base, cells, site_name="x").save(tmp_path / "s.onnx", base))
    prep = site.info.preprocessing

    def tensor(paths):
        ims = [Image.open(p).convert("RGB") for p in paths]
        return normalise(np.stack([resize_for_model(i, site.input_size, prep) for i in ims]), prep)

    probe_base, probe_site = A._Probe(base), A._Probe(site)
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


def test_bad_inputs_are_one_line(tmp_path, tiny_model_path, shipped_model):
    Image.new("RGB", (40, 40), (200, 100, 200)).save(tmp_path / "a.png")
    no_cols = tmp_path / "nocols.csv"
    no_cols.write_text("file,label\na.png,monocyte\n")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x00garbage\x81")
    few = tmp_path / "few.csv"
    few.write_text("path,reviewer_label\n" + "a.png,monocyte\n" * 3)
    none_known = tmp_path / "other.csv"
    none_known.write_text("path,reviewer_label\na.png,smudge cell\n")
    cases = [
        (("adapt", no_cols, "--out", tmp_path / "o.onnx"), "needs 'path' and 'reviewer_label'"),
        (("adapt", binary, "--out", tmp_path / "o.onnx"), "not a CSV"),
        (("adapt", tmp_path / "absent.csv", "--out", tmp_path / "o.onnx"), "CSV not found"),
        (("adapt", few, "--out", tmp_path / "o.onnx"), "too few reviewed cells"),
        (("adapt", none_known, "--out", tmp_path / "o.onnx"), "none of the 1 reviewed cells"),
        (("adapt", few, "--out", few), "one of the inputs"),
        (("adapt", few, "--out", shipped_model, "--model", shipped_model), "one of the inputs"),
        (("--model", tiny_model_path, "adapt", few, "--out", tmp_path / "o.onnx"), "cannot be adapted"),
    ]
    for args, words in cases:
        r = run(*args, "-q")
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert words in r.stderr, (args, r.stderr)
    assert not (tmp_path / "o.onnx").exists()


def test_a_class_with_few_cells_keeps_the_base_head(shared_data, shipped_model):
    cells = []
    for c, n in zip(CLASSES, (6, 6, 2, 6)):
        files = sorted((shared_data / "pbc" / "train" / c).iterdir())[:n]
        cells += [A.LabelledCell(f, c) for f in files]
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
            cells.append(A.LabelledCell(f, c))
            copy = tmp_path / f"copy_{f.name}"
            copy.write_bytes(f.read_bytes())
            cells.append(A.LabelledCell(copy, c))
    result = A.adapt(Model(shipped_model), cells)
    assert result.counts == {c: 5 for c in CLASSES}


def test_wider_square_is_padded_with_background():
    from hv_desktop.core.preprocess import Preprocessing, model_box, resize_for_model

    im = Image.new("RGB", (100, 80), (230, 220, 210))
    im.paste((120, 40, 160), (40, 30, 60, 50))  # a purple "nucleus" in the middle
    prep = Preprocessing(width=32, height=32, crop="cell", crop_fraction=1.5)
    left, top, right, bottom = model_box(im, prep)
    assert right - left == 120 and left < 0 < right and top < 0  # wider than the image, centred on the cell
    arr = resize_for_model(im, (32, 32), prep)
    assert tuple(arr[0, 0]) == (230, 220, 210)  # padding is the background, not black


def test_metadata_bounds_for_crop_fraction(tmp_path):
    from onnx_factory import tiny_model

    ok = tiny_model(
        tmp_path / "ok.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 1.6}}
    )
    assert Model(ok).info.preprocessing.crop_fraction == 1.6
    bad = tiny_model(
        tmp_path / "bad.onnx", metadata={"preprocessing": {"width": 32, "height": 32, "crop": "cell", "crop_fraction": 2.5}}
    )
    with pytest.raises(ModelError, match="crop_fraction"):
        Model(bad)


def test_huge_csv_reads_a_bounded_class_balanced_subset(shared_data, shipped_model, tmp_path):
    real = [A.LabelledCell(f, c) for c in CLASSES for f in sorted((shared_data / "pbc" / "train" / c).iterdir())[:6]]
    ghosts = [A.LabelledCell(tmp_path / f"gone_{i}.png", "neutrophil") for i in range(5000)]
    result = A.adapt(Model(shipped_model), ghosts + real)
    assert len(result.skipped) + sum(result.counts.values()) <= A.MAX_CELLS  # never 5,024 reads
    assert [result.counts[c] for c in CLASSES[:3]] == [6, 6, 6]  # the rare classes are all kept


@pytest.mark.skipif(os.name != "posix", reason="FIFOs")
def test_fifo_csv_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    with pytest.raises(A.AdaptError, match="cannot be read"):
        A.read_labelled_csv([tmp_path / "labels.csv"])
