"""Attacks on the metric through the real harness: each is refused or scores no better than honest.

Every case is a real train.py run by `experiment.run` exactly as the loop runs it: trained in its
sandbox, exported, and scored by the frozen evaluator.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import git
import pytest
import red_team
import torch
from conftest import FAST, requires_sandbox, run_with

from ratchet.engine.agents.base import Agent, AgentError, Context, Emit, Proposal
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events
from ratchet.engine.runner import cpu_clock
from ratchet.model import prepare

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)


@pytest.mark.parametrize("source, reason", [
    # torch.export cannot trace from_file; a hand-written program can hold it (test below)
    (red_team.READS_A_FILE, "from_file"),
    # the training IR keeps the in-place add_; a functionalised one writes the buffer
    (red_team.COUNTS_CALLS, "aten.add_, which is not on the harness's list|mutates state"),
    (red_team.RANDOM, "aten.rand_like, which is not on the harness's list"),
    (red_team.SKIPS_FIXED_CUTS, "not causal"),
], ids=["reads-a-file", "counts-calls", "random", "skips-fixed-cuts"])
def test_a_gaming_model_is_refused(make_workspace, source, reason):
    result = run_with(make_workspace(**FAST), source)
    assert result.status == "crash", (result.val_bpb, result.tail)
    assert result.val_bpb is None
    assert re.search(reason, result.error), result.error


@pytest.mark.parametrize("op", ["from_file", "rand", "randint", "bernoulli", "normal", "save",
                                "add_", "copy_", "index_put_", "_print", "native_dropout"])
def test_file_random_and_side_effect_operators_are_refused(op):
    # an exported program is a file train.py writes: any ATen operator can be in it
    target = getattr(torch.ops.aten, op).overloads()[0]
    node = SimpleNamespace(target=getattr(getattr(torch.ops.aten, op), target), args=(),
                           kwargs={})
    with pytest.raises(prepare.ModelRejected, match="not on the harness's list"):
        prepare._check_operator(node)


def test_dropout_in_attention_is_refused():
    node = SimpleNamespace(target=torch.ops.aten.scaled_dot_product_attention.default,
                           args=("q", "k", "v", None, 0.1), kwargs={})
    with pytest.raises(prepare.ModelRejected, match="random dropout"):
        prepare._check_operator(node)
    node.args = ("q", "k", "v", None, 0.0)
    prepare._check_operator(node)  # no dropout: a plain attention


def test_reading_the_next_row_gains_nothing(make_workspace, honest_bpb):
    # the windows of one forward call are never consecutive, so another row's first byte says
    # nothing about the byte this row's last position predicts
    result = run_with(make_workspace(**FAST), red_team.READS_THE_NEXT_ROW)
    if result.status == "ok":
        assert result.val_bpb > honest_bpb
    else:
        assert "not causal" in result.error


def test_the_honest_model_passes_every_check(make_workspace, honest_bpb):
    # the checks must not refuse the model they protect: same table, plain causal forward
    honest = red_team.HONEST
    result = run_with(make_workspace(**FAST), honest)
    assert result.status == "ok", result.error
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-6)


@pytest.mark.parametrize("source", [red_team.TRAINS_PAST_THE_BUDGET, red_team.TRAINS_AT_IMPORT],
                         ids=["past-the-budget", "at-import"])
def test_time_beyond_the_allowance_is_never_scored(make_workspace, source):
    # a budget of 5 s on the engine's wall clock (a GPU's); it claims 0.5 s of training
    ws = make_workspace(budget_seconds=5.0, eval_tokens=65536, clock="wall")
    started = time.monotonic()
    result = run_with(ws, source)
    assert result.status == "over_budget", (result.status, result.error)
    assert result.val_bpb is None
    assert "exceeded its budget (5 s)" in result.error
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("source", [red_team.BURNS_PAST_THE_BUDGET, red_team.BURNS_AT_IMPORT],
                         ids=["past-the-budget", "at-import"])
def test_cpu_time_beyond_the_allowance_is_never_scored(make_workspace, source, monkeypatch):
    # the CPU clock (a CPU workspace's default): 5 CPU seconds per core, whatever it says
    monkeypatch.setattr(cpu_clock, "WALL_FACTOR", 20.0)  # load never brings the backstop in
    ws = make_workspace(budget_seconds=5.0, eval_tokens=65536)
    result = run_with(ws, source)
    assert result.status == "over_budget", (result.status, result.error)
    assert result.val_bpb is None
    assert f"exceeded its budget ({5 * cpu_clock.cores()} CPU seconds)" in result.error


def test_the_engine_measures_the_time_train_py_reports(make_workspace):
    # within the allowance, but claiming less time than it took: the measured figure stands
    source = red_team.TRAINS_PAST_THE_BUDGET.replace("3 * prepare.budget_seconds() + 2", "1.5")
    result = run_with(make_workspace(budget_seconds=5.0,
                                     eval_tokens=65536), source)
    assert result.status == "ok", result.error
    assert result.training_seconds == 0.5  # its own claim, kept as reported
    assert 1.5 <= result.trainer_seconds < 5.0


def test_a_growing_process_tree_is_killed(make_workspace):
    ws = make_workspace(budget_seconds=30.0, max_processes=16)
    started = time.monotonic()
    result = run_with(ws, red_team.FORKS)
    assert result.status == "over_limit", result.error
    assert "processes (limit max_processes = 16)" in result.error
    assert time.monotonic() - started < 20


def test_memory_beyond_the_limit_is_killed(make_workspace):
    ws = make_workspace(budget_seconds=30.0, memory_limit_gb=0.5)
    result = run_with(ws, red_team.HOARDS_MEMORY)
    assert result.status == "over_limit", result.error
    assert "GiB of memory (limit 0.5 GiB" in result.error


def test_a_kill_from_outside_is_reported_as_such(make_workspace):
    result = run_with(make_workspace(**FAST), red_team.KILLED_FROM_OUTSIDE)
    assert result.status == "crash"
    assert "killed by SIGKILL from outside (out of memory?)" in result.error


class AttackingAgent(Agent):
    """Proposes each attack as a whole new train.py, in order."""

    name = "attacks"

    def __init__(self, attacks: list[tuple[str, str]]):
        self.attacks = list(attacks)

    def propose(self, context: Context, emit: Emit) -> Proposal:
        if not self.attacks:
            raise AgentError("out of attacks")
        label, source = self.attacks.pop(0)
        emit(f"trying {label}\n")
        return Proposal(label, {"train.py": source}, rationale="a lower val_bpb by any means")


def run_attacks(ws, attacks: list[tuple[str, str]], name: str) -> tuple[list[dict], dict]:
    """A session of the honest bigram whose agent proposes each attack in turn; returns its
    log and its exp_end events by description. It must end well and keep nothing."""
    (ws.root / "train.py").write_text(red_team.HONEST)
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("honest bigram")
    config = ws.config()
    config.loop.baseline_seeds = 1
    options = RunOptions(session=f"s-{name}", tag=name, max_experiments=len(attacks))
    assert Session(ws, config, options, AttackingAgent(attacks)).run() == 0
    log = list(events.iter_events(ws.runs_dir() / options.session / "events.jsonl"))
    assert not [e for e in log if e["type"] == "exp_end" and e["decision"] == "keep"]
    assert repo.head.commit.message == "honest bigram"
    return log, {e["description"]: e for e in log if e["type"] == "exp_end"}


def test_no_attack_is_kept_inside_the_loop(make_workspace, monkeypatch):
    # the same attacks, proposed by an agent to a running session: none is ever kept
    monkeypatch.setattr(cpu_clock, "WALL_FACTOR", 20.0)
    ws = make_workspace("loop", budget_seconds=6.0, eval_tokens=65536,
                        min_improvement=0.0)
    attacks = [("skips fixed cuts", red_team.SKIPS_FIXED_CUTS),
               ("counts calls", red_team.COUNTS_CALLS),
               ("trains past the budget", red_team.BURNS_PAST_THE_BUDGET)]
    _, ends = run_attacks(ws, attacks, "attacks")
    assert ends["skips fixed cuts"]["status"] == "crash"
    assert "not causal" in ends["skips fixed cuts"]["result"]["error"]
    assert ends["counts calls"]["status"] == "crash"
    assert ends["trains past the budget"]["status"] == "over_budget"


@requires_sandbox
def test_nothing_passes_from_one_experiment_to_the_next(make_workspace):
    ws = make_workspace(**FAST)
    first = run_with(ws, red_team.LEAVES_TRACES, "first")
    assert first.status == "ok", first.error
    assert "left a trace in /dev/shm" in first.tail  # it could write: the test is real
    assert (ws.root / "runs" / "first" / "model" / "model.pt2").is_file()
    second = run_with(ws, red_team.LOOKS_FOR_TRACES, "second")
    assert second.status == "ok", second.error
    assert "traces found: []" in second.tail, second.tail
