"""Pipelined proposals and several workers: the agent never holds up a worker, and the branch
stays one line of improvements."""

from __future__ import annotations

import git
import pytest
import trainers
from conftest import waiting_children
from paced_agent import PacedAgent
from test_loop import FAST, check_ratchet_invariants, commit_workspace, read_log

from ratchet.engine.loop import gitops
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod

# two trainings at once on a small, shared CI machine need more than FAST's budget
SETTINGS = {**FAST, "budget_seconds": 41.0}


def configure(ws, **loop) -> None:
    config = ws.config()
    for key, value in loop.items():
        setattr(config.loop, key, value)
    configmod.save(ws.root, config)
    repo = git.Repo(ws.root)
    repo.index.add(["ratchet.toml"])
    repo.index.commit("loop settings")


def run(ws, agent, max_experiments: int, tag: str) -> list[dict]:
    options = RunOptions(session=f"s-{tag}", tag=tag, max_experiments=max_experiments)
    assert Session(ws, ws.config(), options, agent).run() == 0
    return read_log(ws.runs_dir() / options.session)


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def spans(log: list[dict]) -> dict[int, tuple[float, float, dict]]:
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    return {e["exp"]: (starts[e["exp"]]["t"], e["t"], starts[e["exp"]])
            for e in log if e["type"] == "exp_end"}


def test_one_worker_proposes_while_the_experiment_trains(make_workspace):
    ws = make_workspace("pipe", **SETTINGS)
    commit_workspace(ws, trainers.fixed_duration(wall=2.0))
    configure(ws, baseline_seeds=1)
    agent = PacedAgent(seconds=1.5)  # pure-noise changes: nothing is kept, nothing rebased
    log = run(ws, agent, max_experiments=1, tag="pipe")
    runs = spans(log)
    assert [runs[n][2]["kind"] for n in sorted(runs)] == ["baseline", "candidate"]
    # every proposal was made while an experiment trained, not in between
    for call in agent.calls:
        assert any(overlap(call, run[:2]) >= 1.0 for run in runs.values()), (call, runs)
    # so the worker waited on nothing but the engine between experiments (generous: loaded CI)
    ordered = sorted(runs.values())
    gaps = [b[0] - a[1] for a, b in zip(ordered, ordered[1:], strict=False)]
    assert max(gaps) < 1.5, gaps
    for event in log:
        if event["type"] in ("exp_start", "exp_end", "train_log"):
            assert event["worker"] == "0", event
    assert all(e["based_on"] for e in log if e["type"] == "proposal")
    check_ratchet_invariants(ws, log)
    # every run's train.py starts with torch imported, so its clock starts after the imports;
    # the candidate's process was started while the baseline trained (the gaps above)
    folder = ws.runs_dir() / "s-pipe"
    assert "torch preloaded: True" in (folder / "exp-0001" / "train.log").read_text()
    assert "torch preloaded: True" in (folder / "exp-0002" / "train.log").read_text()
    assert not (folder / "warm").exists()
    assert waiting_children() == []


def test_two_workers_keep_one_line_of_improvements(make_workspace):
    ws = make_workspace("two", **SETTINGS, min_improvement=0.0)
    commit_workspace(ws, trainers.fixed_duration(wall=2.0, smoothing=50.0))
    configure(ws, baseline_seeds=1, noise_k=0.0, gpus=[0, 1])
    plan = [("SMOOTHING", 10.0), ("UNUSED_WIDTH", 32), ("SMOOTHING", 2.0), ("SMOOTHING", 1.0)]
    agent = PacedAgent(seconds=1.0, plan=plan)
    log = run(ws, agent, max_experiments=4, tag="two")
    runs = spans(log)
    # the agent was told what was running or waiting, so it does not propose it again
    assert agent.seen_in_flight[1] == ["SMOOTHING -> 10.0"]
    # both devices trained, at the same time, each child seeing only its own device
    by_worker = {}
    for start, end, event in runs.values():
        by_worker.setdefault(event["worker"], []).append((start, end))
    assert set(by_worker) == {"0", "1"}
    assert any(overlap(a, b) > 0.5 for a in by_worker["0"] for b in by_worker["1"])
    for end in (e for e in log if e["type"] == "exp_end"):
        assert f"device={end['worker']}" in end["result"]["tail"]
    # every keep beat the best of its moment, and was measured on a child of that best
    ends = [e for e in log if e["type"] == "exp_end"]
    kept = [e for e in ends if e["decision"] == "keep"]
    assert kept, [(e["exp"], e["description"], e["decision"]) for e in ends]
    repo = git.Repo(ws.root)
    best = next(e for e in log if e["type"] == "session_start")["base_commit"]
    for keep in kept:
        assert keep["new_best"] < keep["best_before"]
        assert [p.hexsha for p in repo.commit(keep["commit"]).parents] == [best]
        best = keep["commit"]
    # a candidate proposed from an older best was rebased or dropped, never run on a stale base
    moved = [e for e in log if e["type"] in ("proposal_rebased", "proposal_dropped")]
    for event in moved:
        assert event.get("reason") or event["based_on"] != event.get("previous_commit")
    check_ratchet_invariants(ws, log)


def test_worker_settings_in_ratchet_toml():
    loop = configmod.from_dict({"loop": {"gpus": [0, 2], "backend": "ray",
                                         "ray_address": "10.0.0.1:6379"}}).loop
    assert (loop.gpus, loop.backend, loop.ray_address, loop.ray_resource) == \
        ([0, 2], "ray", "10.0.0.1:6379", "GPU")
    assert configmod.from_dict(configmod.Config().to_dict()).loop.gpus == []
    for bad, message in (({"gpus": ["a"]}, "list of device numbers"),
                         ({"gpus": [1, 1]}, "lists a device twice"),
                         ({"backend": "slurm"}, "backend must be one of local, ray")):
        with pytest.raises(configmod.ConfigError, match=message):
            configmod.from_dict({"loop": bad})


@pytest.mark.parametrize("args, message", [
    (["--gpus", "a,b"], "expected device numbers"),
    (["--gpus", "0,0"], "listed twice"),
    (["--backend", "slurm"], "invalid choice"),
])
def test_bad_worker_options_fail_with_one_line(make_workspace, args, message):
    from test_loop import ratchet

    ws = make_workspace("opts")
    done = ratchet("run", "--headless", *args, cwd=ws.root, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr.splitlines()[-1]


def test_rebase_reapplies_a_change_or_says_why_not(tmp_path):
    repo = git.Repo.init(tmp_path, initial_branch="main")
    (tmp_path / "train.py").write_text("A = 1\n\n# spacer\n\nB = 2\n")
    repo.index.add(["train.py"])
    base = repo.index.commit("base").hexsha
    best = gitops.commit_tree(repo, base, {"train.py": "A = 5\n\n# spacer\n\nB = 2\n"}, "best")
    other = gitops.commit_tree(repo, base, {"train.py": "A = 1\n\n# spacer\n\nB = 9\n"}, "b")
    clash = gitops.commit_tree(repo, base, {"train.py": "A = 7\n\n# spacer\n\nB = 2\n"}, "a")
    rebased, why = gitops.rebase_commit(repo, other, best, "b rebased")
    assert why == "" and gitops.parent_of(repo, rebased) == best
    assert repo.commit(rebased).tree["train.py"].data_stream.read().decode() == \
        "A = 5\n\n# spacer\n\nB = 9\n"
    assert gitops.rebase_commit(repo, clash, best, "a") == (None, "train.py conflicts with the "
                                                                  "new best")
    assert gitops.rebase_commit(repo, best, best, "again")[1] == \
        "the new best already holds this change"
    # neighbouring lines, as train.py's constants are, merge too
    near = gitops.commit_tree(repo, base, {"train.py": "A = 1\n\n# spacer\nC = 0\nB = 2\n"}, "c")
    rebased, why = gitops.rebase_commit(repo, near, best, "c rebased")
    assert repo.commit(rebased).tree["train.py"].data_stream.read().decode() == \
        "A = 5\n\n# spacer\nC = 0\nB = 2\n"
    assert gitops.merge_adjacent("A = 1\nB = 2\n", "A = 5\nB = 2\n", "A = 1\nB = 9\n") == \
        "A = 5\nB = 9\n"
    assert gitops.merge_adjacent("A = 1\nB = 2\n", "A = 5\nB = 2\n", "A = 7\nB = 2\n") is None
    assert repo.head.commit.hexsha == base and not repo.is_dirty()  # nothing else moved


def test_resume_closes_every_experiment_in_flight_and_runs_the_queued_one(make_workspace):
    ws = make_workspace("multi", **SETTINGS)
    commit_workspace(ws, trainers.fixed_duration(wall=1.0))
    configure(ws, baseline_seeds=1, gpus=[0, 1])
    repo = git.Repo(ws.root)
    base = repo.head.commit.hexsha
    repo.create_head("ratchet/multi")
    source = (ws.root / "train.py").read_text()
    folder = ws.runs_dir() / "s-multi"
    commits = {n: gitops.commit_tree(repo, base, {"train.py": source.replace(
        "UNUSED_WIDTH = 64", f"UNUSED_WIDTH = {n}")}, f"exp {n}") for n in (2, 3, 4)}
    with events.EventLog(folder / "events.jsonl") as log:  # an engine killed with 3 candidates
        log.append("session_start", session="s-multi", tag="multi", branch="ratchet/multi",
                   base_commit=base, config=ws.config().to_dict(), agent="paced", pid=1)
        log.append("exp_start", exp=1, kind="baseline", commit=base, seed=1337, worker="0")
        log.append("exp_end", exp=1, kind="baseline", status="ok", decision="baseline",
                   val_bpb=0.5, commit=base, description="baseline", worker="0", result={})
        for n, worker in ((2, "0"), (3, "1"), (4, None)):
            log.append("proposal", exp=n, description=f"UNUSED_WIDTH -> {n}", based_on=base,
                       files=["train.py"], commit=commits[n], changes={"UNUSED_WIDTH": n})
            if worker is not None:
                log.append("exp_start", exp=n, kind="candidate", commit=commits[n], seed=1337,
                           description=f"UNUSED_WIDTH -> {n}", worker=worker)
    options = RunOptions(session="s-multi", tag="multi", max_experiments=3, resume=True)
    assert Session(ws, ws.config(), options, PacedAgent(seconds=0.1)).run() == 0
    log = read_log(folder)
    ends = {e["exp"]: e for e in log if e["type"] == "exp_end"}
    assert (ends[2]["status"], ends[2]["worker"]) == ("interrupted", "0")
    assert (ends[3]["status"], ends[3]["worker"]) == ("interrupted", "1")
    assert ends[4]["status"] == "ok" and ends[4]["commit"] == commits[4]  # queued: it ran
    assert sum(e["type"] == "proposal" for e in log) == 3  # no new proposal beyond the limit
    state = statemod.fold(log)
    assert not state.running and not state.queued and state.end_reason == "max_experiments"
    assert repo.head.commit.hexsha == base and repo.active_branch.name == "ratchet/multi"
