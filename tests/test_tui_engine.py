"""The dashboard's control keys against a real engine process (bigram trainer, held runs)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import git
import pytest
import trainers
from dashboard_helpers import live_app, until

from ratchet.engine.loop import daemon
from ratchet.engine.loop.session import RunOptions
from ratchet.engine.protocol import control, events, paths
from ratchet.engine.workspace import config as configmod
from ratchet.tui.screens.confirm import ConfirmScreen
from ratchet.tui.screens.dashboard import DashboardScreen
from ratchet.tui.screens.steer import SteerScreen

pytestmark = pytest.mark.asyncio

FAST = {"budget_seconds": 31.0, "eval_tokens": 65536}


def bigram_workspace(make_workspace, name: str, hold: float, baseline_seeds: int = 2):
    """A workspace whose committed train.py is the fast bigram (held `hold` seconds)."""
    ws = make_workspace(name, **FAST)
    config = ws.config()
    config.loop.baseline_seeds = baseline_seeds
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text(trainers.loop_bigram(hold=hold))
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("test trainer")
    return ws


def start_engine(make_workspace, name: str, hold: float, baseline_seeds: int = 2):
    ws = bigram_workspace(make_workspace, name, hold, baseline_seeds)
    options = RunOptions(session=daemon.new_session_id(name), tag=name)
    return daemon.spawn(ws, options)


def log_of(folder) -> list[dict]:
    path = folder / "events.jsonl"
    return list(events.iter_events(path)) if path.exists() else []


def end_engine(folder, pid) -> None:
    if paths.pid_alive(pid):
        with contextlib.suppress(control.ControlError):
            control.send(folder / "control.sock", "stop")
        deadline = time.monotonic() + 30
        while paths.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if paths.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_every_control_key_reaches_the_engine(make_workspace):
    folder, pid = start_engine(make_workspace, "keys", hold=4.0)
    try:
        app = live_app(folder)
        async with app.run_test(size=(120, 40)) as pilot:
            state = app.state
            await until(pilot, lambda: state.running is not None and not app.read_only,
                        what="the first experiment to start")
            first = state.running
            # k asks first; n keeps the experiment running
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert isinstance(app.screen, DashboardScreen)
            # k, y: the running experiment ends killed
            await pilot.press("k")
            await pilot.press("y")
            await until(pilot, lambda: state.experiments[first].ended is not None,
                        what="the killed experiment's end")
            assert state.experiments[first].status == "killed"
            # p: pause (the engine pauses once the current run is over)
            await pilot.press("p")
            await until(pilot, lambda: any(e["type"] == "paused" for e in log_of(folder)),
                        what="the engine to pause")
            await until(pilot, lambda: state.phase == "paused", what="the paused phase")
            # s: a steer note through the input box
            await pilot.press("s")
            assert isinstance(app.screen, SteerScreen)
            await pilot.press(*"SMOOTHING=2.0", "enter")
            await until(pilot, lambda: any(e["type"] == "control" and e.get("cmd") == "steer"
                                           and e.get("text") == "SMOOTHING=2.0"
                                           for e in log_of(folder)), what="the steer event")
            # p again: resume, and the note reaches the agent's next proposal
            await pilot.press("p")
            await until(pilot, lambda: any(e["type"] == "resumed" for e in log_of(folder)),
                        what="the engine to resume")
            # the note reaches the next proposal the agent makes (one it prepared while the
            # last experiment trained may run first)
            await until(pilot, lambda: any(e["type"] == "proposal" and e.get("steer")
                                           for e in log_of(folder)), what="the steered proposal")
            steered = next(e for e in log_of(folder) if e["type"] == "proposal" and e.get("steer"))
            assert steered["steer"] == ["SMOOTHING=2.0"] and "SMOOTHING" in steered["description"]
            await until(pilot, lambda: state.running is not None and state.experiments[
                state.running].kind == "candidate", what="a candidate to start")
            candidate = state.experiments[state.running]
            # x, y: the engine stops and records the run in flight as interrupted
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await until(pilot, lambda: state.loop.ended, what="the session's end")
            assert state.loop.end_reason == "stopped"
            log = log_of(folder)
            stop = next(e["t"] for e in log if e["type"] == "control" and e["cmd"] == "stop")
            end = next(e for e in log if e["type"] == "exp_end" and e["exp"] == candidate.n)
            # in flight when the stop arrived: interrupted (a candidate the agent made short,
            # e.g. HOLD_SECONDS -> 0, can end first on a slow machine)
            assert state.experiments[candidate.n].status == (
                "interrupted" if end["t"] >= stop else "ok")
            await until(pilot, lambda: app.read_only, what="the keys to become read-only")
            await pilot.press("q")
        assert app.return_value == "detached"
    finally:
        end_engine(folder, pid)


async def test_q_closes_the_dashboard_and_leaves_the_engine_running(make_workspace):
    folder, pid = start_engine(make_workspace, "quit", hold=30.0, baseline_seeds=1)
    try:
        app = live_app(folder)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.state.running is not None,
                        what="the first experiment to start")
            await pilot.press("q")
        assert app.return_value == "detached"
        assert paths.pid_alive(pid)
        reply = control.send(folder / "control.sock", "ping")
        # training the first experiment, and maybe proposing the next one meanwhile
        assert reply["ok"] and reply["phase"] in ("training", "starting", "proposing")
        assert not any(e["type"] in ("control", "session_end") for e in log_of(folder))
    finally:
        end_engine(folder, pid)
