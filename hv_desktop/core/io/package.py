"""Consultation packages: one .zip a lab sends to a consultant (and the consultant's reply), Qt-free.

A package holds the images, ``results.csv`` (with the reviews), ``case.json`` (the case, every result and who
reviewed what), optionally ``report.pdf``, and ``MANIFEST.sha256`` (the sha256 of every other member). Opening
one is the risky direction: it comes from outside. :func:`read_package` refuses, with a plain message and
before anything is written, a zip that is not one, path traversal (absolute names, ``..``, drive letters,
backslashes, links), zip bombs (total or per-member size, compression ratio), huge entry counts, members not in
the manifest, and a case file that is malformed; members are written only below the destination folder the app
chose, all or nothing (:mod:`hv_desktop.core.io.unpack`): an image that does not match its hash, or a disk that fills
up, is found while it is written into a temporary folder, which is then removed.

Every cell carries its cell ID (:attr:`Result.cell_id`) through the request, the reply and the merge: two identical
images are two cells, and a reply is matched to its request's cells (:mod:`hv_desktop.core.io.reply`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NoReturn

from hv_desktop.core.inference.result import (
    Result,
    checked_cell_fields,
    checked_cell_id,
    checked_number,
    checked_text,
    derived_cell_id,
    result_fields,
)
from hv_desktop.core.io.export import csv_columns, result_row
from hv_desktop.core.io.unpack import copy_stream, discard, disk_names, hash_stream, move_into_place, temp_folder
from hv_desktop.core.system.files import open_regular
from hv_desktop.core.system.paths import path_to_text
from hv_desktop.core.system.writing import atomic_write_bytes

FORMAT = "hematovision-consultation"
FORMAT_VERSION = 1
MAX_ENTRIES = 20_000
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed, per member (images barely compress; a bomb compresses ~1000x)
#: the whole package, uncompressed / compressed, once it expands beyond RATIO_FLOOR: 1,500 members of 1 MB of zeros
#: (each under the per-member floor) made a 1.7 MB package expand 900-fold
MAX_PACKAGE_RATIO = 50
RATIO_FLOOR = 32 * 1024 * 1024
MAX_CASE_JSON = 32 * 1024 * 1024  # 20,000 cells take about 12 MB
#: JSON objects and lists a case file may open: each cell is two (itself, its probabilities). Counted on the bytes
#: before parsing, so a file of millions of empty containers (a memory bomb that fits the size cap) is refused.
MAX_CASE_CONTAINERS = 3 * MAX_ENTRIES + 1_000
#: what a package's case details may hold; anything else in them is dropped on reading
CASE_KEYS = ("case_id", "operator", "note", "signed_off")
MAX_MANIFEST = 8 * 1024 * 1024
MAX_MEMBER_NAME = 160  # characters; the app's own names are under 100
FIXED = ("case.json", "results.csv", "report.pdf", "MANIFEST.sha256")


class PackageError(Exception):
    """A package that cannot be opened, with a one-line reason."""


@dataclass
class Consultation:
    """A package opened: the case, the results (with the sender's reviews), and where its images now are."""

    kind: str  # "request" (from the lab) or "reply" (from the consultant)
    case: dict
    results: list[Result]
    sender_labels: dict[str, str | None]  # cell ID -> the sender's review
    folder: Path
    package_id: str = ""


def _member_name(index: int, r: Result) -> str:
    """A member name unique by the cell's position in the package (never grows, whatever the file names)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r.path.name)[:60] or "image"
    return f"images/{index:05d}_{stem}"


def write_package(
    path: str | os.PathLike,
    results: Sequence[Result],
    labels: Sequence[str],
    model_name: str,
    model_version: str,
    case: dict,
    kind: str = "request",
    package_id: str = "",
    report_pdf: bytes | None = None,
) -> Path:
    """Write a package atomically. Failed files are listed in the case but carry no image."""
    if kind not in ("request", "reply"):
        raise ValueError("kind is 'request' or 'reply'")
    items, members = _case_results(results)
    pid = package_id or hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]
    case_file = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "package_id": pid,
        "model_name": model_name,
        "model_version": model_version,
        "labels": list(labels),
        "case": case,
        "results": items,
    }
    members["case.json"] = json.dumps(case_file, ensure_ascii=False, indent=1).encode("utf-8")
    members["results.csv"] = _results_csv(results, labels, model_name, model_version)
    if report_pdf:
        members["report.pdf"] = report_pdf
    members["MANIFEST.sha256"] = _manifest_bytes(members)
    atomic_write_bytes(path, _zipped(members))
    return Path(path)


def _case_results(results: Sequence[Result]) -> tuple[list[dict[str, object]], dict[str, bytes]]:
    """The case file's entry for every result, and the images they name as members (read now, checked)."""
    items: list[dict[str, object]] = []
    images: dict[str, bytes] = {}
    fields: dict[tuple, str] = {}  # a camera field's image, sent once for all its cells (issue 28)
    for i, r in enumerate(results):
        member = None
        if r.ok and r.cell_index is not None and (r.path, r.sha256) in fields:
            member = fields[(r.path, r.sha256)]
        elif r.ok:
            data = _image_bytes(r)
            member = _member_name(i, r)
            images[member] = data
            if r.cell_index is not None:
                fields[(r.path, r.sha256)] = member
        items.append(
            {
                "file_name": path_to_text(r.path.name),
                **result_fields(r),
                "reviewer_label": r.reviewer_label,
                "member": member,
                "cell_id": r.cell_id,
            }
        )
    return items, images


def _image_bytes(r: Result) -> bytes:
    """The classified image's bytes, refused when it is gone or is no longer the image that was classified."""
    try:
        data = Path(r.path).read_bytes()
    except OSError as exc:
        raise PackageError(f"{r.path.name} cannot be read for the package ({exc.strerror or exc})") from None
    if r.sha256 and hashlib.sha256(data).hexdigest() != r.sha256:
        raise PackageError(f"{r.path.name} changed since it was classified; classify it again first")
    return data


def _results_csv(results: Sequence[Result], labels: Sequence[str], model_name: str, model_version: str) -> bytes:
    """``results.csv``: the export's columns and rows, UTF-8 with BOM like the app's own CSV."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(csv_columns(labels))
    for r in results:
        w.writerow(result_row(r, labels, model_name, model_version))
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _manifest_bytes(members: dict[str, bytes]) -> bytes:
    """``MANIFEST.sha256``: one "digest  name" line per member, sorted by name (what :func:`_manifest` reads)."""
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(members.items())).encode("utf-8")


def _zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _safe_name(name: str) -> str | None:
    """The member's name if it may be written below the destination, else None."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or ":" in name:
        return None
    p = PurePosixPath(name)
    if any(part in ("..", ".", "") for part in p.parts):
        return None
    if name in FIXED or (len(p.parts) == 2 and p.parts[0] == "images"):
        return name
    return None


def _check_archive(z: zipfile.ZipFile, package_bytes: int) -> list[zipfile.ZipInfo]:
    """The members, refused from the zip's directory alone (nothing read, nothing written): too many, unsafe or
    over-long names, links, too large, expanding too far (each member, and all together)."""
    infos = z.infolist()
    if len(infos) > MAX_ENTRIES:
        raise PackageError(f"the package has {len(infos)} entries (at most {MAX_ENTRIES})")
    total = 0
    for info in infos:
        if len(info.filename) > MAX_MEMBER_NAME:
            raise PackageError(
                f"the package holds a file name of {len(info.filename)} characters (at most {MAX_MEMBER_NAME}); refused"
            )
        if _safe_name(info.filename) is None:
            raise PackageError(f"the package holds a file outside its folders ({info.filename[:80]!r}); refused")
        mode = info.external_attr >> 16
        if mode and (stat.S_ISLNK(mode) or (stat.S_IFMT(mode) and not stat.S_ISREG(mode))):
            raise PackageError(f"the package holds a link or special file ({info.filename[:80]!r}); refused")
        if info.file_size > MAX_MEMBER_BYTES:
            raise PackageError(f"{info.filename[:80]} is too large ({info.file_size / 1e6:.0f} MB)")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1_000_000:
            raise PackageError(
                f"{info.filename[:80]} expands {info.file_size / info.compress_size:.0f}-fold: a zip bomb, refused"
            )
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise PackageError("the package expands beyond 4 GB; refused")
    if total > RATIO_FLOOR and total > MAX_PACKAGE_RATIO * max(package_bytes, 1):
        raise PackageError(
            f"the package expands {total / max(package_bytes, 1):.0f}-fold ({total / 1e6:,.0f} MB from "
            f"{package_bytes / 1e6:.1f} MB): a zip bomb, refused"
        )
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise PackageError("the package names a file twice; refused")
    if "case.json" not in names or "MANIFEST.sha256" not in names:
        raise PackageError("not a HematoVision consultation package (no case.json or MANIFEST.sha256)")
    return infos


def _read_limited(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than its declared size (a lying header cannot inflate past it)."""
    with z.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise PackageError(f"{info.filename[:80]} is not the size the package says; refused")
    return data


def _manifest(text: bytes) -> dict[str, str]:
    out = {}
    for line in text.decode("utf-8", "replace").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or not name:
            raise PackageError("the package's manifest is malformed; refused")
        out[name] = digest
    return out


_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    KeyError,
    struct.error,
    UnicodeDecodeError,
)


def read_package(path: str | os.PathLike, dest: str | os.PathLike) -> Consultation:
    """Check a package completely before anything is written (its directory, manifest and case file), then unpack
    its images below ``dest`` (created; must be empty or new): streamed into a temporary folder beside ``dest``,
    each member checked against its sha256, then moved into place; any failure leaves nothing behind."""
    try:
        fh = open_regular(path)
    except OSError as exc:
        raise PackageError(f"the package cannot be read ({exc.strerror or exc})") from None
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            z = zipfile.ZipFile(fh)
        except (*_DAMAGED, OSError):
            raise PackageError("not a zip file; a consultation package is one .zip") from None
        try:
            with z:
                return _open(z, size, Path(dest))
        except PackageError:
            raise
        except (*_DAMAGED, OSError) as exc:  # damaged, encrypted or unsupported members
            raise PackageError(
                f"the package is damaged or uses a zip feature HematoVision does not read ({exc.__class__.__name__}); refused"
            ) from None


def _open(z: zipfile.ZipFile, package_bytes: int, folder: Path) -> Consultation:
    infos = _check_archive(z, package_bytes)
    by_name = {i.filename: i for i in infos}
    manifest_info = by_name["MANIFEST.sha256"]
    if manifest_info.file_size > MAX_MANIFEST:
        raise PackageError("the package's manifest is too large; refused")
    manifest = _manifest(_read_limited(z, manifest_info))
    if set(manifest) != set(by_name) - {"MANIFEST.sha256"}:
        raise PackageError("the package's files do not match its manifest; refused")
    if by_name["case.json"].file_size > MAX_CASE_JSON:
        raise PackageError("the package's case file is too large; refused")
    raw = _read_limited(z, by_name["case.json"])
    if hashlib.sha256(raw).hexdigest() != manifest["case.json"]:
        raise PackageError("case.json does not match its checksum (damaged or altered); refused")
    kind, case, pid, parsed = _case_file(raw, set(by_name))
    firsts = _images_of(parsed)
    if {p["member"] for p in firsts} != {n for n in by_name if n.startswith("images/")}:
        raise PackageError("the package holds an image that no cell names; refused")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise PackageError(f"{folder} is not empty; the package is unpacked into a new folder")
    for p, name in zip(firsts, disk_names(p["name"] for p in firsts), strict=True):
        p["target"] = folder / "images" / name
    target = {p["member"]: p["target"] for p in firsts}
    for p in parsed:
        if p["member"]:
            p["target"] = target[p["member"]]
    without = [p for p in parsed if not p["member"]]  # a file that failed at the sender: a row, no image
    for p, name in zip(without, disk_names(p["name"] for p in without), strict=True):
        p["target"] = folder / "missing" / name
    _unpack(z, by_name, manifest, firsts, folder)
    results = [
        Result(
            path=p["target"],
            label=p["label"],
            confidence=p["confidence"],
            probabilities=p["probabilities"],
            needs_review=p["needs_review"],
            typicality=p["typicality"],
            error=p["error"],
            sha256=p["sha256"],
            cell_id=p["cell_id"],
            model_name=p["made_by"][0],
            model_version=p["made_by"][1],
            **p["cell"],
        )
        for p in parsed
    ]
    sender = {p["cell_id"]: p["reviewer"] for p in parsed}
    return Consultation(kind, case, results, sender, folder, pid)


def _images_of(parsed: list[dict]) -> list[dict]:
    """The first entry naming each image. One image names one cell, except a camera field's image, which its
    cells share (each a cell of a field, its own number, the same bytes); anything else is refused."""
    by_member: dict[str, list[dict]] = {}
    for p in parsed:
        if p["member"]:
            by_member.setdefault(p["member"], []).append(p)
    for group in by_member.values():
        numbers = [p["cell"]["cell_index"] for p in group]
        if len(group) > 1 and (None in numbers or len(set(numbers)) != len(numbers) or len({p["sha256"] for p in group}) != 1):
            raise PackageError("the package names one image for two cells; refused")
    return [group[0] for group in by_member.values()]


def _unpack(
    z: zipfile.ZipFile, by_name: dict[str, zipfile.ZipInfo], manifest: dict[str, str], items: list[dict], folder: Path
) -> None:
    """Every image (and the report) into a temporary folder beside ``folder``, each checked against the
    manifest as it is written, then moved into place; on any failure nothing is left, not even the folder."""

    def copy(name: str, target: Path | None) -> None:
        info = by_name[name]
        with z.open(info) as src:
            n, digest = copy_stream(src, target, info.file_size) if target else hash_stream(src, info.file_size)
        if n != info.file_size:
            raise PackageError(f"{name[:80]} is not the size the package says; refused")
        if digest != manifest[name]:
            raise PackageError(f"{name[:80]} does not match its checksum (damaged or altered); refused")

    tmp: Path | None = None
    made: list[Path] = []
    try:
        tmp, made = temp_folder(folder)
        if items:
            (tmp / "images").mkdir()
        for p in items:
            copy(p["member"], tmp / "images" / p["target"].name)
        if "results.csv" in by_name:
            copy("results.csv", None)
        if "report.pdf" in by_name:
            copy("report.pdf", tmp / "report.pdf")
        move_into_place(tmp, folder)
    except BaseException as exc:
        discard(tmp, made)
        if isinstance(exc, OSError):
            raise PackageError(f"the package could not be unpacked ({exc.strerror or exc}); nothing was kept") from None
        raise


def _case_file(raw: bytes, names: set[str]) -> tuple[str, dict, str, list[dict]]:
    """(kind, case, package ID, every entry typed); PackageError when malformed. A package written before cells had
    IDs gets them derived from its package ID and each entry's place, the same on every reading."""
    if raw.count(b"{") + raw.count(b"[") > MAX_CASE_CONTAINERS:
        raise PackageError("the package's case file holds far more entries than cells; refused")
    try:
        case = json.loads(raw.decode("utf-8"), parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise PackageError("the package's case file is not valid JSON; refused") from None
    if not isinstance(case, dict) or case.get("format") != FORMAT:
        raise PackageError("not a HematoVision consultation package")
    if not isinstance(case.get("version"), int) or case["version"] > FORMAT_VERSION:
        raise PackageError("the package was made by a newer HematoVision")
    kind = case.get("kind")
    items = case.get("results")
    if kind not in ("request", "reply") or not isinstance(items, list) or not isinstance(case.get("case", {}), dict):
        raise PackageError("the package's case file is malformed; refused")
    if len(items) > MAX_ENTRIES:
        raise PackageError(f"the package lists {len(items):,} cells (at most {MAX_ENTRIES:,}); refused")
    pid = str(case.get("package_id", ""))[:64]
    try:
        parsed = [_entry(d, names) for d in items]  # every entry checked before anything is written
        # the model that produced the sender's rows: they keep it here (a CSV or report must not name ours)
        made_by = tuple(" ".join(str(case.get(k) or "").split())[:200] for k in ("model_name", "model_version"))
        for i, p in enumerate(parsed):
            p["made_by"] = made_by if p["error"] is None else ("", "")
            if p["cell_id"] is None:
                p["cell_id"] = derived_cell_id(pid, i, p["sha256"], p["name"])
    except TypeError:  # the session loader's typed readers: a value of the wrong type
        raise PackageError("the package's case file holds a value of the wrong type; refused") from None
    if len({p["cell_id"] for p in parsed}) != len(parsed):
        raise PackageError("the package names one cell twice; refused")
    details = {k: v for k, v in (case.get("case") or {}).items() if k in CASE_KEYS}
    return kind, details, pid, parsed


def _entry(d: object, names: set[str]) -> dict:
    """One result of the case file, typed with the session loader's readers (TypeError when wrong)."""
    if not isinstance(d, dict):
        raise PackageError("the package's case file is malformed; refused")
    member = checked_text(d.get("member"), MAX_MEMBER_NAME)
    if member is not None and (member not in names or not member.startswith("images/")):
        raise PackageError("the package's case file names an image it does not hold; refused")
    probs = d.get("probabilities") or {}
    if not isinstance(probs, dict) or len(probs) > 100:
        raise PackageError("the package's case file is malformed; refused")
    return dict(
        member=member,
        name=checked_text(d.get("file_name"), 300) or "image",
        label=checked_text(d.get("label"), 200),
        confidence=checked_number(d.get("confidence")),
        probabilities={str(checked_text(k, 200)): checked_number(v) or 0.0 for k, v in probs.items()},
        needs_review=bool(d.get("needs_review")),
        typicality=checked_number(d.get("typicality")),
        error=checked_text(d.get("error")),
        sha256=checked_text(d.get("sha256"), 64),
        reviewer=checked_text(d.get("reviewer_label"), 200),
        cell_id=checked_cell_id(d.get("cell_id")),
        cell=checked_cell_fields(d),  # a camera field's cell: its number, box and edge (issue 28)
    )


def _refuse(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not allowed")
