"""Session files: the text format stays what one json.dumps would write, and it round-trips."""

from __future__ import annotations

import json
from pathlib import Path

from hv_desktop.core.inference.result import Result
from hv_desktop.core.inference.result import encode as _encode
from hv_desktop.core.storage.session import load_session, save_session, session_json


def _results() -> list[Result]:
    return [
        Result(
            path=Path("/data/ünïcode folder/cell 1.jpeg"),
            label="neutrophil",
            confidence=0.98,
            probabilities={"eosinophil": 0.01, "lymphocyte": 0.005, "monocyte": 0.005, "neutrophil": 0.98},
            needs_review=False,
            typicality=0.7,
            error=None,
            sha256="a" * 64,
            timestamp="2026-11-26T01:00:00",
            reviewer_label="monocyte",
        ),
        Result(
            path=Path('/data/"quoted"\nname.png'),
            label=None,
            confidence=None,
            probabilities={},
            needs_review=False,
            typicality=None,
            error="empty file (0 bytes)",
            sha256=None,
            timestamp="",
        ),
    ]


def test_per_result_encoding_writes_exactly_what_one_dumps_call_would():
    rs = _results()
    one_call = json.dumps(
        {
            "format": "hematovision-session",
            "version": 1,
            "model_name": "M",
            "model_version": "1.2.0",
            "extra": {"k": "v"},
            "results": [_encode(r) for r in rs],
        },
        ensure_ascii=False,
    )
    assert session_json(rs, "M", "1.2.0", {"k": "v"}) == one_call
    assert json.loads(session_json([], "M", "1"))["results"] == []


def test_session_round_trips(tmp_path):
    rs = _results()
    rs[0].model_name, rs[0].model_version = "Site model", "1.2.0+site"
    save_session(tmp_path / "s.json", rs, "M", "1.2.0")
    back, header = load_session(tmp_path / "s.json")
    assert back == rs and header["model_version"] == "1.2.0"


def test_results_saved_before_they_named_their_model_take_the_sessions(tmp_path):
    rs = _results()
    save_session(tmp_path / "s.json", rs, "M", "1.2.0")
    back, _ = load_session(tmp_path / "s.json")
    assert (back[0].model_name, back[0].model_version) == ("M", "1.2.0")
    assert back[1].model_name == ""  # a failed file was classified by no model


def test_result_text_is_cached_until_the_reviewer_changes_it():
    from hv_desktop.core.inference.result import result_json

    r = _results()[0]
    first = result_json(r)
    assert result_json(r) is first  # no re-encoding for an unchanged result
    r.reviewer_label = "lymphocyte"
    changed = result_json(r)
    assert json.loads(changed)["reviewer_label"] == "lymphocyte" and json.loads(first)["reviewer_label"] == "monocyte"
    assert session_json([r]).count('"reviewer_label": "lymphocyte"') == 1
