"""The report's time per phase, computed from the log's own order: each run's phases are its
own events, whichever thread spoke last (a recorded compat session, tests/data/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.cli import report
from ratchet.engine.protocol import events

# tests/data/record_compat_session.py: the agent began the next proposal while the baseline
# trained, and said so after the baseline's training event
RECORDED = Path(__file__).parent / "data" / "compat_session.jsonl"


def recorded() -> list[dict]:
    return list(events.iter_events(RECORDED))


def proposing_inside_the_baseline(log: list[dict]) -> bool:
    began = next(i for i, e in enumerate(log) if e["type"] == "phase" and e.get("exp") == 1)
    ended = next(i for i, e in enumerate(log) if e["type"] == "exp_end" and e.get("exp") == 1)
    return any(e["type"] == "phase" and e["phase"] == "proposing" for e in log[began:ended])


def test_phases_come_from_each_run_s_own_events():
    log = recorded()
    # the order that raced: the agent began the next proposal while the baseline trained
    assert proposing_inside_the_baseline(log)
    trained = {e["exp"]: e["t"] for e in log if e["type"] == "phase"
               and e["phase"] == "training"}
    ended = {e["exp"]: e["t"] for e in log if e["type"] == "exp_end"}
    training = sum(ended[n] - t for n, t in trained.items())
    first = min(trained.values())
    wall = log[-1]["t"] - first
    fig = report.figures(log)
    assert fig.seconds["training"] == pytest.approx(training)
    assert fig.seconds["proposing"] == pytest.approx(wall - training)
    assert fig.seconds["proposing"] < 0.1 * wall  # the agent prepared while runs trained
    # the other order of the same two events (each taking the other's place and time) reads
    # the same, but for the moment between them
    i = next(i for i, e in enumerate(log) if e["type"] == "phase" and e.get("exp") == 1)
    j = next(j for j, e in enumerate(log) if e["type"] == "phase" and e["phase"] == "proposing")
    swapped = list(log)
    swapped[i], swapped[j] = dict(log[j], t=log[i]["t"]), dict(log[i], t=log[j]["t"])
    between = log[j]["t"] - log[i]["t"]
    assert 0 <= between < 0.01
    assert report.figures(swapped).seconds == pytest.approx(fig.seconds, abs=between + 1e-9)
