"""Nothing of the person's is lost, and what is recorded is what the branch holds.

The person acts on the workspace while the engine runs (`FakeBackend`'s on_start hook, or a
thread beside a slow backend): edits program.md, stages train.py, checks out another branch,
damages the log, stops the session. Their uncommitted work must survive every move of the
engine; a move it would overwrite, or a branch taken from under the engine, stops the session
with one line; events.jsonl and results.tsv keep only what the branch holds.
"""

from __future__ import annotations

import subprocess
import time

import git
import pytest
from test_integrity import (
    ends,
    fake_create,
    fake_workspace,
    session,
)
from test_loop import read_log

from ratchet.cli import headless, report
from ratchet.engine.loop import results_tsv
from ratchet.engine.runner.result import Result
from ratchet.engine.workers import pool
from ratchet.engine.workspace import catalog
from ratchet.tui.model import DashboardState

STEER = "\nPrefer changes to the learning rate.\n"
STAGED = "SCORE = 5.0\nGAIN_A = 0.0\n\nGAIN_B = 0.0\nUNUSED_WIDTH = 64\nMINE = 1\n"


@pytest.fixture
def fake(monkeypatch):
    """Sessions train with test_integrity's FakeBackend; returns its hooks, to set."""
    hooks = {}
    monkeypatch.setattr(pool, "create", fake_create(hooks))
    return hooks


def person(ws, *command: str) -> str:
    """A git command of the person's, in the workspace."""
    return subprocess.run(["git", *command], cwd=ws.root, check=True, capture_output=True,
                          text=True).stdout


def staged(ws, name: str) -> str:
    """The file's text in the index."""
    return person(ws, "show", f":{name}")


def edit_program(ws) -> str:
    text = (ws.root / "program.md").read_text() + STEER
    (ws.root / "program.md").write_text(text)
    return text


def stage_train(ws) -> None:
    (ws.root / "train.py").write_text(STAGED)
    person(ws, "add", "train.py")


def keeps_agree_with_the_branch(ws, log: list[dict]) -> list[str]:
    """The keeps events.jsonl and results.tsv record are exactly the branch's commits."""
    start = next(e for e in log if e["type"] == "session_start")
    repo = git.Repo(ws.root)
    on_branch = [c.hexsha for c in reversed(list(repo.iter_commits(
        f"{start['base_commit']}..{start['branch']}")))]
    assert [e["commit"] for e in ends(log) if e["decision"] == "keep"] == on_branch
    rows = [r["commit"] for r in results_tsv.read(ws.root / "results.tsv")
            if r["status"] == "keep" and not r["description"].startswith("baseline")]
    assert list(dict.fromkeys(rows)) == [c[:7] for c in on_branch]  # a winner's runs: a row each
    return on_branch


class SlowBackend(pool.Backend):
    """One worker whose runs last `seconds` (then score 5.0 and a little seed noise) unless
    killed; `on_start(job)` runs as each starts, as FakeBackend's hook."""

    def __init__(self, seconds: float, on_start):
        self.seconds, self.on_start = seconds, on_start
        self.workers = ["0"]
        self.running: dict[int, tuple[pool.Job, float, bool]] = {}  # exp -> (job, until, killed)

    def start(self, job: pool.Job, worker: str) -> None:
        self.running[job.exp] = (job, time.monotonic() + self.seconds, False)
        self.on_start(job)

    def kill(self) -> None:
        self.running = {n: (job, 0.0, True) for n, (job, _, _) in self.running.items()}

    def wait(self, timeout: float) -> list[pool.Outcome]:
        time.sleep(min(timeout, 0.05))
        done = [n for n, (_, until, _) in self.running.items() if until <= time.monotonic()]
        found = []
        for n in done:
            job, _, killed = self.running.pop(n)
            found.append(pool.Outcome(job, Result(status="killed", seed=job.seed, error="killed")
                                      if killed else Result(status="ok", seed=job.seed,
                                                            val_bpb=5.0 + job.seed * 1e-3)))
        return found


def slow(monkeypatch, seconds: float, on_start) -> None:
    monkeypatch.setattr(pool, "create", lambda *_args: SlowBackend(seconds, on_start))


# --- 4. an interrupted run is recorded as interrupted -------------------------------------------


def test_a_stopped_run_is_recorded_interrupted_and_shown_so(make_workspace, monkeypatch):
    ws = fake_workspace(make_workspace, "interrupted")
    run = session(ws, max_experiments=None)

    def stop_at_candidate(job):
        if job.kind == "candidate":
            run.handle({"cmd": "stop"})  # `ratchet stop` as the candidate trains

    slow(monkeypatch, 0.5, stop_at_candidate)  # the baseline's runs end, the candidate's not
    assert run.run() == 0
    folder = ws.runs_dir() / "s-own"
    log = read_log(folder)
    last = ends(log)[-1]
    assert (last["kind"], last["status"], last["decision"]) == ("candidate", "interrupted",
                                                                "interrupted")
    row = results_tsv.read(ws.root / "results.tsv")[-1]
    assert (row["status"], row["description"]) == ("crash", f"{last['description']} "
                                                            f"(interrupted)")
    board = DashboardState()
    for event in log:
        board.apply(event)
    assert board.experiments[last["exp"]].label == "interrupted"
    assert "interrupted" in headless.experiment_line(last).split()
    fig = report.figures(log)
    assert (fig.crashed, fig.interrupted) == (0, 1)
    assert "interrupted 1" in report.text(fig, chart=False)
    summary = catalog.summarise(folder)
    assert (summary.state, summary.experiments, summary.kept) == ("finished", 3, 0)
