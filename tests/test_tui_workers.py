"""The dashboard with several workers: every busy worker's experiment, progress and curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dashboard_helpers import caught_up
from test_replay import full_fold_at, visible
from textual.widgets import DataTable

from ratchet.engine.protocol import events
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.panes.status import StatusLine
from ratchet.tui.replay_log import ReplayLog
from ratchet.tui.sources import LogFileSource


def two_workers(path: Path) -> None:
    """Experiments 1 and 2 train at once on workers 0 and 1; 1 ends first, 3 starts on 0."""
    t = 1.8e9
    lines = [{"t": t, "type": "session_start", "session": "pair", "tag": "p", "config": {},
              "agent": "offline", "pid": 1}]
    for n, worker in ((1, "0"), (2, "1")):
        lines.append({"t": t + n, "type": "proposal", "exp": n, "description": f"change {n}",
                      "diff": f"-A = {n}\n+A = {n + 1}\n", "files": ["train.py"]})
        lines.append({"t": t + n, "type": "exp_start", "exp": n, "kind": "candidate",
                      "commit": f"{n:07x}", "seed": 1, "budget": 60, "worker": worker,
                      "description": f"change {n}"})
    for step in range(1, 30):
        for n, worker in ((1, "0"), (2, "1")):
            lines.append({"t": t + 3 + step, "type": "train_log", "exp": n, "step": step,
                          "loss": n + 1 / step, "lr": 0.01, "tok_s": 1.0, "elapsed": step,
                          "worker": worker})
        lines.append({"t": t + 3 + step, "type": "resources", "cpu_percent": 50.0,
                      "memory_percent": 30.0, "memory_used_gb": 2.0, "gpus": [],
                      "source": "psutil"})
    lines.append({"t": t + 40, "type": "exp_end", "exp": 1, "kind": "candidate", "status": "ok",
                  "decision": "discard", "val_bpb": 2.1, "worker": "0", "commit": "0000001",
                  "description": "change 1", "result": {}})
    lines.append({"t": t + 41, "type": "exp_start", "exp": 3, "kind": "candidate",
                  "commit": "0000003", "seed": 1, "budget": 60, "worker": "0",
                  "description": "change 3"})
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


@pytest.mark.asyncio
async def test_every_busy_worker_is_shown(tmp_path):
    path = tmp_path / "events.jsonl"
    two_workers(path)
    app = RatchetDashboard(LogFileSource(path))
    async with app.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        assert [r.n for r in app.state.running_experiments()] == [2, 3]
        runs = app.screen.query_one(StatusLine)._facts["runs"]
        assert [(n, worker) for n, worker, _, _ in runs] == [(2, "1"), (3, "0")]
        assert runs[0][2] == pytest.approx(39.0)  # worker 1 started #2 39 s before the last event
        status = str(app.screen.query_one(StatusLine).render())
        assert "w1 #2" in status and "w0 #3" in status
        table = app.screen.query_one(DataTable)
        cells = {str(table.get_row(str(n))[4]) for n in (1, 2, 3)}
        assert cells == {"discard", "running w1", "running w0"}
        cpu = app.screen.query_one("#cpu-label").content
        assert "w0 #3" in str(cpu) and "w1 #2" in str(cpu)
        # both the newest experiment and the one still training on worker 1 are charted
        loss = app.screen.query_one("#loss")
        assert {2, 3} <= {n for n, _, _ in loss._key[2]}


def test_replay_of_two_workers_matches_the_full_fold(tmp_path):
    path = tmp_path / "events.jsonl"
    two_workers(path)
    log = ReplayLog(path)
    for _, end in events._scan(path, 0):
        assert visible(log.state_at(end)) == visible(full_fold_at(path, end))
