"""A resumed engine starts unpaused, and says so: `ping` and the state folded from the log
(`ratchet status`, the dashboard) report its true state from the resume on, not the paused
state the previous engine died in."""

from __future__ import annotations

from fault_checks import (
    keeping_workspace,
    kill_engine,
    log_of,
    ratchet,
    session_folder,
    start,
    wait_for,
)

from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import schema
from ratchet.engine.protocol import state as statemod


def test_a_resumed_engine_is_not_reported_paused(tmp_path, template_workspace):
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    run = start("--tag", "nap", cwd=ws.root)
    try:
        folder = session_folder(ws)
        assert wait_for(folder, "exp_start")
        assert ratchet("ctl", "pause", cwd=ws.root).returncode == 0
        assert wait_for(folder, "paused")
        kill_engine(folder)  # it dies paused
    finally:
        run.kill()
        run.communicate()
    assert statemod.fold(log_of(folder)).paused

    # the engine `ratchet run --resume` starts: its control socket answers before its loop runs
    session = Session(ws, ws.config(), RunOptions(session=folder.name, tag="nap", resume=True),
                      OfflineAgent(seed=1))
    try:
        reply = session.handle({"cmd": "ping"})
        assert reply["phase"] == "starting", reply
        session.emit(schema.SESSION_START, session=folder.name, tag="nap", resumed=True)
        reply = session.handle({"cmd": "ping"})
        assert reply["phase"] == "starting", reply
    finally:
        session.log.close()
    state = statemod.fold(log_of(folder))
    assert not state.paused and state.phase == "starting"
