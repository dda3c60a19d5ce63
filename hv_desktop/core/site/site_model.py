"""A site model's file: the error every site-model fit raises, the site's name and identity, its provenance, and
writing the new file (never over the base).

Why its own module: both ways of making a site model (:mod:`hv_desktop.core.site.adapt` from reviewed cells,
:mod:`hv_desktop.core.site.calibrate` from unlabelled images) write the same kind of file; neither imports the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hv_desktop.core.inference.metadata import FLAG_ALL, METADATA_KEY, ModelMetadata
from hv_desktop.core.inference.model import Model
from hv_desktop.core.inference.onnx_proto import OnnxFile

#: The longest site name (it is part of the site model's name, which the metadata limits to 200 characters).
MAX_SITE_NAME = 80


class AdaptError(Exception):
    """Input that cannot produce a site model, with a one-line message fit for a terminal or a dialog."""


@dataclass
class SiteModel:
    """A new model file made from a base model for one lab (never written over the base)."""

    model_bytes: bytes
    metadata: ModelMetadata

    def save(self, path: str | os.PathLike, base: Model) -> Path:
        from hv_desktop.core.system.writing import atomic_write_bytes

        target = Path(path)
        if target.exists() and target.resolve() == base.path.resolve():
            raise AdaptError("the site model must not replace the model it was made from; choose another file")
        atomic_write_bytes(target, self.model_bytes)
        return target


def check_site_name(name: str) -> str:
    """The lab's name as stored in a site model: 1-80 printable characters (it becomes part of the model's name,
    shown and stamped on every export)."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_SITE_NAME or not name.isprintable():
        raise AdaptError(f"the site name must be 1 to {MAX_SITE_NAME} printable characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise AdaptError("the site name holds characters that cannot be stored (not valid text)") from None
    return name


def site_identity(info: ModelMetadata, what: str) -> dict[str, str]:
    """A site model's name and version: from the base's, said once however many times a site model is remade."""
    earlier = info.site_adaptation or {}
    base = earlier.get("base_model") if isinstance(earlier, dict) else None
    root = base["name"] if isinstance(base, dict) and isinstance(base.get("name"), str) else info.name
    version = info.version if info.version.endswith("+site") else f"{info.version}+site"
    return {"name": f"{root} {what}"[:200], "version": version[:64]}


def site_provenance(info: ModelMetadata, site: str, base_sha256: str) -> dict[str, object]:
    """The provenance every site model states: the site, when it was made, and the base model it was made from."""
    return {
        "site": site,
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "base_model": {"name": info.name, "version": info.version, "sha256": base_sha256},
    }


def base_review_threshold(info: ModelMetadata) -> float:
    """The review threshold of the model a site model descends from, the floor every site model's threshold is chosen
    from (core.site.unflag.choose_threshold): a site model that flags every cell (FLAG_ALL) or raised its threshold
    must not pass that on when it is adapted again as reviews accumulate."""
    earlier = info.site_adaptation or {}
    kept = earlier.get("base_review_threshold") if isinstance(earlier, dict) else None
    if isinstance(kept, (int, float)) and not isinstance(kept, bool) and 0.0 <= kept < FLAG_ALL:
        return float(kept)
    if info.review_threshold < FLAG_ALL:
        return info.review_threshold  # a base model, a calibrated one (its rule unchanged) or an older site model
    raise AdaptError(
        "this site model was made by an older version and flags every cell, so the review rule it came from is not "
        "known: use the shipped model (Review ▸ Use Shipped Model) and adapt again; every reviewed cell is used"
    )


def with_metadata(out: OnnxFile, meta: ModelMetadata) -> bytes:
    """The site model's file: ``out`` (the base file with its initializers edited) carrying ``meta``."""
    out.set_metadata(METADATA_KEY, meta.to_json())
    return out.to_bytes()
