"""`ratchet replay`: the fast fold to any moment, the replay keys, and the panes at experiment N
matching what the live dashboard showed there."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from dashboard_helpers import RECORDED, caught_up

from ratchet.engine.protocol import events
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.replay_app import ReplayDashboard
from ratchet.tui.replay_clock import ReplayClock
from ratchet.tui.replay_log import ReplayLog
from ratchet.tui.sources import LogFileSource
from ratchet.tui.view_state import AGENT_CHUNKS, HISTORY, DashboardState, fold


def visible(state: DashboardState) -> tuple:
    """Everything a pane draws from the state (curves only of the experiments a chart shows)."""
    latest = next((r for r in reversed(state.experiments.values()) if len(r.curve)), None)
    curves = [(r.n, list(r.curve.steps), list(r.curve.values)) if r else None
              for r in (*state.running_experiments(), state.best_experiment(), latest)]
    loop = {k: v for k, v in vars(state.loop).items() if k != "history"}
    rows = [(r.n, r.kind, r.commit, r.description, r.started, r.ended, r.status, r.decision,
             r.val_bpb, r.delta, r.diff, r.reasoning, r.rationale, r.error, r.confirms,
             r.duration, r.label) for r in state.experiments.values()]
    res = state.resources
    return (loop, rows, list(state.agent_chunks), state.agent_total, list(res.cpu), list(res.ram),
            res.ram_used_gb, res.gpus, {k: list(v) for k, v in res.gpu_util.items()}, res.source,
            state.val_points, state.best_line, state.running, state.best_exp, state.progress(),
            curves, state.current_diff, state.current_exp, state.phase, state.last_note,
            state.last_error)


def synthetic_night(path: Path, experiments: int = 6) -> None:
    """A log long enough that a jump skips most of it: more agent text than the reasoning pane
    keeps, more resource samples than a sparkline shows, several loss curves; plus a line of
    garbage in the middle and a torn last line, as a killed engine and a hand edit leave them."""
    rng = random.Random(7)
    t = 1.8e9
    lines = [{"t": t, "type": "session_start", "session": "night", "tag": "n", "config": {},
              "agent": "offline", "pid": 1}]
    best = 2.0
    for n in range(1, experiments + 1):
        lines.append({"t": t, "type": "phase", "exp": n, "phase": "proposing"})
        for i in range(90):
            t += 0.05
            lines.append({"t": t, "type": "agent_delta", "exp": n,
                          "text": f"thought {n}.{i} " + "x" * rng.randint(0, 40) + "\n"})
        diff = f"-LR = 0.{n}\n+LR = 0.{n + 1}\n"
        lines.append({"t": t, "type": "proposal", "exp": n, "description": f"LR {n}",
                      "rationale": "why", "diff": diff, "files": ["train.py"], "changes": {}})
        lines.append({"t": t, "type": "exp_start", "exp": n, "kind": "candidate",
                      "commit": f"{n:07x}", "seed": 1, "budget": 20, "description": f"LR {n}"})
        lines.append({"t": t, "type": "phase", "exp": n, "phase": "training"})
        for step in range(1, 61):
            t += 0.3
            lines.append({"t": t, "type": "train_log", "exp": n, "step": step, "loss": 3 / step,
                          "lr": 0.01, "tok_s": 1.0, "elapsed": step * 0.3})
            if step % 2:
                lines.append({"t": t, "type": "resources", "cpu_percent": rng.random() * 100,
                              "memory_percent": 40.0, "memory_used_gb": 3.0, "gpus": [],
                              "source": "psutil"})
        val = best - 0.1 if n % 2 else best + 0.1
        decision = "keep" if val < best else "discard"
        t += 2
        lines.append({"t": t, "type": "exp_end", "exp": n, "kind": "candidate", "status": "ok",
                      "decision": decision, "val_bpb": val, "best_before": best,
                      "delta": val - best, "commit": f"{n:07x}", "description": f"LR {n}",
                      "result": {"tail": ""}})
        best = min(best, val)
        t += 3600 if n == 3 else 1  # a long idle gap, e.g. paused overnight
    text = [json.dumps(e, separators=(",", ":")) for e in lines]
    text.insert(len(text) // 2, "this is not an event {")
    path.write_text("\n".join(text) + "\n" + '{"t":1.9e9,"type":"train_lo')


def full_fold_at(path: Path, position: int) -> DashboardState:
    return fold(event for event, end in events._scan(path, 0) if event and end <= position)


def test_a_jump_shows_what_folding_every_event_shows(tmp_path):
    path = tmp_path / "events.jsonl"
    synthetic_night(path)
    warnings: list[str] = []
    log = ReplayLog(path, on_warning=warnings.append)
    assert "partial last line" in warnings[0] and "1 line(s)" in warnings[1]
    assert log.size == path.read_bytes().rfind(b"\n") + 1
    ends = [end for _, end in events._scan(path, 0)]
    assert sum(1 for e in events.iter_events(path) if e["type"] == "agent_delta") > AGENT_CHUNKS
    assert sum(1 for e in events.iter_events(path) if e["type"] == "resources") > HISTORY
    for position in [log.start, *ends[::97], *log.experiments.values(), log.size]:
        assert visible(log.state_at(position)) == visible(full_fold_at(path, position)), position


def test_recorded_session_every_event(tmp_path):
    log = ReplayLog(RECORDED)
    for event, end in events._scan(RECORDED, 0):
        assert visible(log.state_at(end)) == visible(full_fold_at(RECORDED, end)), event


def test_lines_in_another_layout_cost_speed_not_events(tmp_path):
    """Spaces and another key order (a hand edit, another writer): the fast search skips those
    lines, and the index parses them instead, so the panes still show what a full fold shows."""
    path = tmp_path / "events.jsonl"
    synthetic_night(path)
    rng = random.Random(3)
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        event = events.parse_line(line)
        if event is not None and rng.random() < 0.3:
            compact = rng.random() < 0.5  # `t` and `type` first as EventLog writes them, or not
            head = {"t": event.pop("t"), "type": event.pop("type")} if compact else {}
            items = list(event.items())
            rng.shuffle(items)
            lines[i] = json.dumps({**head, **dict(items)},
                                  separators=(",", ":") if compact else None).encode()
    path.write_bytes(b"\n".join(lines))
    log = ReplayLog(path)
    ends = [end for _, end in events._scan(path, 0)]
    for position in [log.start, *ends[::41], *log.experiments.values(), log.size]:
        assert visible(log.state_at(position)) == visible(full_fold_at(path, position)), position


def test_clock_plays_steps_and_compresses_idle_gaps(tmp_path):
    path = tmp_path / "events.jsonl"
    synthetic_night(path)
    clock = ReplayClock(ReplayLog(path), speed=10)
    state = clock.start()
    assert state.loop.session == "night" and not clock.advance(1.0)  # paused: nothing moves
    clock.toggle()
    due = clock.advance(0.5)  # 5 s of session time at 10x
    assert due and all(e["t"] <= clock.clock for e in due)
    state.extend(due)
    # an hour of nothing after experiment 3 passes in one tick, not in six minutes
    assert clock.forward_to(clock.experiment_position(3))[1] is None
    while clock.current_experiment() == 3 or not clock.playing:
        state.extend(clock.advance(0.5))
        clock.playing = True
    assert clock.current_experiment() == 4
    # a step is one of the loop's own events
    before = clock.offset
    stepped = clock.step_forward()
    assert stepped[-1]["type"] not in ("train_log", "agent_delta", "resources")
    back = clock.step_back()
    assert clock.offset <= before and visible(back) == visible(full_fold_at(path, clock.offset))
    clock.faster()
    assert clock.speed == 20
    clock.slower()
    clock.slower()
    assert clock.speed == 5


@pytest.mark.asyncio
async def test_replay_keys():
    app = ReplayDashboard(ReplayLog(RECORDED), speed=10, play=False)
    clock = app.clock
    numbers = clock.log.experiment_numbers()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.read_only and clock.offset == clock.log.start
        await pilot.press("right")
        first = clock.offset
        assert first > clock.log.start and app.state.events > 1
        await pilot.press("right", "right", "left")
        assert visible(app.state) == visible(full_fold_at(RECORDED, clock.offset))
        await pilot.press("shift+right")
        assert clock.current_experiment() == numbers[1]
        await pilot.press("shift+right", "shift+left")
        assert clock.current_experiment() == numbers[1]
        await pilot.press("right_square_bracket")
        assert clock.speed == 20
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert clock.speed == 5
        await pilot.press("g", *str(numbers[-2]), "enter")
        assert clock.current_experiment() == numbers[-2]
        assert visible(app.state) == visible(full_fold_at(RECORDED, clock.offset))
        await pilot.press("g", "9", "9", "9", "enter")  # not in the log: a notice, no move
        assert clock.current_experiment() == numbers[-2]
        await pilot.press("end")
        assert clock.at_end and app.state.loop.ended
        await pilot.press("home")
        assert clock.offset == clock.log.start
        clock.speed = 1000  # the recorded session lasts about a minute
        await pilot.press("space")
        assert clock.playing
        await pilot.pause(1.0)
        assert clock.offset > clock.log.start and app.state.events > 2
        await pilot.press("space")
        assert not clock.playing
        bar = app.screen.query_one("#replaybar")
        assert "paused" in str(bar.content)
        await pilot.press("q")
    assert app.return_value == "detached"


@pytest.mark.asyncio
async def test_panes_at_experiment_n_match_the_live_dashboard(tmp_path):
    """The screen at experiment N equals the live dashboard's on the log as it stood then (the
    replay has one more row, its clock bar, and another footer)."""
    log = ReplayLog(RECORDED)
    n = log.experiment_numbers()[len(log.experiment_numbers()) // 2 + 1]
    replay = ReplayDashboard(log, play=False)
    position = replay.clock.experiment_position(n)
    prefix = tmp_path / "events.jsonl"
    prefix.write_bytes(RECORDED.read_bytes()[:position])
    live = RatchetDashboard(LogFileSource(prefix))
    async with live.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        await pilot.pause(0.3)
        expected = [strip.text for strip in live.screen._compositor.render_strips()]
    async with replay.run_test(size=(160, 49)) as pilot:
        await pilot.press("g", *str(n), "enter")
        replay.refresh_dashboard()
        await pilot.pause(0.3)
        shown = [strip.text for strip in replay.screen._compositor.render_strips()]
    assert f"exp {n}/" in shown[1]
    assert shown[:1] + shown[2:-1] == expected[:-1]


def test_replay_command_needs_a_terminal_and_a_session(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ratchet.cli.main", "replay", str(RECORDED)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 2 and "needs a terminal" in done.stderr
    done = subprocess.run([sys.executable, "-m", "ratchet.cli.main", "replay", "nope", "-C",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("ratchet: error:")


@pytest.mark.asyncio
async def test_attaching_to_a_long_log_starts_from_the_fast_fold(tmp_path, monkeypatch):
    """`ratchet attach` on a long session starts at the log's end in one jump, with the state a
    full fold gives, then follows what the engine appends."""
    from ratchet.tui import launch

    monkeypatch.setattr(launch, "FAST_START_BYTES", 0)
    synthetic_night(tmp_path / "events.jsonl")
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write("\n")  # the engine ends a torn line when it reopens the log
    app = launch.dashboard(tmp_path)
    size = (tmp_path / "events.jsonl").stat().st_size
    assert app.source.tail.offset == size
    assert visible(app.state) == visible(full_fold_at(tmp_path / "events.jsonl", size))
    async with app.run_test(size=(100, 30)) as pilot:
        await caught_up(pilot)
        assert app.state.loop.last_exp == 6
        with open(tmp_path / "events.jsonl", "a") as f:
            f.write(json.dumps({"t": 1.9e9, "type": "exp_start", "exp": 7, "kind": "candidate",
                                "commit": "abc", "seed": 1, "budget": 20}) + "\n")
        await pilot.pause(0.6)
        await caught_up(pilot)
        assert app.state.loop.last_exp == 7 and app.state.running == 7
