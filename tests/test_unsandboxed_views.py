"""A session whose train.py ran outside the sandbox says so in every view: the dashboard's status
line, `ratchet status`, `ratchet ls` and `ratchet report`; a sandboxed one says nothing."""

from __future__ import annotations

import json

import pytest
from dashboard_helpers import RECORDED, caught_up

from ratchet.cli import main, report
from ratchet.engine.protocol import events
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.sources import LogFileSource
from ratchet.tui.view_state import fold

T0 = 1_700_000_000.0
MARK = "UNSANDBOXED"


def session(name: str, sandboxed: bool | None, metric_source: str = "harness",
            status: str = "ok", output_bytes: int = 1900, imported: bool = False) -> list[dict]:
    """A finished session of one baseline run whose result has `sandboxed` (left out if None)."""
    result = {"metric_source": metric_source, "output_bytes": output_bytes, "tail": ""}
    if sandboxed is not None:
        result["sandboxed"] = sandboxed
    val = 1.5 if status == "ok" else None
    return [
        {"t": T0, "type": "session_start", "session": name, "tag": "t", "branch": "ratchet/t",
         "base_commit": "c0", "config": {}, "agent": "offline", "resumed": False, "pid": 0,
         **({"imported": True, "source": "results.tsv"} if imported else {})},
        {"t": T0 + 1, "type": "exp_start", "exp": 1, "kind": "baseline", "commit": "c0",
         "budget": 10, "description": "baseline"},
        {"t": T0 + 12, "type": "exp_end", "exp": 1, "kind": "baseline", "status": status,
         "decision": "baseline" if status == "ok" else "crash", "val_bpb": val,
         "best_before": None, "delta": None, "margin": 0.0, "commit": "c0",
         "description": "baseline", "changes": {}, "result": result},
        {"t": T0 + 13, "type": "session_end", "reason": "max_experiments", "experiments": 1,
         "kept": 0, "best_bpb": val, "baseline_bpb": val, "best_commit": "c0"},
    ]


def write(ws, name: str, log: list[dict]):
    folder = ws / "runs" / name
    folder.mkdir(parents=True)
    with open(folder / "events.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in log)
    return folder


@pytest.fixture
def ws(tmp_path):
    configmod.save(tmp_path, configmod.Config())
    return tmp_path


@pytest.mark.parametrize(("log", "count"), [
    (session("s", sandboxed=False), 1),
    (session("s", sandboxed=True), 0),
    # an old log without metric_source was measured by the harness
    ([{**e, "result": {"sandboxed": False, "output_bytes": 10}} if e["type"] == "exp_end"
      else e for e in session("s", sandboxed=False)], 1),
    (session("s", sandboxed=False, status="crash", output_bytes=230), 1),  # it ran, then crashed
    # stopped before train.py started (an edited harness): nothing ran unsandboxed
    (session("s", sandboxed=False, status="crash", output_bytes=0), 0),
    # compat mode: train.py reports its own metric (and the report says so)
    (session("s", sandboxed=False, metric_source="self_reported"), 0),
    # an import: results.tsv knows nothing of a sandbox
    (session("s", sandboxed=None, metric_source="self_reported", imported=True), 0),
], ids=["unsandboxed", "sandboxed", "old-log", "crash-after-output", "crash-before-start",
        "compat", "imported"])
def test_the_folded_state_counts_unsandboxed_runs(log, count):
    assert statemod.fold(log).unsandboxed == count


def test_the_recorded_session_ran_without_bubblewrap():
    assert fold(events.iter_events(RECORDED)).loop.unsandboxed == 8


@pytest.mark.asyncio
@pytest.mark.parametrize("sandboxed", [False, True])
async def test_the_status_line_marks_an_unsandboxed_session(ws, sandboxed):
    folder = write(ws, "s-view", session("s-view", sandboxed=sandboxed))
    app = RatchetDashboard(LogFileSource(folder / "events.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        line = app.screen.query_one("#status").render()
        assert line.plain.startswith(" ended ")
        assert (MARK in line.plain) is not sandboxed
        assert len(line.plain) <= 80 and "read-only" in line.plain
        if not sandboxed:
            start = line.plain.index(MARK)
            styles = [str(s.style) for s in line.spans if s.start <= start < s.end]
            assert any("red" in s for s in styles)


@pytest.mark.parametrize("sandboxed", [False, True])
def test_ratchet_status_says_so_in_one_line(ws, capsys, sandboxed):
    write(ws, "s-view", session("s-view", sandboxed=sandboxed))
    assert main.main(["status", "s-view", "-C", str(ws)]) == 0
    flagged = [line for line in capsys.readouterr().out.splitlines() if MARK in line]
    if sandboxed:
        assert flagged == []
    else:
        assert flagged == ["sandbox   UNSANDBOXED: 1 run trained outside the sandbox "
                           "(val data readable)"]
        assert len(flagged[0]) <= 80


def test_ratchet_ls_flags_the_unsandboxed_session_only(ws, capsys):
    write(ws, "s-a-boxed", session("s-a-boxed", sandboxed=True))
    write(ws, "s-b-open", session("s-b-open", sandboxed=False))
    write(ws, "s-c-imported", session("s-c-imported", sandboxed=None,
                                      metric_source="self_reported", imported=True))
    assert main.main(["ls", "-C", str(ws)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "sandbox"
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows["s-b-open"][-1] == MARK and rows["s-b-open"][3] == "finished"
    assert MARK not in " ".join(rows["s-a-boxed"] + rows["s-c-imported"])


def test_ratchet_ls_of_sandboxed_sessions_has_no_sandbox_column(ws, capsys):
    write(ws, "s-a-boxed", session("s-a-boxed", sandboxed=True))
    assert main.main(["ls", "-C", str(ws)]) == 0
    out = capsys.readouterr().out
    assert MARK not in out and "sandbox" not in out
    assert out.splitlines()[0].split()[-1] == "cost"


@pytest.mark.parametrize("sandboxed", [False, True])
def test_ratchet_report_has_one_header_line(ws, capsys, sandboxed):
    write(ws, "s-view", session("s-view", sandboxed=sandboxed))
    assert main.main(["report", "s-view", "-C", str(ws), "--no-chart"]) == 0
    text = capsys.readouterr().out
    flagged = [line for line in text.splitlines() if MARK in line]
    assert flagged == ([] if sandboxed else [
        "sandbox   UNSANDBOXED: 1 run trained outside the sandbox (val data readable)"])
    md = report.markdown(report.figures(session("s-view", sandboxed=sandboxed)))
    assert (f"| sandbox | {MARK}: 1 run" in md) is not sandboxed


@pytest.mark.asyncio
async def test_the_marked_status_line_fits_80_columns_while_training(ws):
    log = session("s-live", sandboxed=False)[:-1] + [  # no session_end: still training
        {"t": T0 + 14, "type": "proposal", "exp": 12, "description": "change 12"},
        {"t": T0 + 15, "type": "exp_start", "exp": 12, "kind": "candidate", "commit": "c12",
         "budget": 300, "description": "change 12"},
        {"t": T0 + 15, "type": "phase", "exp": 12, "phase": "training"},
        {"t": T0 + 165, "type": "train_log", "exp": 12, "step": 100, "loss": 3.0,
         "elapsed": 150.0},
    ]
    folder = write(ws, "s-live", log)
    app = RatchetDashboard(LogFileSource(folder / "events.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        plain = app.screen.query_one("#status").render().plain
        assert plain.startswith(" training   UNSANDBOXED  exp 12  ")
        assert len(plain) <= 80 and plain.rstrip().endswith("read-only"), plain
