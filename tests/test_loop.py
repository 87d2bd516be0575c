"""The loop: git ratchet, records, noise rule, control socket, and resume after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import git
import pytest
import trainers

from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.loop import daemon
from ratchet.engine.loop.proposal_check import only_seed_changes
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import control, events, paths
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout, results_tsv

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)

FAST = {"budget_seconds": 11.0, "eval_tokens": 65536}


def commit_workspace(ws: layout.Workspace, train_source: str) -> None:
    (ws.root / "train.py").write_text(train_source)
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("test trainer")


def ratchet(*args: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def read_log(folder) -> list[dict]:
    return list(events.iter_events(folder / "events.jsonl"))


def wait_for(folder, predicate, timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = read_log(folder) if (folder / "events.jsonl").exists() else []
        if predicate(log):
            return log
        time.sleep(0.2)
    raise AssertionError(f"timed out; last events: {[e['type'] for e in log[-10:]]}")


def check_ratchet_invariants(ws: layout.Workspace, log: list[dict],
                             edits: tuple[str, ...] = ()) -> None:
    """results.tsv matches the events; the branch holds exactly the kept commits, in order;
    the tracked files are as committed, but for the person's `edits`."""
    ends = [e for e in log if e["type"] == "exp_end"]
    rows = results_tsv.read(ws.root / "results.tsv")
    assert len(rows) == len(ends)
    by_commit = {}
    for row in rows:
        by_commit.setdefault(row["commit"], []).append(row)
    for end in ends:
        matching = by_commit[end["commit"][:7]]
        # a run with no val_bpb is a crash row, or a discard where it was stopped early
        unmeasured = "discard" if end["status"] == "stopped_early" else "crash"
        assert any((r["val_bpb"] == f"{end['val_bpb']:.6f}") if end["val_bpb"] is not None
                   else r["status"] == unmeasured for r in matching)
    repo = git.Repo(ws.root)
    start = next(e for e in log if e["type"] == "session_start")
    kept = [e["commit"] for e in ends if e["decision"] == "keep"]
    on_branch = [c.hexsha for c in reversed(list(repo.iter_commits(
        f"{start['base_commit']}..{start['branch']}")))]
    assert on_branch == kept
    assert repo.head.commit.hexsha == (kept[-1] if kept else start["base_commit"])
    assert repo.active_branch.name == start["branch"]
    discarded = {e["commit"] for e in ends if e["decision"] != "keep"} - set(kept) \
        - {start["base_commit"]}
    assert not discarded & set(on_branch)
    unstaged = {d.a_path for d in repo.index.diff(None)}
    assert not repo.index.diff("HEAD") and unstaged <= set(edits), unstaged


# --- fast loops on a bigram trainer --------------------------------------------------------


def run_session(ws, max_experiments: int, tag: str = "t") -> list[dict]:
    config = ws.config()
    options = RunOptions(session=f"s-{tag}", tag=tag, max_experiments=max_experiments)
    Session(ws, config, options, OfflineAgent(seed=1)).run()
    return read_log(ws.runs_dir() / options.session)


def test_pure_noise_is_never_kept(make_workspace):
    ws = make_workspace("noise", **FAST)
    source = trainers.loop_bigram().replace("SMOOTHING = 1.0  # added to every bigram count\n",
                                            "").replace("+ SMOOTHING", "+ 1.0")
    commit_workspace(ws, source)
    log = run_session(ws, max_experiments=3)
    ends = [e for e in log if e["type"] == "exp_end"]
    baseline = [e["val_bpb"] for e in ends if e["kind"] == "baseline"]
    assert len(set(baseline)) == 4  # the seeds really differ: there is noise to measure
    candidates = [e for e in ends if e["kind"] == "candidate"]
    assert len(candidates) == 3
    assert all(e["decision"] != "keep" for e in ends)
    # every constant left in this trainer is irrelevant to the result
    assert all(("UNUSED_WIDTH" in e["description"] or "HOLD_SECONDS" in e["description"])
               for e in candidates)
    check_ratchet_invariants(ws, log)


def test_real_gain_is_kept_and_confirmed(make_workspace):
    # a loaded 2-core machine can need more than FAST's budget for one short run
    ws = make_workspace("gain", **{**FAST, "budget_seconds": 31.0}, min_improvement=0.0)
    config = ws.config()
    config.loop.noise_k = 0.0  # any real improvement counts here
    config.loop.baseline_seeds = 1  # no noise to measure when noise_k is 0
    configmod.save(ws.root, config)
    # a deliberately bad smoothing the agent can only improve on
    commit_workspace(ws, trainers.loop_bigram().replace("SMOOTHING = 1.0", "SMOOTHING = 50.0"))
    log = run_session(ws, max_experiments=4, tag="gain")
    ends = [e for e in log if e["type"] == "exp_end"]
    kept = [e for e in ends if e["decision"] == "keep"]
    assert kept, [(e["description"], e["decision"], e["val_bpb"]) for e in ends]
    assert all(e["kind"] == "confirm" for e in kept)
    check_ratchet_invariants(ws, log)


def test_seed_only_change_is_refused():
    old = {"train.py": "SEED = 1\nLR = 0.1\n"}
    assert only_seed_changes(old, {"train.py": "SEED = 2\nLR = 0.1\n"})
    assert only_seed_changes(old, {"train.py": "SEED = 1\nLR = 0.1\ntorch.manual_seed(3)\n"})
    assert not only_seed_changes(old, {"train.py": "SEED = 2\nLR = 0.2\n"})


# --- the engine as its own process ---------------------------------------------------------


def spawn(ws, tag: str, max_experiments: int | None = None, resume: bool = False,
          session: str | None = None):
    options = RunOptions(session=session or daemon.new_session_id(tag), tag=tag,
                         max_experiments=max_experiments, resume=resume)
    return daemon.spawn(ws, options)


def stop_engine(folder, pid) -> None:
    if paths.pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_control_socket_pause_steer_kill_stop(make_workspace):
    ws = make_workspace("ctl", **FAST)
    commit_workspace(ws, trainers.loop_bigram(hold=4.0))
    folder, pid = spawn(ws, "ctl")
    sock = folder / "control.sock"
    try:
        wait_for(folder, lambda log: any(e["type"] == "exp_start" for e in log))
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        # kill: the running experiment ends as killed and the loop goes on
        assert control.send(sock, "kill")["ok"]
        log = wait_for(folder, lambda log: any(e["type"] == "exp_end" for e in log))
        first = next(e for e in log if e["type"] == "exp_end")
        assert first["status"] == "killed"
        # pause: takes effect after the current experiment; nothing new starts while paused
        assert control.send(sock, "pause")["ok"]
        log = wait_for(folder, lambda log: any(e["type"] == "paused" for e in log))
        started = sum(1 for e in log if e["type"] == "exp_start")
        time.sleep(2.0)
        assert sum(1 for e in read_log(folder) if e["type"] == "exp_start") == started
        # steer while paused, then resume: the note reaches the agent's next proposal
        assert control.send(sock, "steer", text="focus on SMOOTHING")["ok"]
        assert control.send(sock, "resume")["ok"]
        # the note reaches the next proposal the agent makes (one it prepared while the
        # experiment trained may come first)
        log = wait_for(folder, lambda log: any(e["type"] == "proposal" and e.get("steer")
                                               for e in log), timeout=240)
        proposal = next(e for e in log if e["type"] == "proposal" and e.get("steer"))
        assert "SMOOTHING" in proposal["description"]
        assert proposal["steer"] == ["focus on SMOOTHING"]
        assert any(e["type"] == "control" and e.get("text") == "focus on SMOOTHING"
                   for e in log)
        # stop: the in-flight experiment is recorded as interrupted and the engine exits
        wait_for(folder, lambda log: log[-1]["type"] in ("exp_start", "train_log", "phase"))
        assert control.send(sock, "stop")["ok"]
        log = wait_for(folder, lambda log: log[-1]["type"] == "session_end", timeout=60)
        assert log[-1]["reason"] == "stopped"
        deadline = time.monotonic() + 20
        while paths.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not paths.pid_alive(pid)
        assert not sock.exists()
        check_ratchet_invariants(ws, log)
    finally:
        stop_engine(folder, pid)


def test_kill_9_then_resume_loses_nothing(make_workspace):
    ws = make_workspace("resume", **FAST)
    config = ws.config()
    config.loop.baseline_seeds = 2
    configmod.save(ws.root, config)
    commit_workspace(ws, trainers.loop_bigram(hold=3.0))
    folder, pid = spawn(ws, "res")
    try:
        log = wait_for(folder, lambda log: sum(e["type"] == "exp_end" for e in log) >= 1
                       and log[-1]["type"] in ("exp_start", "train_log", "phase"))
        finished = [e for e in log if e["type"] == "exp_end"]
        in_flight = [e for e in log if e["type"] == "exp_start"][-1]
        os.kill(pid, signal.SIGKILL)
        while paths.pid_alive(pid):
            time.sleep(0.05)
    finally:
        stop_engine(folder, pid)
    # the person's edit while the engine was down: the resume refuses it and leaves it
    with open(ws.root / "train.py", "a") as f:
        f.write("\nMY_EDIT = 1\n")
    mine = (ws.root / "train.py").read_text()
    done = ratchet("run", "--headless", "--resume", "--max-experiments", "2", cwd=ws.root,
                   timeout=300)
    assert done.returncode == 2 and "uncommitted changes to tracked files (train.py)" in \
        done.stderr.splitlines()[-1], done.stdout + done.stderr
    assert (ws.root / "train.py").read_text() == mine
    git.Repo(ws.root).git.checkout("--", "train.py")  # the person puts it away
    done = ratchet("run", "--headless", "--resume", "--max-experiments", "2", cwd=ws.root,
                   timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    log = read_log(folder)
    ends = [e for e in log if e["type"] == "exp_end"]
    assert ends[: len(finished)] == finished  # nothing finished was lost or rewritten
    interrupted = ends[len(finished)]
    assert interrupted["exp"] == in_flight["exp"]
    assert (interrupted["status"], interrupted["decision"]) == ("interrupted", "interrupted")
    assert sum(1 for e in log if e["type"] == "session_start") == 2
    assert [e["kind"] for e in ends].count("baseline") == 3  # 2 seeds + the interrupted one
    assert log[-1]["type"] == "session_end"
    check_ratchet_invariants(ws, log)


def test_sighup_does_not_stop_the_engine(make_workspace):
    ws = make_workspace("hup", **FAST)
    commit_workspace(ws, trainers.loop_bigram(hold=2.0))
    folder, pid = spawn(ws, "hup")
    try:
        wait_for(folder, lambda log: any(e["type"] == "exp_start" for e in log))
        os.kill(pid, signal.SIGHUP)
        time.sleep(1.0)
        assert paths.pid_alive(pid)
        os.kill(pid, signal.SIGTERM)
        log = wait_for(folder, lambda log: log[-1]["type"] == "session_end", timeout=60)
        assert log[-1]["reason"] == "signal"
        assert any(e["type"] == "exp_end" and e["status"] == "interrupted" for e in log)
    finally:
        stop_engine(folder, pid)


def test_control_commands_without_an_engine_fail_with_one_line(make_workspace):
    ws = make_workspace("idle")
    for args in (["ctl", "pause"], ["stop"], ["status"]):
        done = ratchet(*args, cwd=ws.root, timeout=60)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("ratchet: error:")


def test_run_refuses_a_dirty_workspace(make_workspace):
    ws = make_workspace("dirty")
    with open(ws.root / "train.py", "a") as f:
        f.write("\n# local edit\n")
    done = ratchet("run", "--headless", "--max-experiments", "1", cwd=ws.root, timeout=60)
    assert done.returncode == 2
    assert "uncommitted changes" in done.stderr
