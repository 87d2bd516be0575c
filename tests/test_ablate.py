"""`ratchet ablate`: each kept change undone on the best, paired against it; changes that do not
help flagged, one whose reverse no longer applies reported, and `--prune` putting the stack
without them on a new branch only where its own runs show it no worse; kill -9 and --resume
lose nothing and run nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import git
import pytest
import study_trainers as trainers
from test_validate import FAST, ratchet, read

from ratchet.engine.agents import earlier as earlier_text
from ratchet.engine.protocol import paths, schema, study_log
from ratchet.engine.workspace import earlier

pytestmark = pytest.mark.slow  # real sessions: run first (conftest)


def ablation(ws) -> tuple[list[dict], dict[int, dict], dict | None]:
    folder = next(p for p in paths.sessions(ws.runs_dir()) if "ablate" in p.name)
    log = read(folder)
    results = [e for e in log if e["type"] == schema.STUDY_RESULT]
    changes = {e["change"]: e for e in results if "change" in e}
    pruned = next((e for e in results if e.get("pruned") is not None), None)
    return log, changes, pruned


def kill_mid_run(ws, args: list[str]) -> list[dict]:
    """Start `ratchet ARGS`, kill -9 it while a run is in flight after two have finished, and
    return the study's log as it was left."""
    proc = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", *args], cwd=ws.root,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, log = time.monotonic() + 300, []
    try:
        while time.monotonic() < deadline:
            found = [p for p in paths.sessions(ws.runs_dir()) if args[0] in p.name]
            log = read(found[-1]) if found else []
            if sum(e["type"] == "exp_end" for e in log) >= 2 and log[-1]["type"] in (
                    "exp_start", "train_log", "phase"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"no run in flight: {[e['type'] for e in log[-10:]]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return log


def test_ablate_flags_each_change_and_prunes_what_does_not_help(make_workspace, tmp_path):
    ws = make_workspace("prune", **FAST)
    studied = trainers.studied_session(ws, ["STEADY", "HARMFUL", "UNUSED"], tag="p", hold=0.5)
    repo = git.Repo(ws.root)
    head = repo.head.commit.hexsha
    # killed with -9 mid-run, then resumed: the in-flight run is recorded as interrupted and
    # runs again; nothing that finished runs twice or is rewritten
    before = kill_mid_run(ws, ["ablate", studied, "--seeds", "2", "--prune", "--yes"])
    finished = sum(e["type"] == "exp_end" for e in before)
    assert before[-1]["type"] != "session_end"
    done = ratchet("ablate", "--resume", "--yes", cwd=ws.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{8 - finished} runs (and up to 2 more for the pruned stack)" in done.stdout
    log, changes, pruned = ablation(ws)
    assert log[: len(before)] == before
    assert [e["status"] for e in log if e["type"] == "exp_end"][finished] == "interrupted"
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    keys = [study_log.key_of(starts[e["exp"]]) for e in log
            if e["type"] == "exp_end" and e["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 10  # 8 planned, then the pruned stack's 2, once each
    assert {n: c["flag"] for n, c in changes.items()} == {1: "helps", 2: "harmful",
                                                           3: "within_noise"}
    assert changes[1]["effect"] < 0 < changes[2]["effect"] and changes[3]["effect"] == 0.0
    assert all(c["runs"] == 2 and c["se"] is not None for c in changes.values())
    # the stack without #2 and #3 is no worse (better: #2 hurt), so a branch holds it
    assert pruned["pruned"] == [2, 3] and pruned["no_worse"] is True
    assert pruned["effect"] < 0 and pruned["branch"] == "ratchet/p-pruned"
    text = repo.git.show("ratchet/p-pruned:train.py")
    assert "STEADY = 1\n" in text and "HARMFUL = 0\n" in text and "UNUSED = 0\n" in text
    best = repo.heads["ratchet/p"].commit
    assert repo.commit("ratchet/p-pruned").parents[0].parents[0] == best  # one undo each
    assert repo.head.commit.hexsha == head and not repo.is_dirty()  # the checkout untouched
    kinds = [e["kind"] for e in log if e["type"] == "exp_end" and e["status"] == "ok"]
    assert kinds.count("study_best") == 2 and kinds.count("study_ablated") == 6
    assert kinds.count("study_pruned") == 2
    # the report: the table, and the chart
    done = ratchet("report", "--png", str(tmp_path / "a.png"), cwd=ws.root)
    assert done.returncode == 0, done.stderr
    for word in ("helps", "harmful", "within noise", "ratchet/p-pruned", "STEADY"):
        assert word in done.stdout
    assert (tmp_path / "a.png").stat().st_size > 10_000
    done = ratchet("report", "--md", cwd=ws.root)
    assert "## Contribution per change" in done.stdout and "| #2 |" in done.stdout
    # a later session's agents read what the study concluded
    found = earlier.read(ws.runs_dir(), exclude="later")
    (note,) = found.studies
    assert earlier.read(ws.runs_dir(), exclude="later").studies == [note]  # from its cache
    assert note.study == "ablate" and note.of == studied and note.complete
    text = earlier_text.render(found.entries, found.journal, studies=found.studies)
    assert f"- ablate of the best of session {studied}, each kept change undone: " \
           "'STEADY -> 1' helps (-0." in text
    assert "'HARMFUL -> 1' harmful (+0." in text and "'UNUSED -> 1' within noise (+0.0000" \
        in text
    assert "the stack without those that did not help measured no worse" in text


def test_redundant_changes_are_not_pruned_together(make_workspace):
    # TWIN_A and TWIN_B each cover for the other; STEADY=2 rewrote the line STEADY's keep made
    ws = make_workspace("twins", **FAST)
    studied = trainers.studied_session(ws, ["STEADY", "TWIN_A", "TWIN_B", "STEADY=2"],
                                       tag="w")
    done = ratchet("ablate", studied, "--seeds", "2", "--prune", "--yes", cwd=ws.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STEADY -> 1  [does not apply:" in done.stdout  # said before it starts
    log, changes, pruned = ablation(ws)
    assert changes[1]["flag"] == "not_applied"
    assert "a later change rewrote the same lines" in changes[1]["why"]
    assert {n: c["flag"] for n, c in changes.items() if n > 1} == {
        2: "within_noise", 3: "within_noise", 4: "within_noise"}
    # pruned together, the twins' gain goes: worse than the best, so no branch
    assert pruned["pruned"] == [2, 3, 4] and pruned["no_worse"] is False
    assert pruned["effect"] > 0 and pruned["branch"] is None
    assert "help together" in pruned["why"]
    assert not [h for h in git.Repo(ws.root).heads if h.name.endswith("-pruned")]
    assert sum(1 for e in log if e["type"] == "exp_end") == 4 * 2 + 2
