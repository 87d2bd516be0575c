"""The engine's integrity: it touches only its own branch, a kill at any step of a keep leaves
results.tsv, git and the log agreeing, a resume keeps the session's settings, one engine runs
per workspace. `FakeBackend` trains nothing (it scores a commit from its train.py's constants),
so the loop's bookkeeping is under test; a fault kills the engine, run as its own process
(`engine`), with os._exit at the chosen step, as kill -9 would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest
from paced_agent import PacedAgent
from test_loop import check_ratchet_invariants, read_log

from ratchet.cli import main as climain
from ratchet.cli.arguments import UserError
from ratchet.engine.loop import branch, daemon, gitops
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.runner.result import Result
from ratchet.engine.workers import pool
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout, results_tsv

TESTS = Path(__file__).parent
# train.py of these tests: FakeBackend's val_bpb is SCORE - GAIN_A - GAIN_B (and seed noise)
FAKE_TRAIN = "SCORE = 5.0\nGAIN_A = 0.0\n\nGAIN_B = 0.0\nUNUSED_WIDTH = 64\n"
TWO_GAINS = [("GAIN_A", 1.0), ("GAIN_B", 1.0)]
MOVED = "was moved or checked out by someone else; stopping without touching it"


class FakeBackend(pool.Backend):
    """One worker that trains nothing: each job ends at once, scored from its commit's train.py.

    `hooks["on_start"](job)` runs as a job starts (on the engine thread): the person acting."""

    def __init__(self, repo: git.Repo, hooks: dict):
        self.repo, self.hooks = repo, hooks
        self.workers = ["0"]
        self.done: list[pool.Outcome] = []

    def start(self, job: pool.Job, worker: str) -> None:
        text = gitops.files_at(self.repo, job.commit, ["train.py"])["train.py"]
        values = {k: float(v) for k, v in re.findall(r"^(\w+) = (\S+)$", text, re.M)}
        score = values["SCORE"] - values["GAIN_A"] - values["GAIN_B"] + (job.seed % 7) * 1e-4
        self.hooks.get("on_start", lambda _job: None)(job)
        self.done.append(pool.Outcome(job, Result(status="ok", val_bpb=score, seed=job.seed)))

    def kill(self) -> None:
        pass

    def wait(self, timeout: float) -> list[pool.Outcome]:
        found, self.done = self.done, []
        if not found:
            time.sleep(min(timeout, 0.02))
        return found


def fake_create(hooks: dict):
    return lambda ws, config, repo, folder, _hooks: FakeBackend(repo, hooks)


@pytest.fixture
def fake(monkeypatch):
    """Sessions in this process train with FakeBackend; returns its hooks, to set."""
    hooks = {}
    monkeypatch.setattr(pool, "create", fake_create(hooks))
    return hooks


def fake_workspace(make_workspace, name: str) -> layout.Workspace:
    ws = make_workspace(name, min_improvement=0.01)
    config = ws.config()
    config.loop.baseline_seeds = 2
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text(FAKE_TRAIN)
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("fake trainer")
    return ws


def session(ws, tag="own", resume=False, max_experiments=2, plan=None, **options) -> Session:
    run = RunOptions(session=f"s-{tag}", tag=tag, max_experiments=max_experiments,
                     resume=resume, **options)
    return Session(ws, ws.config(), run, PacedAgent(seconds=0.0, plan=list(plan or [])))


def ends(log: list[dict]) -> list[dict]:
    return [e for e in log if e["type"] == "exp_end"]


def ended(log: list[dict]) -> dict:
    """The last session_end (a resource sample may still follow it)."""
    return [e for e in log if e["type"] == "session_end"][-1]


# --- the engine as its own process, killed at a chosen step ----------------------------------


def install_fault(fault: str) -> None:
    """Make the engine die (os._exit, nothing flushed or cleaned) at one step of a keep."""
    if fault in ("after_keep_row", "after_candidate_row"):
        real_append = results_tsv.append

        def append(path, commit, val_bpb, memory_mb, status, description):
            real_append(path, commit, val_bpb, memory_mb, status, description)
            if not description.startswith("baseline") and (
                    status == "keep" or fault == "after_candidate_row"):
                os._exit(9)

        results_tsv.append = append
    elif fault in STEPS:  # a step of a move of the branch (branch.py): killed before or after
        when, step = STEPS[fault]
        real = getattr(branch, step)

        def stopped(*args):
            if when == "before":
                os._exit(9)
            real(*args)
            os._exit(9)

        setattr(branch, step, stopped)


# faults inside a move: the step of branch.move the engine is killed before or after
STEPS = {"before_move": ("before", "_write_tree"), "mid_move_tree": ("after", "_write_tree"),
         "mid_move_ref": ("after", "_set_ref"), "after_move": ("after", "_commit_index")}


def engine_main(root: str, tag: str, resume: bool, max_experiments: int | None, fault: str,
                plan: list) -> None:
    """What `engine` runs in the child process."""
    pool.create = fake_create({})
    install_fault(fault)
    ws = layout.Workspace(Path(root))
    sys.exit(session(ws, tag, resume, max_experiments, [tuple(p) for p in plan]).run())


def engine(ws, tag="own", resume=False, max_experiments: int | None = 2, fault="",
           plan=TWO_GAINS) -> subprocess.CompletedProcess:
    code = (f"import test_integrity as t; t.engine_main({str(ws.root)!r}, {tag!r}, {resume!r}, "
            f"{max_experiments!r}, {fault!r}, {[list(p) for p in plan]!r})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=ws.root, env=env,
                          capture_output=True, text=True, timeout=120)


def check_agreement(ws, log: list[dict]) -> None:
    """results.tsv, git and the log agree: keep rows are on the branch, HEAD the last keep."""
    check_ratchet_invariants(ws, log)
    repo = git.Repo(ws.root)
    on_branch = {c.hexsha[:7] for c in repo.iter_commits(repo.head.commit)}
    rows = results_tsv.read(ws.root / "results.tsv")
    assert all(r["commit"] in on_branch for r in rows if r["status"] == "keep"), rows
    kept = [e["commit"] for e in ends(log) if e["decision"] == "keep"]
    assert kept and repo.head.commit.hexsha == kept[-1]


# --- 1. the engine touches only its own branch ------------------------------------------------


def user_commit(repo: git.Repo, name: str) -> str:
    (Path(repo.working_tree_dir) / name).write_text("the person's own work\n")
    repo.index.add([name])
    return repo.index.commit(f"my {name}").hexsha


# what the person does as an experiment of that kind starts, the plan, the session's end
PERSON = {
    "takes the branch during a keep": ("confirm", ["checkout main", "branch -D ratchet/own"],
                                       TWO_GAINS[:1], "error"),
    "works on main meanwhile": ("candidate", ["checkout main"], [], "error"),  # noticed
    "commits on the engine's branch": ("candidate", [], [], "error"),
}


@pytest.mark.parametrize("case", list(PERSON))
def test_the_engine_leaves_the_persons_commits_alone(make_workspace, fake, case):
    when, commands, plan, reason = PERSON[case]
    ws = fake_workspace(make_workspace, "person")
    mine = {}

    def act(job):
        if job.kind == when and not mine:
            user = git.Repo(ws.root)
            for command in commands:
                user.git.execute(["git", *command.split()])
            mine["branch"], mine["sha"] = user.active_branch.name, user_commit(user, "notes.txt")

    fake["on_start"] = act
    assert session(ws, plan=plan, max_experiments=1).run() == (reason == "error")
    end = ended(read_log(ws.runs_dir() / "s-own"))
    assert end["reason"] == reason
    assert end.get("error") == (f"the branch ratchet/own {MOVED}" if reason == "error" else None)
    repo = git.Repo(ws.root)
    assert (repo.active_branch.name, repo.head.commit.hexsha) == (mine["branch"], mine["sha"])
    assert (ws.root / "notes.txt").is_file() and not repo.is_dirty()
    assert ("ratchet/own" in [h.name for h in repo.heads]) == ("branch -D ratchet/own"
                                                               not in commands)


def test_resume_refuses_a_branch_moved_since(make_workspace, fake):
    ws = fake_workspace(make_workspace, "movedsince")
    assert session(ws, max_experiments=1).run() == 0
    mine = user_commit(git.Repo(ws.root), "notes.txt")
    with pytest.raises(gitops.GitError, match=MOVED.split(";")[0]):
        session(ws, resume=True, max_experiments=2).run()
    assert git.Repo(ws.root).head.commit.hexsha == mine


# --- 2. a kill at the moment of a keep ---------------------------------------------------------


@pytest.mark.parametrize("fault", ["after_keep_row", "before_move", "after_move"])
def test_a_kill_during_a_keep_then_resume_agrees(make_workspace, fault):
    ws = fake_workspace(make_workspace, f"kill-{fault}")
    done = engine(ws, fault=fault)
    assert done.returncode == 9, done.stdout + done.stderr  # killed at the fault
    killed = read_log(ws.runs_dir() / "s-own")
    assert any(e["decision"] == "keep" for e in ends(killed))
    done = engine(ws, resume=True)
    assert done.returncode == 0, done.stdout + done.stderr
    log = read_log(ws.runs_dir() / "s-own")
    assert ended(log)["reason"] == "max_experiments"
    assert ends(log)[: len(ends(killed))] == ends(killed)
    check_agreement(ws, log)


def test_resume_repairs_results_tsv_from_the_log(make_workspace, fake):
    ws = fake_workspace(make_workspace, "repair")
    assert session(ws, plan=TWO_GAINS).run() == 0
    path = ws.root / "results.tsv"
    lines = path.read_text().splitlines()
    candidate = next(e for e in ends(read_log(ws.runs_dir() / "s-own"))
                     if e["kind"] == "candidate")
    # a keep row the log does not back, the last row lost, and a row of another session
    bogus = f"{candidate['commit'][:7]}\t1.000000\t0.0\tkeep\tnot in the log"
    other = "abcdef0\t3.000000\t0.0\tkeep\tan earlier session's row"
    path.write_text("\n".join([lines[0], other, *lines[1:-1], bogus]) + "\n")
    assert session(ws, resume=True).run() == 0
    assert path.read_text().splitlines() == [lines[0], other, *lines[1:]]


# --- 3. resume keeps the session's settings ---------------------------------------------------


def test_resume_runs_with_the_sessions_settings(make_workspace, fake):
    ws = fake_workspace(make_workspace, "settings")
    first = session(ws, max_experiments=3, budget=4.0)
    fake["on_start"] = lambda job: first.request_stop("stopped") if job.kind == "candidate" \
        else None
    assert first.run() == 0
    again = session(ws, resume=True, max_experiments=None)  # no flags given on resume
    fake["on_start"] = lambda job: again.request_stop("stopped") if job.exp > 20 else None
    assert again.run() == 0
    log = read_log(ws.runs_dir() / "s-own")
    resumed_at = [i for i, e in enumerate(log) if e["type"] == "session_start"][1]
    starts = [e for e in log[resumed_at:] if e["type"] == "exp_start"]
    assert starts and {e["budget"] for e in starts} == {4.0}
    assert sum(e["type"] in ("proposal", "proposal_failed") for e in log) == 3
    assert ended(log)["reason"] == "max_experiments"


class Spawned(Exception):
    pass


def run_command(monkeypatch, ws, *args: str) -> RunOptions:
    """`ratchet run ARGS` in this process up to the engine's start: the options it would run
    with (nothing is spawned)."""

    def spawn(_ws, options):
        raise Spawned(options)

    monkeypatch.setattr(daemon, "spawn", spawn)
    parsed = climain.build_parser().parse_args(["run", "--headless", "-C", str(ws.root), *args])
    with pytest.raises(Spawned) as spawned:
        parsed.func(parsed)
    return spawned.value.args[0]


def test_resume_refuses_a_flag_that_differs(make_workspace, monkeypatch):
    ws = fake_workspace(make_workspace, "flags")
    done = engine(ws, max_experiments=1, plan=[])
    assert done.returncode == 0, done.stdout + done.stderr
    # recorded: ratchet.toml's budget (20 s here) and --max-experiments 1
    for flags, message in ((["--budget", "5"], "--budget 5 differs from the session's 20 s"),
                           (["--max-experiments", "3"],
                            "--max-experiments 3 differs from the session's 1"),
                           (["--gpus", "0,1"], "--gpus 0,1 differs from the session's none")):
        with pytest.raises(UserError) as refused:
            run_command(monkeypatch, ws, "--resume", *flags)
        assert str(refused.value) == f"{message}; resume without it or start a new session"
    options = run_command(monkeypatch, ws, "--resume", "--budget", "20",
                          "--max-experiments", "1")
    assert options.resume and options.session == "s-own"
    assert len([e for e in read_log(ws.runs_dir() / "s-own")
                if e["type"] == "session_start"]) == 1  # nothing started


# --- 4. one engine per workspace, numbers never reused (the socket's cap: test_control.py) ---


LOCKER = """
import sys, time
from pathlib import Path
from ratchet.engine.loop import lock
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    fd = lock.acquire(Path(sys.argv[1]), sys.argv[3])
except lock.Busy as exc:
    print(exc)
else:
    print("won", flush=True)
    time.sleep(2.0)
"""


def test_one_engine_lock_has_one_winner(tmp_path):
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path), str(start),
                               f"s{i}"], stdout=subprocess.PIPE, text=True) for i in range(6)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    winners = [i for i, out in enumerate(outputs) if out == "won"]
    assert len(winners) == 1, outputs
    pid = procs[winners[0]].pid
    for i, out in enumerate(outputs):
        if i != winners[0]:
            assert out == (f"an engine is already running in this workspace "
                           f"(session s{winners[0]}, pid {pid})")


def test_run_refuses_while_an_engine_holds_the_workspace(make_workspace, monkeypatch):
    from ratchet.engine.loop import lock

    ws = fake_workspace(make_workspace, "held")
    held = lock.acquire(ws.runs_dir(), "20250101-000000-other-abcd")
    try:
        with pytest.raises(UserError) as refused:
            run_command(monkeypatch, ws, "--tag", "second")
        assert str(refused.value) == (f"an engine is already running in this workspace "
                                      f"(session 20250101-000000-other-abcd, pid {os.getpid()})")
    finally:
        os.close(held)
    assert run_command(monkeypatch, ws, "--tag", "second").tag == "second"  # free again


def test_two_runs_started_at_the_same_instant(make_workspace):
    ws = make_workspace("instant")
    config = ws.config()
    config.loop.baseline_seeds = 1
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text("import time\ntime.sleep(4)\nraise SystemExit(3)\n")
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("a slow crash")
    env = {**os.environ, "RATCHET_NO_SANDBOX": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                               "--max-experiments", "0", "--tag", tag], cwd=ws.root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("first", "second")]
    done = [(p.returncode, out, err) for p in procs
            for out, err in [p.communicate(timeout=240)]]
    refused = [d for d in done if d[0] == 2]
    assert len(refused) == 1, done
    assert refused[0][2].splitlines()[-1].startswith(
        "ratchet: error: an engine is already running in this workspace (session ")
    ran = [d for d in done if d[0] != 2]
    assert len(ran) == 1 and "engine started" in ran[0][1]
    assert len([p for p in ws.runs_dir().iterdir() if (p / "events.jsonl").exists()]) == 1


def test_a_corrupted_exp_end_is_not_recorded_twice(make_workspace):
    ws = fake_workspace(make_workspace, "corrupt")
    done = engine(ws, fault="after_candidate_row", plan=[], max_experiments=4)  # after a discard
    assert done.returncode == 9, done.stdout + done.stderr
    path = ws.runs_dir() / "s-own" / "events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    at = max(i for i, line in enumerate(lines) if b'"type":"exp_end"' in line)
    n = int(re.search(rb'"exp":(\d+)', lines[at]).group(1))
    lines[at] = lines[at].replace(b'"val_bpb":', b'"val_bpb":"', 1)  # no longer an event
    lines.append(b'{"t":1.0,"type":"phase","exp":41,"phase":"proposing"\n')  # torn, by hand
    path.write_bytes(b"".join(lines))
    done = engine(ws, resume=True, max_experiments=4)
    assert done.returncode == 0, done.stdout + done.stderr
    raw = path.read_bytes()
    assert len(re.findall(rb'"type":"exp_end","exp":' + str(n).encode() + rb",", raw)) == 1
    log = read_log(path.parent)
    resumed = [i for i, e in enumerate(log) if e["type"] == "session_start"][-1]
    later = [e["exp"] for e in log[resumed:] if e["type"] == "proposal"]
    assert later and min(later) > 41  # numbers are never reused, not even unreadable ones
    commit = re.search(rb'"commit":"([0-9a-f]{7})', lines[at]).group(1).decode()
    assert [r["commit"] for r in results_tsv.read(ws.root / "results.tsv")].count(commit) == 1

