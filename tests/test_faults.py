"""The engine killed with SIGKILL at random moments and at keeps, each time followed by
`ratchet run --resume`: after every resume git, the log and results.tsv agree, numbers are
unique, and no process or private folder is left behind (bench/kill_bench.py: the same with
many more kills)."""

from __future__ import annotations

import random

import pytest
from fault_checks import KillRun, keeping_workspace

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)

SEED = 20240607
PLAN = ["random"] * 5 + ["keep", "branch"]  # 5 kills at random moments, 2 at keeps


def test_kills_at_random_moments_and_at_keeps_then_resume(tmp_path, template_workspace,
                                                          monkeypatch):
    temp = tmp_path / "tmp"  # the engine's temp folder: what is left there is its own
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    run = KillRun(ws)
    rng = random.Random(SEED)
    hits = []
    try:
        run.start()
        for how in rng.sample(PLAN, len(PLAN)):
            # the branch moves only at keeps, and a loaded machine makes them slow to come
            hits.append(run.kill(how, delay=rng.uniform(0.0, 4.0), timeout=90.0))
            assert run.verify() == {}, hits
    finally:
        run.close()
    assert run.resumes == 2 * len(PLAN) - 1  # a recovering one after each kill, then on
    assert list(temp.iterdir()) == []
    assert {"keep", "branch"} & set(hits), hits  # at least one kill landed at a keep


def test_a_kill_during_an_evaluation_leaves_no_private_folder(tmp_path, template_workspace,
                                                              monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    run = KillRun(ws)
    try:
        run.start()
        assert run.kill("evaluating", delay=0.0, timeout=60.0) == "evaluating"
        # the evaluator's folder, with its copy of the model, is still there after the kill
        assert [p.name for p in ws.runs_dir().glob("*/exp-*/eval-tmp")] + \
            [p.name for p in temp.glob("ratchet-eval-*")]
        assert run.verify() == {}
    finally:
        run.close()
    assert list(temp.iterdir()) == []
    assert list(ws.runs_dir().glob("*/exp-*/eval-tmp")) == []
