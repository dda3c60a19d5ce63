"""Show ▸ Unreviewed and Show ▸ Review next skip a camera field's "no white cell" row (issue 28, item 3): it has
no class to review (core.cases.review.unreviewed, the one rule)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hv_desktop.gui.results_model import RESULT_ROLE, ResultsFilter, ResultsModel  # noqa: E402
from tests.unit.test_review_fields import rows  # noqa: E402


def test_unreviewed_and_review_next_skip_a_field_without_a_white_cell(qapp: object) -> None:
    model, proxy = ResultsModel(), ResultsFilter()
    proxy.setSourceModel(model)
    model.append(rows())
    for state in ("Unreviewed", "Review next"):
        proxy.set_filters(state=state)
        shown = [proxy.index(i, 0).data(RESULT_ROLE) for i in range(proxy.rowCount())]
        assert [(r.path.name, r.cell_index) for r in sorted(shown, key=lambda r: r.cell_index)] == [
            ("a.jpg", 1),
            ("a.jpg", 2),
        ], state
    proxy.set_filters(state="All")
    assert proxy.rowCount() == 3
