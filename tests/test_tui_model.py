"""The dashboard's state is a pure, bounded fold of the event sequence."""

from __future__ import annotations

import json

from dashboard_helpers import RECORDED

from ratchet.engine.protocol import events
from ratchet.engine.protocol.events import LogTail
from ratchet.tui import view_state
from ratchet.tui.sources import LiveSource
from ratchet.tui.view_state import DashboardState, fold


def recorded() -> list[dict]:
    return list(events.iter_events(RECORDED))


def test_recorded_session_folds_into_rows_curves_and_loop_facts():
    state = fold(recorded())
    records = state.experiments
    assert [records[n].kind for n in (1, 2)] == ["baseline", "baseline"]
    labels = {n: r.label for n, r in records.items() if r.started is not None}
    assert "crash" in labels.values() and "keep" in labels.values()
    assert "discard" in labels.values()
    kept = next(r for r in records.values() if r.label == "keep")
    assert kept.kind == "confirm" and kept.diff.startswith("diff --git")
    candidate = records[kept.confirms]
    assert candidate.label == "confirmed"
    assert "Proposing" in candidate.reasoning
    crash = next(r for r in records.values() if r.label == "crash")
    assert "SMOOTHING must be positive" in crash.error
    assert state.loop.kept == 1 and state.loop.ended
    assert state.best_exp == kept.n and len(kept.curve) > 5
    assert state.loop.best_bpb == state.best_line[-1][1]
    assert state.resources.source == "psutil" and state.resources.cpu
    assert state.phase == "ended"
    # durations come from the events' own times
    assert all(r.duration and r.duration > 0 for r in records.values() if r.ended)


def test_any_prefix_folds_like_the_live_sequence():
    log = recorded()
    live = DashboardState()
    for i, event in enumerate(log, 1):
        live.apply(event)
        if i in (10, len(log) // 2):
            again = fold(log[:i])
            assert again.loop == live.loop
            assert {n: (r.label, r.val_bpb) for n, r in again.experiments.items()} == \
                {n: (r.label, r.val_bpb) for n, r in live.experiments.items()}


def test_state_stays_bounded_over_a_long_stream():
    state = DashboardState()
    state.apply({"t": 0.0, "type": "exp_start", "exp": 1, "kind": "candidate", "budget": 300})
    for step in range(50_000):
        state.apply({"t": step * 0.01, "type": "train_log", "exp": 1, "step": step,
                     "loss": 5.0 - step * 1e-5, "elapsed": step * 0.01})
        state.apply({"t": step * 0.01, "type": "agent_delta", "exp": 1, "text": "x" * 50 + "\n"})
    curve = state.experiments[1].curve
    assert len(curve) < view_state.CURVE_POINTS
    assert curve.steps[0] == 0 and curve.steps[-1] > 45_000  # thinned, not truncated
    assert len(state.agent_chunks) == view_state.AGENT_CHUNKS
    assert len(state.experiments[1].reasoning) == view_state.REASONING_CHARS
    assert state.agent_total == 50_001  # the header chunk too
    assert state.progress() == (state.experiments[1].elapsed, 300.0)


def test_live_source_reads_in_slices_and_holds_back_a_partial_line(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    path = folder / "events.jsonl"
    lines = [json.dumps({"t": i, "type": "train_log", "exp": 1, "step": i}) for i in range(25)]
    path.write_text("\n".join(lines) + "\n" + '{"t": 99, "type": "tr')
    source = LiveSource(folder, batch=10)
    got = [len(source.poll()) for _ in range(4)]
    assert got == [10, 10, 5, 0]
    offset = source.offset
    with open(path, "a") as f:
        f.write('ain_log", "exp": 1, "step": 99}\nnot json\n')
    assert [e["step"] for e in source.poll()] == [99]
    assert source.tail.bad_lines == 1 and source.offset > offset
    assert not source.live  # no engine pid file: nothing to control


def test_a_sliced_tail_restarts_on_a_replaced_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"t": 1, "type": "a"}\n{"t": 2, "type": "b"}\n')
    tail = LogTail(path)
    assert [e["type"] for e in tail.poll(5)] == ["a", "b"]
    path.write_text('{"t": 3, "type": "c"}\n')
    assert [e["type"] for e in tail.poll(5)] == ["c"]
