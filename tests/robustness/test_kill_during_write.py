"""Kill a writer at random moments, many times: the file is always the old or the new one, whole."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT

WRITER = r"""
import sys
from pathlib import Path
from hv_desktop.core.inference.result import Result
from hv_desktop.core.io.export import write_csv
from hv_desktop.core.storage.session import save_session
target, kind = Path(sys.argv[1]), sys.argv[2]
labels = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
probs = {l: 0.25 for l in labels}
gen = 0
print("ready", flush=True)
while True:
    gen += 1
    rows = [Result(Path(f"/x/{gen}_{i}.png"), "monocyte", 0.5, probs, False, sha256="f" * 64, timestamp=str(gen),
                   reviewer_label="lymphocyte" if i % 3 == 0 else None) for i in range(3000)]
    if kind == "csv":
        write_csv(target, rows, labels, "m", str(gen))
    else:
        save_session(target, rows, "m", str(gen))
"""


def _check_csv(path: Path) -> None:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3000
    assert len({r["model_version"] for r in rows}) == 1  # one whole generation, never a mix


def _check_session(path: Path) -> None:
    from hv_desktop.core.storage.session import load_session

    results, header = load_session(path)
    assert len(results) == 3000 and sum(1 for r in results if r.reviewer_label) == 1000


def _kill_many(tmp_path: Path, kind: str, check, rounds: int = 12) -> None:
    target = tmp_path / f"out.{kind}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(1)
    for _ in range(rounds):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(target), kind], env=env, cwd=ROOT, stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if target.exists():
            check(target)
    assert target.exists()
    leftovers = [q.name for q in tmp_path.iterdir() if q.name != target.name]
    # a kill can leave a hidden temp file behind, never a damaged target
    assert all(n.startswith(".out.") and n.endswith(".tmp") for n in leftovers)


def test_csv_export_survives_kills(tmp_path):
    _kill_many(tmp_path, "csv", _check_csv)


def test_session_autosave_survives_kills(tmp_path):
    _kill_many(tmp_path, "json", _check_session)


def test_review_state_round_trips_exactly(tmp_path):
    from hv_desktop.core.inference.result import Result
    from hv_desktop.core.storage.session import load_session, save_session

    rs = [
        Result(
            Path("/d/ünï cødé\n.png"),
            "eosinophil",
            0.91234567,
            {"eosinophil": 0.91234567, "x": 0.08765433},
            True,
            None,
            "ab" * 32,
            "2026-01-01T00:00:00+00:00",
            "monocyte",
        ),
        Result(Path("/d/bad.jpg"), error="empty file (0 bytes)", timestamp="t"),
    ]
    save_session(tmp_path / "s.json", rs, "m", "1")
    back, header = load_session(tmp_path / "s.json")
    assert back == rs and header["model_name"] == "m"
