"""A keep rule plugs in as one class: written here, registered, and run by a real session
without a line of the scheduler knowing it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trainers
from paced_agent import PacedAgent
from test_loop import FAST, check_ratchet_invariants, commit_workspace, read_log

from ratchet.engine.loop import rules
from ratchet.engine.loop.rules.base import FRONT, Finished, Rule, Ruling, Tally, no_verdict
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)


@dataclass
class Vals(Tally):
    vals: list[float] = field(default_factory=list)


class LowerMean(Rule):
    """Always keep the lower mean after two runs, on seeds 1 and 2 past the config's."""

    name = "lower_mean"

    def tally(self) -> Vals:
        return Vals()

    def next_seed(self, tally: Vals, exp: int, moved: bool, state) -> int:
        if moved:
            tally.vals.clear()
        tally.rounds += 1
        return self.settings.seed + tally.rounds

    def judge(self, run: Finished, tally: Vals, state) -> Ruling:
        shared = no_verdict(run, state)
        if shared is not None:
            return shared
        tally.vals.append(run.val_bpb)
        if len(tally.vals) < 2:
            first = run.kind == schema.CANDIDATE
            return Ruling(schema.PENDING_CONFIRM if first else schema.ANOTHER_RUN, again=FRONT)
        mean = statistics.fmean(tally.vals)
        if mean < state.best_bpb:
            return Ruling(schema.KEEP, {"new_best": mean})
        return Ruling(schema.DISCARD, {"new_best": mean})


def test_a_rule_written_in_a_test_runs_a_real_session(make_workspace, monkeypatch):
    monkeypatch.setitem(rules.RULES, LowerMean.name, LowerMean)
    ws = make_workspace("plugin", **FAST, min_improvement=0.0)
    config = ws.config()
    config.loop.baseline_seeds = 1
    configmod.save(ws.root, config)
    # a deliberately bad smoothing: the first change is a clear gain, the second changes nothing
    commit_workspace(ws, trainers.loop_bigram().replace("SMOOTHING = 1.0", "SMOOTHING = 50.0"))
    config = ws.config()
    config.loop.rule = LowerMean.name  # chosen the way ratchet.toml chooses a rule
    options = RunOptions(session="s-plugin", tag="plugin", max_experiments=2)
    Session(ws, config, options, PacedAgent(0.0, [("SMOOTHING", 1.0)])).run()

    log = read_log(ws.runs_dir() / options.session)
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    ends = [e for e in log if e["type"] == "exp_end"]
    candidates = [e for e in ends if e["kind"] == schema.CANDIDATE]
    assert len(candidates) == 2
    for first in candidates:  # every candidate ran exactly twice, on the rule's seeds
        runs = [first, *[e for e in ends if e.get("confirms") == first["exp"]]]
        assert [starts[e["exp"]]["seed"] for e in runs] == [config.experiment.seed,
                                                            config.experiment.seed + 1]
        assert runs[0]["decision"] == schema.PENDING_CONFIRM
        assert runs[1]["decision"] in (schema.KEEP, schema.DISCARD)
        assert runs[1]["new_best"] == statistics.fmean(e["val_bpb"] for e in runs)
    gain = [e for e in ends if e.get("confirms") == candidates[0]["exp"]][0]
    assert gain["decision"] == schema.KEEP
    state = statemod.fold(log)
    assert state.best_commit == gain["commit"] and state.best_bpb == gain["new_best"]
    check_ratchet_invariants(ws, log)


def test_the_scheduler_names_no_rule():
    source = (Path(rules.__file__).parents[1] / "scheduler.py").read_text()
    for name in rules.RULES:
        assert name not in source.lower()


def test_the_config_offers_every_registered_rule():
    assert set(configmod.RULES) == set(rules.RULES)
