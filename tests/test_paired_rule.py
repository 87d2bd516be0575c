"""The paired rule in a real session: a candidate runs on the best's seeds in turn, a keep is
measured on every one of them and gives the new best its reference on each, a change that
does nothing is never kept, and the log, results.tsv and the dashboard's table say why."""

from __future__ import annotations

import pytest
import trainers
from paced_agent import PacedAgent
from test_loop import FAST, check_ratchet_invariants, commit_workspace, read_log

from ratchet.cli import report
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import noise
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import results_tsv
from ratchet.tui.panes.experiments import _cells
from ratchet.tui.view_state import DashboardState

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)


def test_a_real_gain_is_kept_on_the_best_seeds_and_noise_is_never_kept(make_workspace):
    ws = make_workspace("paired", **{**FAST, "budget_seconds": 31.0}, min_improvement=0.0)
    config = ws.config()
    assert config.loop.rule == "paired"  # the default
    config.loop.baseline_seeds = 3  # the default is 4; three seeds keep the test short
    configmod.save(ws.root, config)
    # a deliberately bad smoothing the agent can only improve on
    commit_workspace(ws, trainers.loop_bigram().replace("SMOOTHING = 1.0", "SMOOTHING = 50.0"))
    # the gain first, then two changes of a constant nothing reads
    options = RunOptions(session="s-paired", tag="paired", max_experiments=3)
    Session(ws, ws.config(), options, PacedAgent(0.0, [("SMOOTHING", 1.0)])).run()
    log = read_log(ws.runs_dir() / options.session)
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    ends = [e for e in log if e["type"] == "exp_end"]
    seeds = [starts[e["exp"]]["seed"] for e in ends if e["kind"] == "baseline"]
    assert seeds == [1337, 1338, 1339]

    kept = [e for e in ends if e["decision"] == "keep"]
    assert kept, "\n".join(f"{e['description']} {e['decision']} {e.get('val_bpb')} "
                            f"{e.get('paired')}" for e in ends)
    first = kept[0]
    candidate = first["confirms"]
    runs = [e for e in ends if e["exp"] == candidate or e.get("confirms") == candidate]
    # its runs took the best's seeds in order, each compared with the best's run on that seed
    assert [starts[e["exp"]]["seed"] for e in runs] == seeds
    assert [e["decision"] for e in runs] == ["pending_confirm", "another_run", "keep"]
    assert first["paired"]["runs"] == 3 and "keep line" in first["paired"]["why"]
    assert first["paired"]["effect"] < 0 and first["paired"]["se"] >= 0
    assert sorted(first["paired"]["seeds"]) == [str(s) for s in seeds]
    assert first["new_best"] == sum(e["val_bpb"] for e in runs) / 3
    # the new best's reference on each seed halves the luck of the runs that got it kept
    old_best = {starts[e["exp"]]["seed"]: e["val_bpb"] for e in ends if e["kind"] == "baseline"}
    effect = first["paired"]["effect"]
    for e in runs:
        seed = starts[e["exp"]]["seed"]
        assert first["paired"]["seeds"][str(seed)] == pytest.approx(
            (e["val_bpb"] + old_best[seed] + effect) / 2, abs=1e-6)
    # a change that does nothing is never kept, and never runs past the best's seeds
    for noise_run in [e for e in ends if e["kind"] == "candidate" and e["exp"] != candidate]:
        later = [e for e in ends if e.get("confirms") == noise_run["exp"]]
        assert all(e["decision"] != "keep" for e in [noise_run, *later])
        assert 1 + len(later) <= len(seeds)

    state = statemod.fold(log)
    assert sorted(state.best_runs) == seeds  # the next candidate pairs with the kept runs
    # every run of the kept candidate is a keep row in results.tsv, written with the last one
    rows = [r for r in results_tsv.read(ws.root / "results.tsv")
            if r["commit"] == first["commit"][:7]]
    assert [r["status"] for r in rows] == ["keep"] * 3
    check_ratchet_invariants(ws, log)

    # what the session can detect, as status, report and the table say it
    measured = noise.of(state)
    assert measured.rule == "paired" and measured.sigma is not None
    assert "detects gains of" in measured.line()
    summary = report.text(report.figures(log), chart=False)
    assert "noise ±" in summary and "runs per candidate" in summary
    board = DashboardState()
    for event in log:
        board.apply(event)
    cells = _cells(board.experiments[first["exp"]])
    assert cells[4].plain == "keep·3"
    assert "±" in cells[3].plain
