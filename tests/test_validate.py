"""`ratchet validate`: a session's base and best, paired, at longer budgets, through the engine's
own workers, sandbox and harness; the cost refused without a terminal or --yes; kill -9 and
--resume lose nothing and run nothing twice."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time

import git
import pytest
import study_trainers as trainers

from ratchet.engine.protocol import events, paths, schema, study_log

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)

FAST = {"eval_tokens": 65536}


def ratchet(*args: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def studies(ws) -> list:
    return [p for p in paths.sessions(ws.runs_dir()) if "validate" in p.name]


def read(folder) -> list[dict]:
    return list(events.iter_events(folder / paths.EVENTS))


def wait_for(ws, predicate, timeout: float = 300.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    log: list[dict] = []
    while time.monotonic() < deadline:
        found = studies(ws)
        log = read(found[-1]) if found else []
        if predicate(log):
            return log
        time.sleep(0.1)
    raise AssertionError(f"timed out; last events: {[e['type'] for e in log[-10:]]}")


def test_without_a_terminal_or_yes_it_states_the_cost_and_refuses(make_workspace):
    ws = make_workspace("refuse", **FAST)
    trainers.studied_session(ws, ["STEADY"])
    done = ratchet("validate", "--budgets", "1x,2x", "--seeds", "3", cwd=ws.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "12 runs: 3.0 device-minutes of training, 3.0 min on 1 worker" in done.stdout
    error = done.stderr.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("ratchet: error: validate would start 12 runs")
    assert error[0].endswith("add --yes")
    assert studies(ws) == []  # nothing started, not even a session folder
    # nothing to resume either, and bad flags are one line too
    done = ratchet("validate", "--resume", "--yes", cwd=ws.root)
    assert done.returncode == 2 and "nothing to resume" in done.stderr
    done = ratchet("validate", "--budgets", "1x,1x", cwd=ws.root)
    assert done.returncode == 2 and "listed twice" in done.stderr
    done = ratchet("validate", "--seeds", "1", cwd=ws.root)
    assert done.returncode == 2 and "at least 2 seeds" in done.stderr


def test_validate_recovers_each_verdict_and_resumes_after_kill_9(make_workspace):
    ws = make_workspace("validate", **FAST)
    studied = trainers.studied_session(ws, ["FADES"], hold=0.5)
    checkout = git.Repo(ws.root)
    head, branch = checkout.head.commit.hexsha, checkout.active_branch.name
    proc = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", "validate", studied,
                             "--budgets", "1x,2x,4x,8x", "--seeds", "2", "--yes"],
                            cwd=ws.root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(ws, lambda log: sum(e["type"] == "exp_end" for e in log) >= 3
                 and log[-1]["type"] in ("exp_start", "train_log", "phase"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    folder = studies(ws)[-1]
    before = read(folder)
    finished = [e for e in before if e["type"] == "exp_end"]
    in_flight = {e["exp"] for e in before if e["type"] == "exp_start"} - \
        {e["exp"] for e in finished}
    assert in_flight and before[-1]["type"] != "session_end"
    done = ratchet("report", folder.name, cwd=ws.root)
    assert done.returncode == 0 and "ratchet validate --resume" in done.stdout
    # the resume runs only what has not finished, once
    done = ratchet("validate", "--resume", "--yes", cwd=ws.root)
    assert done.returncode == 0, done.stdout + done.stderr
    runs_left = 16 - len(finished)
    assert f"{runs_left} runs:" in done.stdout
    log = read(folder)
    assert log[: len(before)] == before  # nothing recorded was rewritten
    ends = [e for e in log if e["type"] == "exp_end"]
    assert [e["exp"] for e in ends[len(finished): len(finished) + len(in_flight)]] == \
        sorted(in_flight)
    assert all(e["status"] == "interrupted" for e in ends[len(finished):][:len(in_flight)])
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    keys = [study_log.key_of(starts[e["exp"]]) for e in ends if e["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 16  # each planned run finished exactly once
    assert [e["tag"] for e in log if e["type"] == "session_start"] == ["validate-t"] * 2
    assert log[-1]["type"] == "session_end" and log[-1]["reason"] == "complete"
    # the verdicts: FADES gains at 1x, half as much at 2x, nothing at 4x, and hurts at 8x
    results = {e["multiple"]: e for e in log if e["type"] == schema.STUDY_RESULT}
    assert {m: r["verdict"] for m, r in results.items()} == {
        1.0: "holds", 2.0: "shrinks", 4.0: "vanishes", 8.0: "reverses"}
    assert results[1.0]["effect"] < results[2.0]["effect"] < 0 < results[8.0]["effect"]
    assert results[4.0]["effect"] == 0.0 and results[4.0]["runs"] == 2
    assert results[8.0]["trend"]["slope"] > 0 and results[8.0]["trend"]["budgets"] == 4
    budgets = {e["exp"]: e["budget"] for e in starts.values()}
    assert sorted(set(budgets.values())) == [10.0, 20.0, 40.0, 80.0]
    # the person's checkout was never touched
    assert checkout.head.commit.hexsha == head and checkout.active_branch.name == branch
    assert not checkout.is_dirty()
    # a complete study has nothing to resume; report shows both the table and the trend
    done = ratchet("validate", "--resume", "--yes", cwd=ws.root)
    assert done.returncode == 2 and "is complete" in done.stderr
    done = ratchet("report", cwd=ws.root)
    assert done.returncode == 0
    for verdict in ("holds", "shrinks", "vanishes", "reverses", "per doubling"):
        assert verdict in done.stdout
    done = ratchet("ls", cwd=ws.root)
    assert folder.name in done.stdout and "validate" in done.stdout
    # a research session's resume never takes the study for its own
    done = ratchet("run", "--resume", "--headless", "--tag", "validate-t", cwd=ws.root)
    assert done.returncode == 2
    assert "nothing to resume: no earlier session with tag 'validate-t'" in done.stderr


def in_a_terminal(args: list[str], cwd, answer: bytes) -> tuple[int, str]:
    """Run `ratchet ARGS` on a pseudo-terminal, answer its question, return (code, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b"[y/N]" not in output and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                output += os.read(leader, 4096)
        os.write(leader, answer)
        code = proc.wait(timeout=60)
        with contextlib.suppress(OSError):  # the terminal closes with the process
            while select.select([leader], [], [], 0.2)[0]:
                chunk = os.read(leader, 4096)
                if not chunk:
                    break
                output += chunk
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return code, output.decode(errors="replace")


def test_in_a_terminal_it_states_the_cost_and_asks_first(make_workspace):
    ws = make_workspace("ask", **FAST)
    trainers.studied_session(ws, ["STEADY"])
    for answer in (b"n\n", b"\n"):  # no, and the default, start nothing
        code, output = in_a_terminal(["validate", "--budgets", "1x,2x", "--seeds", "2"],
                                     ws.root, answer)
        assert code == 2, output
        assert "8 runs: 2.0 device-minutes of training" in output
        assert output.index("device-minutes") < output.index("start it? [y/N]")
        assert "ratchet: error: not started" in output
        assert studies(ws) == []


@pytest.mark.parametrize("flag", ["--budgets", "--seeds"])
def test_resume_refuses_a_new_plan(make_workspace, flag):
    ws = make_workspace(f"plan{flag}", **FAST)
    trainers.studied_session(ws, ["STEADY"])
    done = ratchet("validate", "--resume", flag, "2", "--yes", cwd=ws.root)
    assert done.returncode == 2 and f"leave out {flag}" in done.stderr
