"""Nothing of the person's is lost, and what is recorded is what the branch holds.

The person acts on the workspace while the engine runs (`FakeBackend`'s on_start hook, or a
thread beside a slow backend): edits program.md, stages train.py, checks out another branch,
damages the log, stops the session. Their uncommitted work must survive every move of the
engine; a move it would overwrite, or a branch taken from under the engine, stops the session
with one line; events.jsonl and results.tsv keep only what the branch holds.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import git
import pytest
from test_integrity import (
    MOVED,
    TWO_GAINS,
    ended,
    ends,
    engine,
    fake_create,
    fake_workspace,
    run_command,
    session,
)
from test_loop import read_log

from ratchet.cli import headless, report
from ratchet.engine.loop import gitops
from ratchet.engine.runner.result import Result
from ratchet.engine.workers import pool
from ratchet.engine.workspace import catalog, results_tsv
from ratchet.tui.view_state import DashboardState

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


# --- 1. the engine never discards work it did not make ----------------------------------------


def test_a_keep_leaves_an_edit_to_program_md_alone(make_workspace, fake):
    ws = fake_workspace(make_workspace, "steer")
    edited = {}

    def act(job):
        if job.kind == "confirm" and not edited:  # the winner's last run: the keep is next
            edited["text"] = edit_program(ws)
            (ws.root / "notes.md").write_text("my notes\n")
            person(ws, "add", "notes.md")

    fake["on_start"] = act
    assert session(ws, plan=TWO_GAINS[:1], max_experiments=1).run() == 0
    log = read_log(ws.runs_dir() / "s-own")
    assert ended(log)["reason"] == "max_experiments"
    assert len(keeps_agree_with_the_branch(ws, log)) == 1  # kept, around the edits
    assert (ws.root / "program.md").read_text() == edited["text"]
    assert person(ws, "diff", "--name-only").split() == ["program.md"]
    assert person(ws, "diff", "--cached", "--name-only").split() == ["notes.md"]


def test_a_keep_stops_at_a_staged_train_py_and_leaves_it(make_workspace, fake):
    ws = fake_workspace(make_workspace, "staged")
    base = git.Repo(ws.root).head.commit.hexsha

    def act(job):
        if job.kind == "confirm":
            stage_train(ws)

    fake["on_start"] = act
    assert session(ws, plan=TWO_GAINS[:1], max_experiments=1).run() == 1
    log = read_log(ws.runs_dir() / "s-own")
    end = ended(log)
    assert end["reason"] == "error"
    confirm = next(e for e in ends(log) if e["kind"] == "confirm")
    assert end["error"] == (f"uncommitted changes to train.py are in the way of keeping exp "
                            f"{confirm['exp']}; stopping and leaving them as they are (commit or "
                            f"stash them, then `ratchet run --resume`)")
    assert confirm["decision"] == "interrupted"
    assert (ws.root / "train.py").read_text() == STAGED == staged(ws, "train.py")
    assert keeps_agree_with_the_branch(ws, log) == []
    assert git.Repo(ws.root).head.commit.hexsha == base


def test_stop_leaves_uncommitted_edits_alone(make_workspace, fake):
    ws = fake_workspace(make_workspace, "stop")
    run = session(ws, max_experiments=None)
    edited = {}

    def act(job):
        if job.kind == "candidate" and not edited:
            edited["text"] = edit_program(ws)
            stage_train(ws)
            run.handle({"cmd": "stop"})  # `ratchet stop`

    fake["on_start"] = act
    assert run.run() == 0
    assert ended(read_log(ws.runs_dir() / "s-own"))["reason"] == "stopped"
    assert (ws.root / "program.md").read_text() == edited["text"]
    assert (ws.root / "train.py").read_text() == STAGED == staged(ws, "train.py")


def test_staging_while_the_engine_commits_a_candidate_survives(make_workspace, fake,
                                                                monkeypatch):
    ws = fake_workspace(make_workspace, "index")
    real = git.cmd.Git.execute
    acted = []

    def execute(self, command, *args, **kwargs):
        out = real(self, command, *args, **kwargs)
        if "read-tree" in command and not acted:  # the engine builds a candidate's tree
            acted.append(command)
            stage_train(ws)
        return out

    monkeypatch.setattr(git.cmd.Git, "execute", execute)
    assert session(ws, max_experiments=1).run() == 0
    assert acted
    assert staged(ws, "train.py") == STAGED


def test_resume_refuses_the_persons_edit_and_leaves_it(make_workspace, fake):
    ws = fake_workspace(make_workspace, "resumeedit")
    assert session(ws, plan=TWO_GAINS[:1], max_experiments=1).run() == 0
    mine = (ws.root / "train.py").read_text() + "MINE = 1\n"
    (ws.root / "train.py").write_text(mine)
    with pytest.raises(gitops.GitError, match=r"uncommitted changes to tracked files \(train.py\)"):
        session(ws, resume=True, max_experiments=2).run()
    assert (ws.root / "train.py").read_text() == mine


def test_resume_keeps_the_persons_edit_of_program_md_and_goes_on(make_workspace, fake):
    # steering by editing program.md mid-run: a kill and a resume must neither refuse it nor
    # touch it, and a keep after the resume leaves it as it is
    ws = fake_workspace(make_workspace, "resumesteer")
    assert session(ws, plan=TWO_GAINS[:1], max_experiments=1).run() == 0
    steer = edit_program(ws)
    assert session(ws, resume=True, plan=TWO_GAINS[1:], max_experiments=2).run() == 0
    assert (ws.root / "program.md").read_text() == steer
    log = read_log(ws.runs_dir() / "s-own")
    assert len(keeps_agree_with_the_branch(ws, log)) == 2


@pytest.mark.parametrize("fault", ["mid_move_tree", "mid_move_ref"])
def test_a_kill_inside_a_move_then_resume_agrees(make_workspace, fault):
    """What the engine itself left half-moved (its own content) is not the person's."""
    ws = fake_workspace(make_workspace, f"mid-{fault}")
    done = engine(ws, fault=fault)
    assert done.returncode == 9, done.stdout + done.stderr
    done = engine(ws, resume=True)
    assert done.returncode == 0, done.stdout + done.stderr
    log = read_log(ws.runs_dir() / "s-own")
    assert ended(log)["reason"] == "max_experiments"
    # the kept change whose move was cut is on the branch; whether a second candidate runs
    # depends on whether its proposal was made before the kill (a loaded machine decides)
    assert len(keeps_agree_with_the_branch(ws, log)) >= 1
    assert person(ws, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (ws.root / ".git" / "index.lock").exists()


# --- 2. the branch is watched ------------------------------------------------------------------


def test_a_checkout_under_the_engine_stops_it_within_one_experiment(make_workspace, fake):
    ws = fake_workspace(make_workspace, "watched")
    at = {}

    def act(job):
        if job.kind == "candidate" and not at:
            at["exp"] = job.exp
            person(ws, "checkout", "main")

    fake["on_start"] = act
    assert session(ws, max_experiments=12).run() == 1
    log = read_log(ws.runs_dir() / "s-own")
    assert ended(log)["error"] == f"the branch ratchet/own {MOVED}"
    assert [e["exp"] for e in ends(log) if e["exp"] >= at["exp"]] == [at["exp"]]
    assert git.Repo(ws.root).active_branch.name == "main"
    keeps_agree_with_the_branch(ws, log)


def test_a_checkout_during_a_long_run_stops_the_session_in_seconds(make_workspace,
                                                                   monkeypatch):
    ws = fake_workspace(make_workspace, "seconds")
    took = {}

    def checkout_soon(job):
        def later():
            time.sleep(0.5)
            took["at"] = time.monotonic()
            person(ws, "checkout", "main")
        if not took:
            took["thread"] = threading.Thread(target=later)
            took["thread"].start()

    slow(monkeypatch, 60.0, checkout_soon)
    assert session(ws, max_experiments=1).run() == 1
    assert time.monotonic() - took["at"] < 8.0
    log = read_log(ws.runs_dir() / "s-own")
    assert ended(log)["error"] == f"the branch ratchet/own {MOVED}"
    assert [(e["status"], e["decision"]) for e in ends(log)] == [("interrupted", "interrupted")]


def test_a_keep_on_a_branch_taken_meanwhile_is_not_recorded(make_workspace, fake):
    ws = fake_workspace(make_workspace, "taken")

    def act(job):
        if job.kind == "confirm":
            person(ws, "checkout", "main")

    fake["on_start"] = act
    assert session(ws, plan=TWO_GAINS, max_experiments=2).run() == 1
    log = read_log(ws.runs_dir() / "s-own")
    assert ended(log)["error"] == f"the branch ratchet/own {MOVED}"
    assert keeps_agree_with_the_branch(ws, log) == []
    assert [e["decision"] for e in ends(log) if e["kind"] == "confirm"] == ["interrupted"]


# --- 3. a damaged record of a keep --------------------------------------------------------------


def test_a_damaged_keep_record_is_named_on_resume(make_workspace, fake, monkeypatch):
    ws = fake_workspace(make_workspace, "damaged")
    done = engine(ws)  # its own process: `ratchet run` sees it has ended
    assert done.returncode == 0, done.stdout + done.stderr
    path = ws.runs_dir() / "s-own" / "events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    at = max(i for i, line in enumerate(lines) if b'"decision":"keep"' in line)
    n = int(re.search(rb'"exp":(\d+)', lines[at]).group(1))
    lines[at] = lines[at].replace(b'"val_bpb":', b'"val_bpb":"', 1)
    path.write_bytes(b"".join(lines))
    said = (f"the log's record of experiment {n} is damaged (line {at + 1} of "
            f"runs/s-own/events.jsonl), and the branch ratchet/own holds that experiment's "
            f"keep; repair the line, or start a new session from the branch")
    with pytest.raises(gitops.GitError) as refused:
        session(ws, resume=True, max_experiments=3).run()
    assert str(refused.value) == said
    with pytest.raises(gitops.GitError) as refused:  # `ratchet run --resume` says it too
        run_command(monkeypatch, ws, "--resume")
    assert str(refused.value) == said


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
