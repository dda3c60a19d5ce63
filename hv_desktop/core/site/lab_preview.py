"""What a site model will do at its lab, told before it is used: how many of the lab's own images it flags, why, and
which classes it calls them (issue 26 item 3: at a lab where the model is simply wrong, keep the cells flagged
and say why).

Why here and not later: calibrate needs no labels, so nothing it measures says whether the model reads this lab
right. Its own measured images, classified by the site model it just wrote, say what the technologist will see:
a lab whose cells all look unlike the training labs' stays flagged, and that is said in words with what to do,
instead of being found out case by case. The flag rule and its reasons are the app's own (``core.cases.flags``).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hv_desktop.core.cases.flags import lab_flag_share, low_confidence
from hv_desktop.core.inference.batch import classify_stream
from hv_desktop.core.inference.model import Model
from hv_desktop.core.site.site_model import AdaptError

#: One class called for at least this share of at least :data:`ONE_CLASS_MIN` images: unlike any blood film's mix
#: (a severe neutrophilia reaches ~90 %, hence "unless they were chosen that way").
ONE_CLASS_SHARE, ONE_CLASS_MIN = 0.9, 20


@dataclass(frozen=True)
class LabPreview:
    """The site model on the lab's measured images: how many were classified, flagged, flagged as unlike the
    training labs' cells (the rest of the flagged: low confidence), and the classes called."""

    classified: int
    flagged: int
    unlike: int
    called: dict[str, int] = field(default_factory=dict)
    #: measured images that could not be read again (changed or removed since)
    unread: int = 0
    #: the median of the value the review threshold applies to (typicality, or confidence): how typical the lab's
    #: cells look to the model as a whole, where the flag count only says how many cross the threshold
    median_review: float | None = None

    def lines(self) -> list[str]:
        gone = f"{self.unread} measured image(s) could not be read again and are left out of this check" if self.unread else ""
        if not self.classified:
            return [gone] if gone else []
        share = self.flagged / self.classified
        low = self.flagged - self.unlike
        why = f": {self.unlike} look unlike the training labs' cells, {low} are low confidence" if self.flagged else ""
        out = [f"on these {self.classified} images the site model flags {self.flagged} for review ({100 * share:.0f} %){why}"]
        if lab_flag_share(self.classified, self.flagged) is not None:
            reason = (
                "this lab's cells look unlike those of every lab the model was trained on"
                if self.unlike >= low
                else "the model is unsure which cell type most of this lab's cells are"
            )
            out.append(
                f"{reason}, so it cannot vouch for its answers here: they stay flagged for a person's review. Reviewing "
                "about 10 cells of each type and adapting (Review ▸ Adapt to This Lab, or hematovision adapt) fits "
                "the model to this lab"
            )
        total = sum(self.called.values())
        if total:
            mix = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in sorted(self.called.items(), key=lambda kv: -kv[1]))
            out.append(f"classes called: {mix}")
            top, n = max(self.called.items(), key=lambda kv: kv[1])
            if total >= ONE_CLASS_MIN and n / total >= ONE_CLASS_SHARE:
                out.append(
                    f"nearly every image is called {top}: unless they were chosen that way, the model is probably "
                    "misreading this lab's cells (check a few by eye before relying on it)"
                )
        return out + ([gone] if gone else [])


def preview_site_model(
    data: bytes,
    paths: Sequence[Path],
    say: Callable[[str, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
    threads: int | None = None,
    what: str = "the site model",
) -> LabPreview:
    """Classify ``paths`` with the site model ``data`` (the bytes it will be saved as, up to its site record); ``span``:
    the share of the caller's progress bar this takes; ``threads``: as the base model's; ``what``: the model's name in
    the progress."""
    with tempfile.TemporaryDirectory(prefix="hv-site-preview-") as tmp:
        path = Path(tmp) / "site.onnx"
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise AdaptError(
                f"the site model could not be checked: the temporary folder cannot hold it ({exc.strerror or exc})"
            ) from None
        return preview_model(Model(path, threads), paths, say, cancel, span, what)


def preview_model(
    model: Model,
    paths: Sequence[Path],
    say: Callable[[str, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
    what: str = "the model",
) -> LabPreview:
    """:func:`preview_site_model` for a model already loaded (the base model, whose file is on disk)."""
    say = say or (lambda _msg, _frac: None)
    lo, hi = span
    flagged = unlike = unread = 0
    called: Counter[str] = Counter()
    values: list[float] = []
    done = 0
    with closing(classify_stream(paths, model)) as results:
        for r in results:
            if cancel and cancel():
                raise AdaptError("cancelled")
            done += 1
            say(f"checking {what} {done} of {len(paths)}", lo + (hi - lo) * done / max(1, len(paths)))
            if not r.ok or r.label is None:
                unread += 1  # changed or removed since it was measured
                continue
            called[r.label] += 1
            if r.typicality is not None:
                values.append(r.typicality)
            if r.needs_review:
                flagged += 1
                unlike += not low_confidence(r)
    median = float(np.median(values)) if values else None
    return LabPreview(sum(called.values()), flagged, unlike, dict(called), unread, median)


def clearly_fewer(a: LabPreview, b: LabPreview) -> bool:
    """Whether ``a`` flags clearly fewer of the lab's images than ``b``: by share (each pass may leave out a different
    unreadable image) and by more than a few images' noise (at least 2 images and 5 points)."""
    if not a.classified or not b.classified:
        return False
    gap = b.flagged / b.classified - a.flagged / a.classified
    return gap >= max(2 / min(a.classified, b.classified), 0.05) - 1e-9  # "at least": 41 - 36 of 100 is 5 points
