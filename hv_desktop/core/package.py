"""Consultation packages: one .zip a lab sends to a consultant (and the consultant's reply), Qt-free.

A package holds the images, ``results.csv`` (with the reviews), ``case.json`` (the case, every result and who
reviewed what), optionally ``report.pdf``, and ``MANIFEST.sha256`` (the sha256 of every other member). Opening
one is the risky direction: it comes from outside. :func:`read_package` refuses, with a plain message and
before anything is written, a zip that is not one, path traversal (absolute names, ``..``, drive letters,
backslashes, links), zip bombs (total or per-member size, compression ratio), huge entry counts, members not in
the manifest or not matching their hash, and a case file that is malformed; members are written only below the
destination folder the app chose.
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
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from hv_desktop.core.result import Result
from hv_desktop.core.export import atomic_write_bytes, csv_columns, result_row
from hv_desktop.core.result import checked_number, checked_text, result_fields

FORMAT = "hematovision-consultation"
FORMAT_VERSION = 1
MAX_ENTRIES = 20_000
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed, per member (images barely compress; a bomb compresses ~1000x)
MAX_CASE_JSON = 64 * 1024 * 1024
FIXED = ("case.json", "results.csv", "report.pdf", "MANIFEST.sha256")


class PackageError(Exception):
    """A package that cannot be opened, with a one-line reason."""


@dataclass
class Consultation:
    """A package opened: the case, the results (with the sender's reviews), and where its images now are."""

    kind: str  # "request" (from the lab) or "reply" (from the consultant)
    case: dict
    results: list[Result]
    sender_labels: dict[str, str | None]  # image sha256 -> the sender's review
    folder: Path
    package_id: str = ""
    disagreements: list[tuple[str, str | None, str | None]] = field(default_factory=list)


def _member_name(r: Result, used: set[str]) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r.path.name)[:80] or "image"
    name = f"images/{(r.sha256 or 'nohash')[:12]}_{stem}"
    while name in used:
        name = name + "_"
    used.add(name)
    return name


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
    used: set[str] = set()
    for r in results:
        member = None
        if r.ok:
            data = _image_bytes(r)
            member = _member_name(r, used)
            images[member] = data
        items.append({"file_name": r.path.name, **result_fields(r), "reviewer_label": r.reviewer_label, "member": member})
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


def _check_archive(z: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = z.infolist()
    if len(infos) > MAX_ENTRIES:
        raise PackageError(f"the package has {len(infos)} entries (at most {MAX_ENTRIES})")
    total = 0
    for info in infos:
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


def read_package(path: str | os.PathLike, dest: str | os.PathLike) -> Consultation:
    """Check a package completely, then unpack its images below ``dest`` (created; must be empty or new)."""
    from hv_desktop.core.files import read_regular

    try:
        raw = read_regular(path, MAX_TOTAL_BYTES)
    except OSError as exc:
        raise PackageError(f"the package cannot be read ({exc.strerror or exc})") from None
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
    except (
        zipfile.BadZipFile,
        ValueError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        OSError,
        struct.error,
        UnicodeDecodeError,
    ):
        raise PackageError("not a zip file; a consultation package is one .zip") from None
    try:
        with z:
            data = _verified_members(z)
    except PackageError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
        KeyError,
        struct.error,
        UnicodeDecodeError,
    ) as exc:  # damaged, encrypted or unsupported members
        raise PackageError(
            f"the package is damaged or uses a zip feature HematoVision does not read ({exc.__class__.__name__}); refused"
        ) from None
    return _unpack(data, dest)


def _verified_members(z: zipfile.ZipFile) -> dict[str, bytes]:
    """Every member but the manifest, each checked against the manifest's sha256."""
    infos = _check_archive(z)
    by_name = {i.filename: i for i in infos}
    manifest = _manifest(_read_limited(z, by_name["MANIFEST.sha256"]))
    if set(manifest) != set(by_name) - {"MANIFEST.sha256"}:
        raise PackageError("the package's files do not match its manifest; refused")
    if by_name["case.json"].file_size > MAX_CASE_JSON:
        raise PackageError("the package's case file is too large; refused")
    data: dict[str, bytes] = {}
    for name, info in by_name.items():
        if name == "MANIFEST.sha256":
            continue
        blob = _read_limited(z, info)
        if hashlib.sha256(blob).hexdigest() != manifest[name]:
            raise PackageError(f"{name[:80]} does not match its checksum (damaged or altered); refused")
        data[name] = blob
    return data


def _unpack(data: dict[str, bytes], dest: str | os.PathLike) -> Consultation:
    try:
        case = json.loads(data["case.json"].decode("utf-8"), parse_constant=_refuse)
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
    try:
        parsed = [_entry(d, data) for d in items]  # every entry checked before anything is written
    except TypeError:  # the session loader's typed readers: a value of the wrong type
        raise PackageError("the package's case file holds a value of the wrong type; refused") from None
    folder = Path(dest)
    if folder.exists() and any(folder.iterdir()):
        raise PackageError(f"{folder} is not empty; the package is unpacked into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    results, sender = [], {}
    for p in parsed:
        target = folder / "missing" / Path(p["name"]).name  # a file that failed at the sender: a row, no image
        if p["member"]:
            (folder / "images").mkdir(exist_ok=True)
            target = folder / "images" / _display_name(p["name"], p["member"], folder)
            atomic_write_bytes(target, data[p["member"]])
        results.append(
            Result(
                path=target,
                label=p["label"],
                confidence=p["confidence"],
                probabilities=p["probabilities"],
                needs_review=p["needs_review"],
                typicality=p["typicality"],
                error=p["error"],
                sha256=p["sha256"],
            )
        )
        sender[p["sha256"] or p["name"]] = p["reviewer"]
    if "report.pdf" in data:
        atomic_write_bytes(folder / "report.pdf", data["report.pdf"])
    return Consultation(kind, case.get("case") or {}, results, sender, folder, str(case.get("package_id", ""))[:64])


def _entry(d, data: dict[str, bytes]) -> dict:
    """One result of the case file, typed with the session loader's readers (TypeError when wrong)."""
    if not isinstance(d, dict):
        raise PackageError("the package's case file is malformed; refused")
    member = checked_text(d.get("member"), 300)
    if member is not None and (member not in data or not member.startswith("images/")):
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
    )


def _refuse(constant: str):
    raise ValueError(f"{constant} is not allowed")


def _display_name(name: str, member: str, folder: Path) -> str:
    """The original file name when free (a person recognises it), else the member's unique name."""
    clean = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in Path(name).name)[:120].strip(" .")
    if clean and not (folder / "images" / clean).exists():
        return clean
    return PurePosixPath(member).name


def disagreements(mine: Iterable[Result], reply: Consultation) -> list[tuple[str, str | None, str | None]]:
    """(file name, my review, the consultant's review) wherever the consultant's review differs from mine."""
    theirs = reply.sender_labels
    out = []
    for r in mine:
        key = r.sha256 or r.path.name
        if key in theirs and theirs[key] and theirs[key] != (r.reviewer_label or r.label):
            out.append((r.path.name, r.reviewer_label, theirs[key]))
    return out
