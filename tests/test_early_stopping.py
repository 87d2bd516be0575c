"""Early stopping in real sessions: a clear loser is stopped and discarded, a candidate that
lies about its own curve only buys itself a full run, and a kept change that lied about its
curve cannot get honest candidates stopped."""

from __future__ import annotations

import pytest
import trainers
from paced_agent import PacedAgent
from test_loop import FAST, check_ratchet_invariants, commit_workspace, read_log

from ratchet.engine.loop.rules import early_stop as es
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import results_tsv

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)


def run(make_workspace, name: str, plan: list[tuple[str, float]], proposals: int,
        early_stop: bool = True) -> tuple[list[dict], object]:
    ws = make_workspace(name, **FAST, min_improvement=0.0)
    config = ws.config()
    config.loop.baseline_seeds = 2
    config.loop.early_stop = early_stop
    configmod.save(ws.root, config)
    commit_workspace(ws, trainers.curved())
    options = RunOptions(session=f"s-{name}", tag=name, max_experiments=proposals)
    Session(ws, ws.config(), options, PacedAgent(0.0, plan)).run()
    return read_log(ws.runs_dir() / options.session), ws


def ends_of(log: list[dict]) -> list[dict]:
    return [e for e in log if e["type"] == schema.EXP_END and e["kind"] != schema.BASELINE]


def test_a_clear_loser_is_stopped_early_and_discarded(make_workspace):
    log, ws = run(make_workspace, "loser", [("SMOOTHING", 5000.0)], 2)
    loser, noise = [e for e in ends_of(log) if e["kind"] == schema.CANDIDATE]
    assert loser["status"] == schema.STOPPED_EARLY and loser["decision"] == schema.DISCARD
    fraction = loser["early_stop"]["fraction"]
    assert fraction == es.JUDGED[0]  # at the first checkpoint judged: an eighth of the budget
    assert loser["early_stop"]["gap"] > loser["early_stop"]["threshold"] >= es.PRIOR[fraction]
    assert "stopped early at 12.5%" in loser["result"]["error"]
    # it stopped at once: far less training than a full run's logged steps
    steps = [e for e in log if e["type"] == schema.TRAIN_LOG and e["exp"] == loser["exp"]]
    assert len(steps) < 25
    # the change that does nothing ran to the end, and its gaps calibrate later thresholds
    assert noise["status"] == schema.OK
    assert set(noise["early_stop"]) == {"gaps", "final", "schedule"}
    assert noise["early_stop"]["schedule"] is False  # calibrates changes that are not schedule
    state = statemod.fold(log)
    assert state.stopped_early == 1
    assert state.saved_seconds == FAST["budget_seconds"] * (1 - fraction)
    assert len(state.early_samples) >= 1
    row = [r for r in results_tsv.read(ws.root / "results.tsv")
           if r["commit"] == loser["commit"][:7]]
    assert [r["status"] for r in row] == ["discard"]
    assert "(stopped early at 12.5%: loss +" in row[0]["description"]
    check_ratchet_invariants(ws, log)


def test_a_candidate_lying_about_its_curve_buys_only_a_full_run(make_workspace):
    log, _ = run(make_workspace, "cheat", [("CHEAT", 1)], 1)
    cheat = [e for e in ends_of(log) if e["kind"] == schema.CANDIDATE][0]
    assert cheat["status"] == schema.OK  # never stopped: its curve looked better than the best's
    assert cheat["decision"] in (schema.DISCARD, schema.NEAR_MISS)  # the harness measured it
    assert cheat["val_bpb"] > cheat["best_before"]


def test_a_kept_change_that_lied_about_its_curve_stops_no_honest_candidate(make_workspace):
    # the better model, lying about its curve, then the same model logged honestly
    log, ws = run(make_workspace, "liar", [("GOOD_LIAR", 1), ("HONEST", 1)], 2)
    ends = ends_of(log)
    kept = [e for e in ends if e["decision"] == schema.KEEP]
    assert kept, [(e["description"], e["decision"], e.get("paired")) for e in ends]
    # the keep's further runs were watched (their gaps calibrate) but judged nowhere
    further = [e for e in ends if e["kind"] == schema.CONFIRM]
    assert further and all(set(e["early_stop"]) == {"gaps", "final", "schedule"}
                           for e in further), further
    kept_at = log.index(kept[0])
    started_after = {e["exp"] for e in log[kept_at:] if e["type"] == schema.EXP_START}
    after = [e for e in ends if e["exp"] in started_after and e["kind"] == schema.CANDIDATE]
    assert after, "no candidate ran after the keep"
    # the same model as the best, logged honestly: its curve is far above what the best
    # claimed, but not above what the best's measured val_bpb allows
    assert [e["changes"] for e in after] == [{"HONEST": 1}]
    assert all(e["status"] != schema.STOPPED_EARLY for e in after), after
    # taken at its word, the best's curve would have stopped them at the first checkpoint
    state = statemod.fold(log)
    for e in after:
        seed = e["result"]["seed"]
        claimed = es.checkpoints_of(state.best_profiles[seed]["profile"])
        gaps = es.gaps(es.checkpoints_of(e["result"]["profile"]), claimed)
        assert es.judge(gaps, es.PRIOR) is not None, gaps
    check_ratchet_invariants(ws, log)


def test_without_early_stop_every_run_goes_to_the_end(make_workspace):
    log, _ = run(make_workspace, "off", [("SMOOTHING", 5000.0)], 1, early_stop=False)
    loser = [e for e in ends_of(log) if e["kind"] == schema.CANDIDATE][0]
    assert loser["status"] == schema.OK and "early_stop" not in loser
