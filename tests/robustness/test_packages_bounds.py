"""Consultation packages, second hostile review (issue 30, items 5 and 6): every cell keeps its own identity (a cell
ID, never its bytes or its display name) through request, reply and merge; unpacking is bounded before anything is
written, goes through a temporary folder beside the destination and leaves nothing behind when it fails."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.result import Result, decode, encode
from hv_desktop.core.io.package import PackageError, read_package, write_package
from hv_desktop.core.io.reply import disagreements


def _raw_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip whose members are compressed once per distinct content (a 1.5 GB expansion is built in milliseconds)."""
    done: dict[int, tuple[bytes, int]] = {}
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w") as z:
        for name, data in members.items():
            if id(data) not in done:
                c = zlib.compressobj(9, zlib.DEFLATED, -15)
                done[id(data)] = (c.compress(data) + c.flush(), zlib.crc32(data))
            packed, crc = done[id(data)]
            info = zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.CRC, info.compress_size, info.file_size = crc, len(packed), len(data)
            info.header_offset = fh.tell()
            fh.write(info.FileHeader())
            fh.write(packed)
            z.filelist.append(info)
            z.NameToInfo[name] = info
        z.start_dir = fh.tell()
        z._didModify = True
    return path


def _package(path: Path, entries: list[dict], images: dict[str, bytes], kind: str = "request", pid: str = "p1") -> Path:
    """A package as another tool (or an attacker) might write it: a case file, images and a true manifest."""
    case = {"format": "hematovision-consultation", "version": 1, "kind": kind, "package_id": pid, "case": {}}
    members = {"case.json": json.dumps({**case, "results": entries}).encode(), **images}
    digests: dict[int, str] = {}
    for data in members.values():
        digests.setdefault(id(data), hashlib.sha256(data).hexdigest())
    manifest = "".join(f"{digests[id(d)]}  {n}\n" for n, d in sorted(members.items())).encode()
    return _raw_zip(path, {**members, "MANIFEST.sha256": manifest})


def _entry(name: str, member: str | None, data: bytes | None, **more) -> dict:
    sha = hashlib.sha256(data).hexdigest() if data is not None else None
    return {"file_name": name, "member": member, "label": "neutrophil", "confidence": 0.9, "sha256": sha, **more}


def _png(colour) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(out, "PNG")
    return out.getvalue()


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ------------------------------------------------------------------ item 5: cells keep their identity
@pytest.fixture
def twins(tmp_path, tiny_model_path):
    """A lab's case with two byte-identical images (TEST_SIMPLE holds two such pairs), reviewed differently."""
    folder = tmp_path / "smear"
    folder.mkdir()
    Image.new("RGB", (24, 24), (250, 5, 5)).save(folder / "a.png")
    shutil.copyfile(folder / "a.png", folder / "b.png")
    Image.new("RGB", (24, 24), (5, 5, 250)).save(folder / "c.png")
    model = Model(tiny_model_path)
    results = {r.path.name: r for r in classify_paths([folder], model)}
    assert results["a.png"].sha256 == results["b.png"].sha256
    results["a.png"].reviewer_label = "neutrophil"
    results["b.png"].reviewer_label = "eosinophil"
    return model, [results[n] for n in ("a.png", "b.png", "c.png")]


def test_identical_files_keep_their_own_sender_review_and_reply(tmp_path, twins):
    model, mine = twins
    assert len({r.cell_id for r in mine}) == 3  # every cell its own ID, whatever its bytes
    pkg = write_package(tmp_path / "case.zip", mine, model.labels, model.info.name, model.info.version, {"case_id": "S"})
    opened = read_package(pkg, tmp_path / "consultant" / "S")
    got = {r.path.name: r for r in opened.results}
    assert [r.cell_id for r in opened.results] == [r.cell_id for r in mine]  # the IDs travel with the cells
    assert opened.sender_labels[got["a.png"].cell_id] == "neutrophil"
    assert opened.sender_labels[got["b.png"].cell_id] == "eosinophil"
    got["a.png"].reviewer_label = "neutrophil"  # the consultant agrees with both twins ...
    got["b.png"].reviewer_label = "eosinophil"
    got["c.png"].reviewer_label = "monocyte"  # ... and disagrees with the model on the third (unreviewed by the lab)
    reply = write_package(
        tmp_path / "reply.zip", opened.results, model.labels, model.info.name, model.info.version, opened.case,
        kind="reply", package_id=opened.package_id,
    )  # fmt: skip
    back = read_package(reply, tmp_path / "lab" / "reply")
    assert disagreements(mine, back) == [("c.png", None, "monocyte")]
    got["b.png"].reviewer_label = "basophil"  # now it disagrees on one twin only: that one is listed, not its copy
    again = write_package(
        tmp_path / "reply2.zip", opened.results, model.labels, model.info.name, model.info.version, opened.case,
        kind="reply", package_id=opened.package_id,
    )  # fmt: skip
    back = read_package(again, tmp_path / "lab" / "reply2")
    assert disagreements(mine, back) == [("b.png", "eosinophil", "basophil"), ("c.png", None, "monocyte")]


def test_cell_id_round_trips_and_old_entries_get_a_stable_one(tmp_path):
    r = Result(Path("/x/a.png"), label="neutrophil", sha256="ab" * 32)
    assert decode(json.loads(json.dumps(encode(r)))).cell_id == r.cell_id
    old = encode(r)
    del old["cell_id"]  # a session saved before cells had IDs
    twin = dict(old, path="/x/b.png")  # the same bytes under another name
    assert decode(old).cell_id == decode(dict(old)).cell_id  # derived the same way on every load
    assert decode(twin).cell_id != decode(old).cell_id
    # a package written before cells had IDs: each entry gets one, the same on every read, two twins two IDs
    data = _png((250, 5, 5))
    entries = [_entry("a.png", "images/a.png", data), _entry("b.png", "images/b.png", data)]
    pkg = _package(tmp_path / "old.zip", entries, {"images/a.png": data, "images/b.png": bytes(data)})
    first, second = read_package(pkg, tmp_path / "one"), read_package(pkg, tmp_path / "two")
    ids = [r.cell_id for r in first.results]
    assert ids == [r.cell_id for r in second.results] and len(set(ids)) == 2


def test_entries_sharing_a_display_name_each_get_their_own_image(tmp_path, tiny_model_path):
    """Two entries named cell.png, one held as images/cell.png: each row must show its own picture, and the
    consultant must be able to reply (the reply re-reads every image and checks its bytes)."""
    red, blue, green = _png((250, 5, 5)), _png((5, 5, 250)), _png((5, 250, 5))
    entries = [
        _entry("cell.png", "images/1_cell.png", red),
        _entry("cell.png", "images/cell.png", blue),
        _entry("CELL.png", "images/2_cell.png", green),  # the same name on a case-insensitive disk
    ]
    pkg = _package(tmp_path / "p.zip", entries, {"images/1_cell.png": red, "images/cell.png": blue, "images/2_cell.png": green})
    opened = read_package(pkg, tmp_path / "c")
    paths = [r.path for r in opened.results]
    assert len({str(p).casefold() for p in paths}) == 3
    for r in opened.results:
        assert hashlib.sha256(r.path.read_bytes()).hexdigest() == r.sha256  # its own picture
    model = Model(tiny_model_path)
    reply = write_package(tmp_path / "r.zip", opened.results, model.labels, "m", "1", {}, kind="reply", package_id="p1")
    assert reply.is_file()


def test_a_reply_is_checked_against_the_request_it_answers(tmp_path, twins):
    from hv_desktop.core.io.reply import reply_case

    model, mine = twins
    for r in mine:
        r.case = "S-1"
    pkg = write_package(tmp_path / "case.zip", mine, model.labels, "m", "1", {"case_id": "S-1"}, package_id="sent-1")
    opened = read_package(pkg, tmp_path / "cons")
    reply = read_package(
        write_package(tmp_path / "reply.zip", opened.results, model.labels, "m", "1", opened.case, "reply", "sent-1"),
        tmp_path / "back",
    )
    assert reply_case(reply, {"sent-1": "S-1"}, mine) == "S-1"
    assert reply_case(reply, {}, mine) == "S-1"  # a session restored without its record: the case ID and cells
    with pytest.raises(PackageError, match="S-1"):  # a reply to a request this session did not send
        reply_case(reply, {"sent-2": "S-2"}, [Result(Path("/y/z.png"), label="eosinophil", case="S-2")])
    another_s1 = [Result(Path("/lab2/x.png"), label="eosinophil", sha256="cd" * 32, case="S-1")]
    with pytest.raises(PackageError, match="none of"):  # the same case ID, none of its cells: another lab's S-1
        reply_case(reply, {}, another_s1)


def test_a_reply_without_cell_ids_is_matched_only_where_the_image_is_unique(tmp_path, twins):
    """A reply to a request sent before cells had IDs: matched by the image's sha256, never between twins."""
    from hv_desktop.core.io.reply import matched_cells

    model, mine = twins
    images = {f"images/{i}.png": r.path.read_bytes() for i, r in enumerate(mine)}
    entries = [
        _entry(r.path.name, f"images/{i}.png", images[f"images/{i}.png"], reviewer_label="monocyte") for i, r in enumerate(mine)
    ]
    old = read_package(_package(tmp_path / "old.zip", entries, images, kind="reply"), tmp_path / "old")
    assert matched_cells(mine, old) == [(2, "monocyte")]  # c.png only: a.png and b.png are the same bytes


# ------------------------------------------------------------------ item 6: bounded, atomic unpacking
def test_many_small_compressible_members_are_refused_before_anything_is_written(tmp_path):
    """1,500 members of 1 MB of zeros (each under the per-member ratio check's floor): a 1.7 MB package that
    expanded to 1.5 GB of memory and disk."""
    import tracemalloc

    zeros = b"\0" * 999_999
    names = [f"images/{i:04d}.png" for i in range(1500)]
    pkg = _package(tmp_path / "bomb.zip", [_entry(n[7:], n, zeros) for n in names], dict.fromkeys(names, zeros))
    assert pkg.stat().st_size < 2_000_000
    tracemalloc.start()
    with pytest.raises(PackageError, match="expands"):
        read_package(pkg, tmp_path / "inbox" / "case")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000
    assert _listing(tmp_path) == {"bomb.zip"}


def test_one_image_listed_for_many_cells_is_refused(tmp_path):
    """A 1 MB package naming one image for 300 cells wrote 300 copies (300 MB)."""
    data = os.urandom(1_000_000)
    pkg = _package(tmp_path / "x.zip", [_entry(f"{i}.png", "images/a.png", data) for i in range(300)], {"images/a.png": data})
    with pytest.raises(PackageError, match="one image"):
        read_package(pkg, tmp_path / "inbox" / "case")
    assert _listing(tmp_path) == {"x.zip"}


class _FullDisk:
    """A file object whose writes fail with ENOSPC once ``budget`` writes were made (a disk that fills up)."""

    calls = 0

    def __init__(self, fh, budget: int) -> None:
        self._fh, self._budget = fh, budget

    def write(self, data):
        _FullDisk.calls += 1
        if _FullDisk.calls > self._budget:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@pytest.mark.parametrize("budget", [0, 1, 2])
def test_a_full_disk_gives_a_package_error_and_leaves_no_partial_folder(tmp_path, monkeypatch, budget):
    images = {f"images/{i}.png": _png((40 * i, 5, 5)) for i in range(4)}
    pkg = _package(tmp_path / "p.zip", [_entry(n[7:], n, d) for n, d in images.items()], images)
    real = os.fdopen
    _FullDisk.calls = 0
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real(fd, *a, **k), budget))
    (tmp_path / "inbox").mkdir()
    with pytest.raises(PackageError, match="space"):
        read_package(pkg, tmp_path / "inbox" / "case")
    assert _listing(tmp_path) == {"p.zip", "inbox"}  # neither the folder nor a temporary one beside it
    monkeypatch.undo()
    opened = read_package(pkg, tmp_path / "inbox" / "case")  # once there is room, it opens whole
    assert len(opened.results) == 4 and _listing(tmp_path / "inbox") == {"case", "case/images"} | {
        f"case/images/{i}.png" for i in range(4)
    }


def test_a_250_character_member_name_is_a_package_error(tmp_path):
    data = _png((250, 5, 5))
    member = "images/" + "é" * 243
    assert len(member) == 250
    pkg = _package(tmp_path / "n.zip", [_entry("é" * 243, member, data)], {member: data})
    with pytest.raises(PackageError, match="name"):
        read_package(pkg, tmp_path / "inbox" / "case")
    assert _listing(tmp_path) == {"n.zip"}


def test_a_long_display_name_is_shortened_to_what_a_disk_holds(tmp_path):
    data = _png((250, 5, 5))
    pkg = _package(tmp_path / "n.zip", [_entry("é" * 280 + ".png", "images/a.png", data)], {"images/a.png": data})
    opened = read_package(pkg, tmp_path / "c")
    name = opened.results[0].path.name
    assert name.endswith(".png") and len(os.fsencode(name)) <= 150
    assert opened.results[0].path.read_bytes() == data


def test_unpacking_leaves_only_the_destination(tmp_path, twins):
    model, mine = twins
    pkg = write_package(tmp_path / "case.zip", mine, model.labels, "m", "1", {})
    (tmp_path / "inbox").mkdir()
    read_package(pkg, tmp_path / "inbox" / "S")
    assert os.listdir(tmp_path / "inbox") == ["S"]  # the temporary folder was moved into place


def test_a_pipe_named_like_a_package_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "p.zip")  # open() on a FIFO waits for a writer that never comes
    with pytest.raises(PackageError, match="cannot be read"):
        read_package(tmp_path / "p.zip", tmp_path / "inbox" / "case")
    assert _listing(tmp_path) == {"p.zip"}


def test_a_camera_fields_cells_keep_their_boxes_through_a_package(tmp_path):
    """Issue 28: a package of per-cell rows opens with each cell's number, box and edge mark."""
    import hashlib

    from PIL import Image

    from hv_desktop.core.inference.result import Result
    from hv_desktop.core.io.package import read_package, write_package

    img = tmp_path / "field.png"
    Image.new("RGB", (64, 48), (200, 150, 150)).save(img)
    sha = hashlib.sha256(img.read_bytes()).hexdigest()
    probs = {"eosinophil": 0.1, "lymphocyte": 0.7, "monocyte": 0.1, "neutrophil": 0.1}
    cells = [
        Result(img, "lymphocyte", 0.7, probs, sha256=sha, cell_index=1, cell_box=(1, 2, 30, 31)),
        Result(img, "lymphocyte", 0.7, probs, sha256=sha, cell_index=2, cell_box=(40, 0, 64, 20), cell_at_edge=True),
    ]
    write_package(tmp_path / "p.zip", cells, list(probs), "M", "1", {"case_id": "F-1"}, kind="request")
    back = read_package(tmp_path / "p.zip", tmp_path / "in").results
    assert [(r.cell_index, r.cell_box, r.cell_at_edge) for r in back] == [(1, (1, 2, 30, 31), False), (2, (40, 0, 64, 20), True)]
