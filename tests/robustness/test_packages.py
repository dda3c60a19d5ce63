"""Consultation packages: the round trip (request, review, reply, disagreements) and every hostile-zip kind."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from hv_desktop.core.inference.batch import classify_paths
from hv_desktop.core.inference.model import Model
from hv_desktop.core.io.package import PackageError, read_package, write_package
from hv_desktop.core.io.reply import disagreements


@pytest.fixture
def case(tmp_path, tiny_model_path):
    folder = tmp_path / "smear"
    folder.mkdir()
    for i, c in enumerate([(250, 5, 5), (5, 5, 250), (5, 250, 5), (128, 128, 128)]):
        Image.new("RGB", (24, 24), c).save(folder / f"cell_{i}.png")
    (folder / "broken.png").write_bytes(b"")
    model = Model(tiny_model_path)
    results = list(classify_paths([folder], model))
    by_name = {r.path.name: r for r in results}
    by_name["cell_0.png"].reviewer_label = "eosinophil"
    by_name["cell_3.png"].reviewer_label = "basophil"
    return model, results


def test_request_review_reply_and_disagreements(tmp_path, case):
    model, results = case
    pkg = write_package(
        tmp_path / "case.zip",
        results,
        model.labels,
        model.info.name,
        model.info.version,
        {"case_id": "S-1", "note": "please check cell 3"},
        report_pdf=b"%PDF-1.4 test %%EOF",
    )
    opened = read_package(pkg, tmp_path / "consultant" / "S-1")
    assert opened.kind == "request" and opened.case["case_id"] == "S-1"
    assert len(opened.results) == 5 and sum(1 for r in opened.results if r.ok) == 4
    for mine, theirs in zip(results, opened.results, strict=True):
        if mine.ok:
            assert theirs.path.read_bytes() == mine.path.read_bytes()  # the same pictures
            assert theirs.path.is_relative_to(tmp_path / "consultant" / "S-1")
            assert theirs.label == mine.label and theirs.reviewer_label is None
    sent = {r.path.name: r for r in results}
    assert opened.sender_labels[sent["cell_3.png"].cell_id] == "basophil"  # the sender's review, beside the model's
    assert (tmp_path / "consultant" / "S-1" / "report.pdf").exists()
    # the consultant reviews and sends back
    got = {r.path.name: r for r in opened.results}
    got["cell_0.png"].reviewer_label = "eosinophil"  # agrees
    got["cell_3.png"].reviewer_label = "monocyte"  # disagrees with the sender's basophil
    reply = write_package(
        tmp_path / "reply.zip",
        opened.results,
        model.labels,
        model.info.name,
        model.info.version,
        opened.case,
        kind="reply",
        package_id=opened.package_id,
    )
    back = read_package(reply, tmp_path / "lab" / "reply")
    assert back.kind == "reply" and back.package_id == opened.package_id
    assert disagreements(results, back) == [("cell_3.png", "basophil", "monocyte")]


def _zip(path: Path, members: dict[str, bytes], manifest: bool = True, extra=None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        if manifest:
            z.writestr("MANIFEST.sha256", "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in members.items()))
        if extra:
            extra(z)
    return path


CASE = json.dumps({"format": "hematovision-consultation", "version": 1, "kind": "request", "results": []}).encode()


def _symlink(z: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("images/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z.writestr(info, "/etc/passwd")


HOSTILE = {
    "traversal": lambda p: _zip(p, {"case.json": CASE, "../evil.txt": b"x"}),
    "traversal_in_images": lambda p: _zip(p, {"case.json": CASE, "images/../../evil.txt": b"x"}),
    "absolute": lambda p: _zip(p, {"case.json": CASE, "/tmp/evil.txt": b"x"}),
    "backslash": lambda p: _zip(p, {"case.json": CASE, "images\\..\\..\\evil.txt": b"x"}),
    "drive_letter": lambda p: _zip(p, {"case.json": CASE, "C:/evil.txt": b"x"}),
    "symlink": lambda p: _zip(p, {"case.json": CASE}, extra=_symlink),
    "bomb": lambda p: _zip(p, {"case.json": CASE, "images/zeros.png": b"\0" * 60_000_000}),
    "many_entries": lambda p: _zip(p, {"case.json": CASE, **{f"images/{i}.png": b"" for i in range(20_001)}}),
    "no_manifest": lambda p: _zip(p, {"case.json": CASE}, manifest=False),
    "bad_checksum": lambda p: _bad_checksum(p),
    "unlisted_member": lambda p: _unlisted(p),
    "not_a_zip": lambda p: (p.write_bytes(b"PK\x03\x04 but not really"), p)[1],
    "wrong_types": lambda p: _zip(
        p,
        {
            "case.json": json.dumps(
                {
                    "format": "hematovision-consultation",
                    "version": 1,
                    "kind": "request",
                    "results": [{"file_name": 3, "label": {"x": 1}, "member": None}],
                }
            ).encode()
        },
    ),
    "deep_json": lambda p: _zip(p, {"case.json": b"[" * 100_000 + b"]" * 100_000}),
    "member_not_held": lambda p: _zip(
        p,
        {
            "case.json": json.dumps(
                {
                    "format": "hematovision-consultation",
                    "version": 1,
                    "kind": "request",
                    "results": [{"file_name": "a.png", "member": "../../etc/passwd"}],
                }
            ).encode()
        },
    ),
}


def _bad_checksum(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("case.json", CASE)
        z.writestr("images/a.png", b"tampered")
        z.writestr(
            "MANIFEST.sha256",
            f"{hashlib.sha256(CASE).hexdigest()}  case.json\n{hashlib.sha256(b'original').hexdigest()}  images/a.png\n",
        )
    return p


def _unlisted(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("case.json", CASE)
        z.writestr("images/extra.png", b"x")
        z.writestr("MANIFEST.sha256", f"{hashlib.sha256(CASE).hexdigest()}  case.json\n")
    return p


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_packages_are_refused_and_write_nothing(tmp_path, kind):
    pkg = HOSTILE[kind](tmp_path / f"{kind}.zip")
    before = set(os.listdir(tmp_path))
    dest = tmp_path / "inbox" / "case"
    with pytest.raises(PackageError) as err:
        read_package(pkg, dest)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200  # one plain line
    assert set(os.listdir(tmp_path)) == before  # nothing written, not even the destination
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_zip_bomb_is_refused_without_inflating_it(tmp_path):
    import tracemalloc

    pkg = HOSTILE["bomb"](tmp_path / "b.zip")
    assert pkg.stat().st_size < 1_000_000
    tracemalloc.start()
    with pytest.raises(PackageError, match="zip bomb"):
        read_package(pkg, tmp_path / "d")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000_000  # refused from the header, not after expanding 60 MB


def test_package_from_a_reviewed_case_carries_csv_and_manifest(tmp_path, case):
    model, results = case
    pkg = write_package(tmp_path / "c.zip", results, model.labels, model.info.name, model.info.version, {})
    with zipfile.ZipFile(pkg) as z:
        names = set(z.namelist())
        manifest = z.read("MANIFEST.sha256").decode()
        csv_text = z.read("results.csv").decode("utf-8-sig")
    assert {"case.json", "results.csv", "MANIFEST.sha256"} <= names
    assert all(n in manifest for n in names - {"MANIFEST.sha256"})
    assert "basophil" in csv_text  # the reviews travel in the CSV too


def test_corrupted_packages_only_ever_give_a_package_error(tmp_path, case):
    """Property: any byte-level damage to a real package is refused with PackageError (or opens intact), never
    another exception, and nothing is written outside the destination folder."""
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    model, results = case
    good = write_package(
        tmp_path / "good.zip", results, model.labels, model.info.name, model.info.version, {"case_id": "P"}
    ).read_bytes()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), min_size=1, max_size=8), st.integers(0, len(good))
    )
    def check(flips, cut):
        data = bytearray(good[: max(cut, 22)] if cut < len(good) // 2 else good)
        for pos, value in flips:
            if pos < len(data):
                data[pos] = value
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            (root / "in.zip").write_bytes(bytes(data))
            try:
                c = read_package(root / "in.zip", root / "out" / "case")
                assert all(r.path.is_relative_to(root / "out") for r in c.results)
            except PackageError:
                pass
            assert {p.name for p in root.iterdir()} <= {"in.zip", "out"}

    check()
