"""Round two of the attacks on the metric, through the real harness (`experiment.run`).

The allowance has no spare second, non-finite or huge logits cannot switch the causality probes
off, no process trick escapes the CPU clock, and the sandbox holds as root. Run as root (as
Ratchet runs in containers and CI) the privilege attacks are the ones that matter; as an
ordinary user they must fail the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time

import psutil
import pytest
import red_team_two as attacks
from conftest import FAST, requires_sandbox, run_with
from test_red_team import run_attacks

from ratchet.engine.runner import cgroup, cpu_clock, experiment, sandbox

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)

# A CPU-clocked allowance of 3 s per core (the wall clock kept out of the way by patient_wall).
CLOCKED = {"budget_seconds": 3.0, "eval_tokens": 65536}


@pytest.fixture
def patient_wall(monkeypatch):
    monkeypatch.setattr(cpu_clock, "WALL_FACTOR", 30.0)  # load never brings the backstop in


def test_training_to_the_deadline_gets_the_budget_and_no_more(make_workspace, patient_wall):
    ws = make_workspace(**CLOCKED)
    result = run_with(ws, attacks.TRAINS_TO_THE_DEADLINE)
    assert result.status == "ok", result.error
    used = result.trainer_cpu_seconds / cpu_clock.cores()
    assert used <= 3.0, f"trained {used:.2f} s of a 3 s budget"
    assert used > 2.0  # it did spend what it was given: the test measures something


def test_a_trainer_that_ignores_the_clock_is_over_budget(make_workspace, patient_wall):
    result = run_with(make_workspace(**CLOCKED), attacks.MULTIPLIES_ITS_BUDGET)
    assert result.status == "over_budget", (result.status, result.error)
    assert result.val_bpb is None


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "no-sandbox"])
def test_time_after_the_hand_off_changes_nothing(make_workspace, honest_bpb, monkeypatch,
                                                 sandboxed):
    # it ignores SIGTERM: a stop that asks first would give it seconds to replace its model
    result = _run(make_workspace(**FAST), attacks.TRAINS_AFTER_ITS_HAND_OFF, monkeypatch,
                  sandboxed)
    assert result.status == "ok", result.error
    assert "replaced the model" not in result.tail
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-6)


@pytest.mark.parametrize("groups", [True, False], ids=["cgroup", "process-tree"])
def test_work_in_children_nobody_reaps_is_counted(make_workspace, patient_wall, monkeypatch,
                                                  groups):
    # with a cgroup every CPU second is counted; measuring the process tree (an ordinary user
    # without a delegated cgroup), the sandbox refuses to ignore SIGCHLD in the first place
    if groups and cgroup.base() is None:
        pytest.skip(f"no cgroups here: {cgroup.unavailable_reason()}")
    if not groups and sandbox.bwrap_path() is None:
        pytest.skip(f"no sandbox here: {sandbox.unavailable_reason()}")
    if not groups:
        monkeypatch.setenv("RATCHET_NO_CGROUP", "1")
    cgroup.base.cache_clear()
    try:
        result = run_with(make_workspace(**CLOCKED), attacks.FARMS_OUT_TO_REAPED_CHILDREN)
    finally:
        cgroup.base.cache_clear()
    if groups:
        assert result.status == "over_budget", (result.status, result.error, result.tail)
    else:
        assert result.status == "crash", (result.status, result.error, result.tail)
        assert "Operation not permitted" in result.error
    assert result.val_bpb is None


def _run(ws, source: str, monkeypatch, sandboxed: bool):
    if not sandboxed:
        monkeypatch.setenv("RATCHET_NO_SANDBOX", "1")
    sandbox.bwrap_path.cache_clear()
    try:
        return run_with(ws, source)
    finally:
        sandbox.bwrap_path.cache_clear()


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "no-sandbox"])
def test_work_in_a_daemon_is_counted(make_workspace, patient_wall, monkeypatch, sandboxed):
    # in the sandbox the daemon stays in its PID namespace; without one, only a cgroup holds it
    if not sandboxed and cgroup.base() is None:
        pytest.skip(f"no cgroups here: {cgroup.unavailable_reason()}")
    ws = make_workspace(**CLOCKED)
    result = _run(ws, attacks.TRAINS_IN_A_DAEMON, monkeypatch, sandboxed)
    assert result.status == "over_budget", (result.status, result.error, result.tail)
    time.sleep(0.5)  # and nothing of it outlives the run
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(ws.root)]


@pytest.mark.parametrize("name", sorted(attacks.PEEKS))
def test_logits_that_hide_a_peek_are_refused(make_workspace, name):
    result = run_with(make_workspace(**FAST), attacks.PEEKS[name])
    assert result.status == "crash", (result.val_bpb, result.tail)
    assert result.val_bpb is None
    assert re.search("not causal|logits that are not finite", result.error), result.error


@requires_sandbox
def test_the_sandbox_grants_no_privilege(make_workspace, honest_bpb):
    result = run_with(make_workspace(**FAST), attacks.ESCAPES)
    assert result.status == "ok", result.error
    line = next(ln for ln in result.tail.splitlines() if ln.startswith("ESCAPES "))
    report = json.loads(line.removeprefix("ESCAPES "))
    assert report["CapEff"] == "0000000000000000", report
    mine = {n: os.readlink(f"/proc/self/ns/{n}") for n in report["ns"]}
    assert not [n for n in mine if mine[n] == report["ns"][n]], (mine, report["ns"])
    succeeded = [name for name, outcome in report.items()
                 if isinstance(outcome, str) and outcome.startswith("ok")]
    assert not succeeded, report
    assert report["held_out_visible"] == [], report
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-6)


def test_an_evaluation_starved_of_cpu_is_not_a_crash(make_workspace, honest_bpb):
    # a machine so busy that the evaluator gets no CPU for longer than its timeout: on the
    # CPU clock the starved seconds are not its own, and an honest run is scored
    ws = make_workspace(**FAST, eval_timeout_seconds=2.0)
    (ws.root / "train.py").write_text(attacks.HONEST)
    starved: list[int] = []

    def starve() -> None:
        # stopped again and again for 4 s: the engine's own resume of a paused evaluator
        # (warm_trainer.PAUSE) must not end the starvation
        procs = [p for p in psutil.Process().children(recursive=True)
                 if "evaluate" in " ".join(p.cmdline())]
        starved.extend(p.pid for p in procs)
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGSTOP)
            time.sleep(0.05)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)

    def on_phase(phase: str) -> None:
        if phase == "evaluating":
            threading.Thread(target=starve, daemon=True).start()

    result = experiment.run(ws, ws.config(), ws.root / "runs" / "starved", on_phase=on_phase)
    assert starved, "the evaluator was found and stopped"
    assert result.status == "ok", result.error
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-6)


def test_no_attack_of_round_two_is_kept_inside_the_loop(make_workspace, patient_wall):
    # proposed by an agent to a running session as whole new train.py files: none is kept
    ws = make_workspace("loop", **CLOCKED, min_improvement=0.0)
    proposals = [("peeks behind -inf", attacks.PEEKS["minus-inf"]),
                 ("peeks behind a huge logit", attacks.PEEKS["huge-finite"]),
                 ("twice the budget", attacks.MULTIPLIES_ITS_BUDGET),
                 ("reaped children", attacks.FARMS_OUT_TO_REAPED_CHILDREN)]
    _, ends = run_attacks(ws, proposals, "two")
    assert set(ends) >= {label for label, _ in proposals}
    for label in ("peeks behind -inf", "peeks behind a huge logit"):
        assert ends[label]["status"] == "crash", ends[label]
    assert ends["twice the budget"]["status"] == "over_budget"
    assert ends["reaped children"]["status"] in ("over_budget", "crash")
