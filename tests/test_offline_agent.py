"""The offline agent: parsing, one-constant edits, constraints, learning, steering. No training:
outcomes come from small formulas over the proposed file, with the test acting as the loop."""

from __future__ import annotations

import math
import re

import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ratchet.engine.agents.base import AgentError, Context, HistoryEntry, Proposal
from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.agents.offline.constants import parse_constants
from ratchet.engine.agents.offline.memory import CRASH_PENALTY, NO_RESULT_PENALTY
from ratchet.engine.agents.offline.ranges import search_range
from ratchet.engine.data import profiles
from ratchet.engine.workspace import layout

SEARCHED = ["N_LAYER", "N_EMBD", "N_HEAD", "MLP_RATIO", "SEQ_LEN", "BATCH_SIZE", "GRAD_ACCUM",
            "LEARNING_RATE", "MIN_LR_FRAC", "WARMUP_FRAC", "WEIGHT_DECAY", "BETA1", "BETA2",
            "GRAD_CLIP", "ROPE_BASE", "INIT_STD"]
SMALL = ("N_LAYER = 2  # blocks\nLEARNING_RATE = 0.01  # peak\nWARMUP_FRAC = 0.05\n"
         "N_EMBD = 64\nN_HEAD = 2\n")


@pytest.fixture(scope="module")
def source() -> str:
    return layout.with_constants(layout.template_text("train.py"), profiles.CPU)


def context(files: str, best: float | None = 2.7, **kw) -> Context:
    return Context(files={"train.py": files}, program="", history=kw.pop("history", []),
                   best_bpb=best, margin=0.0, **kw)


def values(text: str) -> dict[str, int | float]:
    return {name: c.value for name, c in parse_constants(text).items()}


def lr_objective(text: str) -> float:
    return (math.log10(values(text)["LEARNING_RATE"]) - math.log10(0.03)) ** 2 + 2.5


def entry(n: int, proposal: Proposal, val: float | None, best: float, status: str = "crash"
          ) -> HistoryEntry:
    """What the loop reports: a crash (or `status`) when there is no val_bpb."""
    if val is None:
        return HistoryEntry(n, proposal.description, status, "crash", None, None, proposal.changes)
    decision = "keep" if val < best else "discard"
    return HistoryEntry(n, proposal.description, "ok", decision, val, val - best,
                        proposal.changes)


def run_loop(agent: OfflineAgent, start: str, objective, steps: int, tell_crashes: bool = True
             ) -> tuple[list[Proposal], float]:
    """The loop in miniature: propose, score, keep if better, report back."""
    best_text, best = start, objective(start)
    assert best is not None
    agent.observe(Proposal("baseline", {}), HistoryEntry(0, "baseline", "ok", "baseline", best,
                                                         None))
    proposals = []
    for n in range(1, steps + 1):
        proposal = agent.propose(context(best_text, best), lambda _: None)
        proposals.append(proposal)
        val = objective(proposal.files["train.py"])
        if val is None and not tell_crashes:
            continue
        agent.observe(proposal, entry(n, proposal, val, best))
        if val is not None and val < best:
            best_text, best = proposal.files["train.py"], val
    return proposals, best


def test_parses_the_numeric_constants_of_the_cpu_template(source):
    found = values(source)
    ignored = ("LOG_EVERY", "HANDOFF_RESERVE_S")
    assert [n for n in found if n not in ignored] == SEARCHED  # COMPILE is a bool: left out
    for name, value in profiles.CPU.items():
        assert found[name] == value and type(found[name]) is type(value)
    agent, said = OfflineAgent(), []
    agent.propose(context(source), said.append)
    assert ("not searched: LOG_EVERY (bookkeeping), COMPILE (a flag), HANDOFF_RESERVE_S "
            "(bookkeeping)") in said[0]
    assert set(agent._ranges) == set(SEARCHED)


def test_parsing_rules():
    text = ("import math\nA = 1\nNEG = -0.5  # c\nFLAG = True\nNAME = 'x'\nlower = 3\n"
            "EXPR = 2 * 3\nTWICE = 1\nTWICE = 2\nANN: float = 0.25\nX, Y = 1, 2\n"
            "if A:\n    INNER = 4\n")
    found = parse_constants(text)
    # literal arithmetic is read (EXPR = 2 * 3); names, calls and control flow are not
    assert {n: c.value for n, c in found.items()} == {"A": 1, "NEG": -0.5, "EXPR": 6,
                                                      "ANN": 0.25}
    assert text[found["NEG"].start:found["NEG"].end] == "-0.5"


def test_search_ranges_follow_the_baseline_values():
    lr = search_range("LEARNING_RATE", 0.01)
    assert isinstance(lr, FloatDistribution) and lr.log
    assert (lr.low, lr.high) == pytest.approx((0.0025, 0.04))
    for name, value in [("WARMUP_FRAC", 0.05), ("BETA1", 0.9), ("BETA2", 0.95),
                        ("MIN_LR_FRAC", 0.0)]:
        dist = search_range(name, value)
        assert isinstance(dist, FloatDistribution) and not dist.log
        assert 0.0 <= dist.low <= value <= dist.high <= 1.0 and dist.high > dist.low
    assert search_range("N_LAYER", 2) == IntDistribution(1, 4)
    assert search_range("GRAD_ACCUM", 1) == IntDistribution(1, 2)
    zero = search_range("GRAD_CLIP", 0.0)
    assert isinstance(zero, FloatDistribution) and zero.low == 0.0 and 0 < zero.high <= 1


def test_each_proposal_changes_one_constant_and_nothing_else(source):
    agent = OfflineAgent(seed=3)
    before = values(source)
    old_lines = source.splitlines(keepends=True)
    for _ in range(12):
        proposal = agent.propose(context(source), lambda _: None)
        text = proposal.files["train.py"]
        compile(text, "train.py", "exec")
        after = values(text)
        changed = [n for n in before if after[n] != before[n]]
        assert len(changed) == 1 and list(proposal.changes) == changed
        name = changed[0]
        assert proposal.changes[name] == after[name] and type(after[name]) is type(before[name])
        assert re.fullmatch(rf"{name} \S+ -> \S+", proposal.description)
        assert "\n" not in proposal.rationale and proposal.rationale
        # byte-identical apart from the value's text: same lines, same comment
        new_lines = text.splitlines(keepends=True)
        assert len(new_lines) == len(old_lines)
        diff = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
        assert len(diff) == 1
        old, new = old_lines[diff[0]], new_lines[diff[0]]
        assert new.startswith(f"{name} = ") and new.split("#")[1:] == old.split("#")[1:]
        if isinstance(after[name], float):  # readable: at most 4 significant digits
            assert float(f"{after[name]:.4g}") == after[name]


@pytest.fixture(scope="module")
def fifty(source) -> list[Proposal]:
    """50 proposals from one unchanging best, with flat outcomes reported back."""
    agent = OfflineAgent(seed=1)
    agent.observe(Proposal("baseline", {}), HistoryEntry(0, "baseline", "ok", "baseline", 2.7,
                                                         None))
    proposals = []
    for n in range(1, 51):
        proposal = agent.propose(context(source), lambda _: None)
        proposals.append(proposal)
        val = 2.7 + 0.001 * (n % 3)
        agent.observe(proposal, HistoryEntry(n, proposal.description, "ok", "discard", val,
                                             val - 2.7, proposal.changes))
    return proposals


def test_head_constraint_always_holds(fifty):
    for proposal in fifty:
        found = values(proposal.files["train.py"])
        assert found["N_EMBD"] % found["N_HEAD"] == 0
        assert (found["N_EMBD"] // found["N_HEAD"]) % 2 == 0
    touched = {next(iter(p.changes)) for p in fifty}
    assert {"N_EMBD", "N_HEAD"} & touched  # the constraint was actually exercised
    assert len(touched) >= 8  # and the search spreads over the constants


def test_no_duplicate_proposals_from_the_same_best(fifty):
    assert len({p.description for p in fifty}) == len(fifty)


def test_learns_from_outcomes(source):
    baseline = lr_objective(source)
    for seed in range(3):
        proposals, best = run_loop(OfflineAgent(seed=seed), source, lr_objective, 10)
        assert best < baseline, f"seed {seed} did not improve in 10 proposals"
        # it noticed that the learning rate matters and kept working on it
        assert sum("LEARNING_RATE" in p.changes for p in proposals) >= 4


def test_asked_points_do_not_become_observations(source):
    agent = OfflineAgent()
    for _ in range(3):
        agent.propose(context(source), lambda _: None)
    states = {t.state for t in agent.study.trials}
    assert states == {TrialState.FAIL}


def test_crashes_are_recorded_with_a_penalty(source):
    agent = OfflineAgent()
    first = agent.propose(context(source), lambda _: None)
    agent.observe(first, entry(1, first, None, 2.7))  # nothing has finished yet
    assert agent.study.trials[-1].value == NO_RESULT_PENALTY
    second = agent.propose(context(source), lambda _: None)
    agent.observe(second, entry(2, second, 2.9, 2.7))
    third = agent.propose(context(source), lambda _: None)
    agent.observe(third, entry(3, third, None, 2.7, status="timeout"))
    assert agent.study.trials[-1].value == pytest.approx(2.9 + CRASH_PENALTY)
    killed = agent.propose(context(source), lambda _: None)
    count = len(agent.study.trials)
    agent.observe(killed, HistoryEntry(4, killed.description, "killed", "discard", None, None))
    assert len(agent.study.trials) == count  # a killed run says nothing about its config


def test_crashing_region_is_avoided_after_a_crash():
    def objective(text: str) -> float | None:
        found = values(text)
        if found["N_LAYER"] > 3:
            return None
        return lr_objective(text) + 0.01 * abs(found["N_LAYER"] - 3)

    def crashes(proposals: list[Proposal]) -> int:
        return sum(values(p.files["train.py"])["N_LAYER"] > 3 for p in proposals)

    learned = control = 0
    for seed in (3, 7):
        with_crashes, _ = run_loop(OfflineAgent(seed=seed), SMALL, objective, 20)
        blind, _ = run_loop(OfflineAgent(seed=seed), SMALL, objective, 20,
                            tell_crashes=False)
        assert crashes(with_crashes) <= 1  # once told, it does not go back past the crash
        learned, control = learned + crashes(with_crashes), control + crashes(blind)
    assert learned < control


def test_steering_by_name_and_by_value(source):
    agent, said = OfflineAgent(), []
    steer = ["try a bigger N_LAYER"]
    proposal = agent.propose(context(source, steer=steer), said.append)
    assert list(proposal.changes) == ["N_LAYER"] and proposal.changes["N_LAYER"] > 2
    assert any("Following the note" in s for s in said)
    steer = [*steer, "focus on the learning rate"]
    proposal = agent.propose(context(source, steer=steer), lambda _: None)
    assert list(proposal.changes) == ["LEARNING_RATE"]
    steer = [*steer, "LEARNING_RATE=0.02"]
    proposal = agent.propose(context(source, steer=steer), lambda _: None)
    assert proposal.changes == {"LEARNING_RATE": 0.02}
    assert proposal.description == "LEARNING_RATE 0.01 -> 0.02"
    assert "LEARNING_RATE = 0.02  # peak AdamW learning rate" in proposal.files["train.py"]
    # an old note is not acted on twice
    proposal = agent.propose(context(source, steer=steer), lambda _: None)
    assert proposal.changes != {"LEARNING_RATE": 0.02}
    # an invalid width is moved to the nearest one rotary attention accepts
    steer = [*steer, "N_EMBD = 70"]
    proposal = agent.propose(context(source, steer=steer), lambda _: None)
    assert proposal.changes == {"N_EMBD": 68}


def test_steering_notes_handed_once_by_the_loop(source):
    """The session drains its note queue: the same text sent again later is a new request."""
    agent = OfflineAgent()
    note = "try a bigger N_LAYER"
    first = agent.propose(context(source, steer=[note]), lambda _: None)
    between = agent.propose(context(source, steer=[]), lambda _: None)
    again = agent.propose(context(source, steer=[note]), lambda _: None)
    assert first.changes == {"N_LAYER": 3} and again.changes == {"N_LAYER": 4}
    assert "steered" not in between.rationale


def test_steering_understands_plain_words(source):
    agent = OfflineAgent()
    proposal = agent.propose(context(source, steer=["use fewer n layers"]), lambda _: None)
    assert proposal.changes == {"N_LAYER": 1}
    steer = ["use fewer n layers", "a smaller learning rate please"]
    proposal = agent.propose(context(source, steer=steer), lambda _: None)
    assert list(proposal.changes) == ["LEARNING_RATE"] and proposal.changes["LEARNING_RATE"] < 0.01


def test_steering_ignores_seeds_and_unknown_names(source):
    text = source.replace("N_LAYER = 2", "SEED = 1\nN_LAYER = 2")
    agent, said = OfflineAgent(), []
    proposal = agent.propose(context(text, steer=["SEED=7", "make it faster"]), said.append)
    assert "SEED" not in proposal.changes
    assert any("SEED does not change val_bpb" in s for s in said)
    assert any("names no constant" in s for s in said)


def test_in_flight_and_recent_history_are_not_repeated(source):
    agent = OfflineAgent()
    history = [HistoryEntry(0, "baseline", "ok", "baseline", 2.7, None),
               HistoryEntry(1, "N_LAYER 2 -> 3", "ok", "discard", 2.8, 0.1, {"N_LAYER": 3})]
    ctx = context(source, history=history, steer=["LEARNING_RATE=0.02", "N_LAYER=3"],
                  in_flight=["LEARNING_RATE 0.01 -> 0.02"])
    proposal = agent.propose(ctx, lambda _: None)
    assert proposal.changes not in ({"LEARNING_RATE": 0.02}, {"N_LAYER": 3})


def test_history_is_learned_when_the_loop_did_not_report_it(source):
    kept = source.replace("LEARNING_RATE = 0.01 ", "LEARNING_RATE = 0.02 ")
    history = [HistoryEntry(0, "baseline", "ok", "baseline", 2.7, None),
               HistoryEntry(1, "LEARNING_RATE 0.01 -> 0.02", "ok", "keep", 2.6, -0.1,
                            {"LEARNING_RATE": 0.02}),
               HistoryEntry(2, "N_LAYER 2 -> 3", "crash", "crash", None, None, {"N_LAYER": 3})]
    agent = OfflineAgent()
    agent.propose(context(kept, 2.6, history=history), lambda _: None)
    done = [t for t in agent.study.trials if t.state == TrialState.COMPLETE]
    assert [t.params["LEARNING_RATE"] for t in done] == [0.01, 0.02, 0.02]
    assert [t.params["N_LAYER"] for t in done] == [2, 2, 3]
    assert done[2].value == pytest.approx(2.7 + CRASH_PENALTY)
    agent.observe(Proposal("N_LAYER 2 -> 3", {}), history[2])  # reported late: not twice
    assert len([t for t in agent.study.trials if t.state == TrialState.COMPLETE]) == 3


def test_resume_reported_before_the_first_proposal(source):
    """As the session does on a resume: every logged entry through observe, then a proposal."""
    kept = source.replace("LEARNING_RATE = 0.01 ", "LEARNING_RATE = 0.02 ")
    history = [HistoryEntry(1, "baseline", "ok", "baseline", 2.7, None),
               HistoryEntry(2, "baseline", "ok", "baseline", 2.72, None),
               HistoryEntry(3, "LEARNING_RATE 0.01 -> 0.02", "ok", "keep", 2.6, -0.1,
                            {"LEARNING_RATE": 0.02}),
               HistoryEntry(4, "WARMUP_FRAC 0.05 -> 0.1", "ok", "discard", 2.65, 0.05,
                            {"WARMUP_FRAC": 0.1})]
    agent = OfflineAgent()
    for item in history:
        agent.observe(Proposal(item.description, {}, changes=item.changes), item)
    proposal = agent.propose(context(kept, 2.6, history=history), lambda _: None)
    done = [t for t in agent.study.trials if t.state == TrialState.COMPLETE]
    assert [(t.params["LEARNING_RATE"], t.params["WARMUP_FRAC"]) for t in done] == [
        (0.01, 0.05), (0.01, 0.05), (0.02, 0.05), (0.02, 0.1)]
    assert proposal.changes != {"WARMUP_FRAC": 0.1}


def test_emits_its_reasoning_in_pieces(source):
    agent = OfflineAgent()
    agent.observe(Proposal("baseline", {}), HistoryEntry(0, "baseline", "ok", "baseline", 2.7,
                                                         None))
    for _ in range(2):
        said: list[str] = []
        proposal = agent.propose(context(source), said.append)
        assert len(said) >= 3
        assert any("study has" in s for s in said) and proposal.description in said[-1]


def test_agent_error_without_constants():
    with pytest.raises(AgentError, match="no numeric constants"):
        OfflineAgent().propose(context("import math\nLOG_EVERY = 10\nname = 'x'\n"),
                               lambda _: None)
    with pytest.raises(AgentError):
        OfflineAgent().propose(Context({"other.py": "A = 1\n"}, "", [], None, 0.0),
                               lambda _: None)


def test_agent_error_when_nothing_is_left():
    agent = OfflineAgent()
    seen = set()
    with pytest.raises(AgentError, match="no untried"):
        for _ in range(10):  # GRAD_ACCUM = 1 can only become 2
            seen.add(agent.propose(context("GRAD_ACCUM = 1\n"), lambda _: None).description)
    assert seen == {"GRAD_ACCUM 1 -> 2"}


def test_same_seed_same_proposals(source):
    def descriptions(seed: int) -> list[str]:
        proposals, _ = run_loop(OfflineAgent(seed=seed), source, lr_objective, 6)
        return [p.description for p in proposals]

    assert descriptions(5) == descriptions(5)
    assert descriptions(5) != descriptions(6)


def test_diagnostics_say_why_a_region_is_avoided_and_slow_runs_are_not_pushed_further():
    """A crash out of memory and a discarded run that trained a fifth of the best run's steps:
    the agent names both limits, and proposes nothing past them."""
    agent = OfflineAgent(seed=5)
    best = {"steps": 1000, "budget_seconds": 20.0}
    streamed: list[str] = []
    agent.propose(context(SMALL, best_result=best), streamed.append)
    agent.observe(Proposal("N_LAYER 2 -> 6", {}, changes={"N_LAYER": 6}),
                  HistoryEntry(1, "N_LAYER 2 -> 6", "crash", "crash", None, None,
                               {"N_LAYER": 6}, result={"error": "CUDA out of memory"}))
    agent.observe(Proposal("N_EMBD 64 -> 256", {}, changes={"N_EMBD": 256}),
                  HistoryEntry(2, "N_EMBD 64 -> 256", "ok", "discard", 2.9, 0.2,
                               {"N_EMBD": 256}, result={"steps": 200}))
    proposals = []
    for _ in range(25):
        streamed.clear()
        proposals.append(agent.propose(context(SMALL, best_result=best), streamed.append))
    said = "".join(streamed)
    assert "N_LAYER >= 6 (out of memory)" in said
    assert "N_EMBD > 256 (slow: 200 steps against the best run's 1000)" in said
    for proposal in proposals:
        found = values(proposal.files["train.py"])
        assert found["N_LAYER"] < 6 and found["N_EMBD"] <= 256
    assert agent.memory.crash_limit("N_EMBD", 256) is None  # the slow value itself ran
