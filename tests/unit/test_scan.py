from __future__ import annotations

import importlib
import os

from PIL import Image

scan_mod = importlib.import_module("hv_desktop.core.imaging.scan")
from hv_desktop.core.imaging.scan import natural_key, scan


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, "PNG")
    return path


def test_natural_order_and_hidden_files(tmp_path):
    for name in ["cell10.png", "cell2.png", "Cell1.png", ".hidden.png"]:
        _img(tmp_path / name)
    _img(tmp_path / ".git" / "inside.png")
    (tmp_path / "notes.txt").write_text("not an image")
    names = [i.path.name for i in scan([tmp_path])]
    assert names == ["Cell1.png", "cell2.png", "cell10.png"]


def test_recursive_depth_first_and_stable(tmp_path):
    _img(tmp_path / "b" / "x.png")
    _img(tmp_path / "a" / "y.png")
    _img(tmp_path / "top.png")
    first = [i.path.relative_to(tmp_path).as_posix() for i in scan([tmp_path])]
    assert first == ["top.png", "a/y.png", "b/x.png"]
    assert first == [i.path.relative_to(tmp_path).as_posix() for i in scan([tmp_path])]


def test_content_sniffing_and_misnamed_files(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "capture_0001.dat", "JPEG")  # image without image extension
    (tmp_path / "fake.jpg").write_text("<html>")  # image extension, not an image: still listed
    (tmp_path / "readme.txt").write_text("text")
    names = sorted(i.path.name for i in scan([tmp_path]))
    assert names == ["capture_0001.dat", "fake.jpg"]


def test_symlink_loop_is_walked_once(tmp_path):
    _img(tmp_path / "a" / "one.png")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    items = list(scan([tmp_path]))
    assert [i.path.name for i in items] == ["one.png"]


def test_unreadable_folder_is_reported_not_fatal(tmp_path, monkeypatch):
    _img(tmp_path / "ok" / "fine.png")
    _img(tmp_path / "locked" / "secret.png")
    real = os.scandir

    def fake_scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(scan_mod.os, "scandir", fake_scandir)
    items = list(scan([tmp_path]))
    errors = [i for i in items if i.error]
    assert [i.path.name for i in items if not i.error] == ["fine.png"]
    assert len(errors) == 1 and "permission denied" in errors[0].error


def test_explicit_files_and_missing_paths(tmp_path):
    f = _img(tmp_path / "x.weird")
    items = list(scan([f, tmp_path / "nope.png"]))
    assert items[0].path == f and items[0].error is None
    assert items[1].error == "file or folder not found"


def test_natural_key_numbers():
    names = ["img_100", "img_9", "img_10", "IMG_1"]
    assert sorted(names, key=natural_key) == ["IMG_1", "img_9", "img_10", "img_100"]
