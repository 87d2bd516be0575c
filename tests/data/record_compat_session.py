"""Record tests/data/compat_session.jsonl: a short real compat session the report tests read.

Run from the repository root: `.venv/bin/python tests/data/record_compat_session.py`. It builds
a throwaway autoresearch checkout (tests/autoresearch_checkout.py, its train.py with the real
file's shapes and a fixed seed) and drives it with `--compat`'s engine and an agent that thinks
half a second per proposal: one baseline and three candidates (a kept gain, a near miss and a
discard), each reporting train.py's peak memory. The agent prepares each candidate while the
run before it trains, so its `proposing` phase event lands inside that run's training; the
script records until the baseline's training is interrupted so (it happens in about one
session in two), the log order the report once counted as time proposing.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the tests' helpers

import autoresearch_checkout as ar  # noqa: E402
from paced_agent import PacedAgent  # noqa: E402

from ratchet.engine.loop.session import RunOptions, Session  # noqa: E402
from ratchet.engine.protocol import events  # noqa: E402
from ratchet.engine.runner import compat  # noqa: E402

OUT = HERE / "compat_session.jsonl"
PLAN = [("MATRIX_LR", 0.04), ("DEPTH", 4.5), ("WARMUP_RATIO", 0.1)]
TRIES = 12


def proposing_inside_the_baseline(log: list[dict]) -> bool:
    """A proposing phase event after the baseline's training began and before it ended."""
    began = ended = None
    for i, e in enumerate(log):
        if e["type"] == "phase" and e.get("exp") == 1 and e.get("phase") == "training":
            began = i
        elif e["type"] == "exp_end" and e.get("exp") == 1:
            ended = i
    return began is not None and ended is not None and any(
        e["type"] == "phase" and e.get("phase") == "proposing" for e in log[began:ended])


def record_one(tmp: Path) -> list[str]:
    root = ar.make(tmp / "autoresearch", train=ar.REAL)
    ws = compat.prepare_checkout(root, echo=lambda _line: None)
    options = RunOptions(session="20261126-090000-compat-0001", tag="compat",
                         max_experiments=len(PLAN))
    Session(ws, ws.config(), options, PacedAgent(0.5, list(PLAN))).run()
    path = ws.runs_dir() / options.session / "events.jsonl"
    return [line for line in path.read_text().splitlines(keepends=True)
            if '"type":"resources"' not in line]  # samples of this machine: not needed


def main() -> int:
    for attempt in range(1, TRIES + 1):
        tmp = Path(tempfile.mkdtemp(prefix="ratchet-record-"))
        try:
            lines = record_one(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        OUT.write_text("".join(lines))
        if proposing_inside_the_baseline(list(events.iter_events(OUT))):
            print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(lines)} events, "
                  f"attempt {attempt})")
            return 0
    print(f"no session of {TRIES} proposed inside the baseline's training", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
