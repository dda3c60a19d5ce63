from __future__ import annotations

import threading

import pytest
from PIL import Image

from hv_desktop.core.inference.batch import classify_paths, classify_stream
from hv_desktop.core.inference.model import Model
from tests.support.badfiles import make_bad_files, make_odd_good_files


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return Model(tiny_model_path)


def test_colours_are_classified_in_order(tmp_path, model):
    colours = {"a_red.png": (250, 5, 5), "b_blue.png": (5, 5, 250), "c_green.png": (5, 250, 5)}
    for name, c in colours.items():
        Image.new("RGB", (40, 30), c).save(tmp_path / name)
    results = list(classify_paths([tmp_path], model))
    assert [r.path.name for r in results] == sorted(colours)
    assert [r.label for r in results] == ["eosinophil", "lymphocyte", "monocyte"]
    assert all(r.ok and r.sha256 and len(r.sha256) == 64 and r.timestamp for r in results)
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-4 for r in results)


def test_one_row_per_file_with_bad_files_mixed_in(tmp_path, model):
    bad = make_bad_files(tmp_path / "bad")
    good = make_odd_good_files(tmp_path / "good")
    results = list(classify_paths([tmp_path], model, batch_size=4))
    assert len(results) == len(bad) + len(good)
    by_name = {r.path.name: r for r in results}
    assert len(bad) >= 15
    for name in bad:
        assert by_name[name].error and not by_name[name].label, name
    for name in good:
        assert by_name[name].ok and by_name[name].label, (name, by_name[name].error)


def test_needs_review_follows_threshold(tmp_path, model):
    Image.new("RGB", (8, 8), (128, 128, 128)).save(tmp_path / "grey.png")  # near-uniform scores
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.png")
    res = {r.path.name: r for r in classify_paths([tmp_path], model)}
    assert res["grey.png"].needs_review and res["grey.png"].confidence < 0.5
    assert not res["red.png"].needs_review


def test_cancel_stops_between_images(tmp_path, model):
    for i in range(200):
        Image.new("RGB", (16, 16), (i, 0, 0)).save(tmp_path / f"{i:03d}.png")
    cancel = threading.Event()
    seen = []
    for r in classify_paths([tmp_path], model, batch_size=4, cancel=cancel):
        seen.append(r)
        if len(seen) == 10:
            cancel.set()
    assert 10 <= len(seen) < 14  # at most the rest of the batch in hand


def test_progress_counts_every_result(tmp_path, model):
    for i in range(7):
        Image.new("RGB", (16, 16)).save(tmp_path / f"{i}.png")
    (tmp_path / "x.jpg").write_bytes(b"")
    calls = []
    results = list(classify_paths([tmp_path], model, progress=calls.append))
    assert calls == list(range(1, 9)) and len(results) == 8


def test_stream_is_lazy(model, tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            i += 1
            yield tmp_path / "a.png"

    gen = classify_stream(endless(), model, batch_size=4, decode_workers=1)
    first = [next(gen) for _ in range(3)]
    assert len(first) == 3 and len(pulled) < 50  # bounded lookahead, not the whole (infinite) input
    gen.close()


def test_file_deleted_after_scan_is_an_error_row(tmp_path, model):
    p = tmp_path / "gone.png"
    Image.new("RGB", (8, 8)).save(p)
    items = [p]
    p.unlink()
    (r,) = list(classify_stream(items, model))
    assert r.error and "not found" in r.error


@pytest.mark.parametrize("workers", [1, 3])
def test_batched_results_equal_one_image_at_a_time(tmp_path, model, workers):
    """Decoders write straight into reused batch buffers: no batch may see another's pixels,
    whatever order the decoders finish in."""
    import numpy as np

    rng = np.random.default_rng(3)
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "05b_broken.png").write_bytes(b"not a png")  # a failure inside a batch shortens it
    alone = {r.path.name: r for r in classify_paths([tmp_path], model, batch_size=1)}
    batched = list(classify_paths([tmp_path], model, batch_size=3, decode_workers=workers))
    assert len(batched) == len(alone) == 12
    for r in batched:
        a = alone[r.path.name]
        assert r.label == a.label and r.error == a.error
        for k, v in r.probabilities.items():
            assert abs(v - a.probabilities[k]) < 1e-5
