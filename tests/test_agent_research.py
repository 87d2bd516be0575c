"""The Claude agent as a researcher, in a real session against the scripted Messages API: it
keeps a journal, reads a past experiment's diff with view_experiment, searches what was tried,
and each request carries the diagnostics table and the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import git
import trainers
from fake_messages_api import FakeMessagesAPI, stream
from test_claude_agent import FAKE_KEY, OLD, finish, wait_for

from ratchet.engine.agents import diagnostics
from ratchet.engine.agents.claude.prompt import user_message
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import paths
from ratchet.engine.workspace import config as configmod

NOTE = "Hypothesis: SMOOTHING 1.0 over-smooths a 150k-byte corpus; lower should help."


def write(value: str) -> tuple:
    return ("tool_use", "write_file", {"path": "train.py", "content": trainers.loop_bigram()
                                       .replace(OLD, f"SMOOTHING = {value}")})


def prompt_of(request: dict) -> str:
    return request["body"]["messages"][0]["content"][0]["text"]


def test_claude_keeps_a_journal_and_reads_a_past_diff_with_view_experiment(make_workspace):
    ws = make_workspace("research", budget_seconds=61.0, eval_tokens=65536)
    config = ws.config()
    config.loop.baseline_seeds, config.loop.confirm = 1, False
    config.loop.rule = "margin"  # one run decides: the agent, not the rule, is under test
    config.agent.claude.thinking_budget = 0
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text(trainers.loop_bigram())
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("bigram trainer")
    with FakeMessagesAPI([
        # exp 2: a journal note, then the edit
        stream(("text", "Starting with smoothing."), ("tool_use", "journal", {"note": NOTE}),
               write("0.5")),
        stream(finish("lower SMOOTHING from 1.0 to 0.5")),
        # exp 3 is proposed while exp 2 trains
        stream(write("2.0"), finish("raise SMOOTHING from 1.0 to 2.0")),
        # exp 4 is proposed once exp 2 has finished: it reads exp 2 and searches
        stream(("tool_use", "view_experiment", {"exp": 2}),
               ("tool_use", "search_experiments", {"query": "SMOOTHING"})),
        stream(write("0.75"), finish("set SMOOTHING to 0.75")),
    ]) as api:
        env = {**os.environ, "ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": api.url}
        done = subprocess.run([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                               "--agent", "claude", "--max-experiments", "3", "--tag", "res"],
                              cwd=ws.root, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        (folder,) = paths.sessions(ws.runs_dir())
        log = wait_for(folder / "events.jsonl", lambda log: any(
            e["type"] == "session_end" for e in log))
        requests = list(api.requests)

    (note,) = [e for e in log if e["type"] == "journal"]
    assert note["exp"] == 2 and note["text"] == NOTE
    assert [e["description"] for e in log if e["type"] == "proposal"] == [
        "lower SMOOTHING from 1.0 to 0.5", "raise SMOOTHING from 1.0 to 2.0",
        "set SMOOTHING to 0.75"]
    # proposal 4's request: the diagnostics table with exp 2's row, and the journal
    prompt = prompt_of(requests[3])
    assert diagnostics.HEADER in prompt and "Best run's training loss at 25/50/75/100%" in prompt
    (row,) = [line for line in prompt.splitlines() if line.startswith("2 | ")]
    cells = row.split(" | ")
    assert cells[-1] == "lower SMOOTHING from 1.0 to 0.5 [SMOOTHING 1.0->0.5]"
    assert cells[4] != "-" and "/" in cells[8]  # steps, and the engine's time against budget
    assert f"[exp 2] {NOTE}" in prompt
    # view_experiment's answer is exp 2's own diff, its curve and its output
    view, search = [b for b in requests[4]["body"]["messages"][-1]["content"]
                    if b["type"] == "tool_result"]
    assert not view.get("is_error") and "Experiment 2: lower SMOOTHING" in view["content"]
    assert "-SMOOTHING = 1.0  # added to every bigram count" in view["content"]
    assert "+SMOOTHING = 0.5" in view["content"]
    assert "## Training curve" in view["content"] and "## Output tail" in view["content"]
    found = [line.split(" | ")[0] for line in search["content"].splitlines()[1:]]
    assert "2" in found  # exp 3 is still training: only finished runs are searched
    streamed = "".join(e["text"] for e in log if e["type"] == "agent_delta")
    assert f"[journal] {NOTE}" in streamed and "[view experiment 2]" in streamed


def test_the_journal_and_the_diagnostics_survive_a_resume(make_workspace):
    """A resumed engine folds its log again: the next proposal still gets every note, every
    run's diff and curve, and the best run's curve."""
    ws = make_workspace("resume")
    folder = ws.runs_dir() / "s-res"
    folder.mkdir(parents=True)
    result = {"steps": 10, "budget_seconds": 1.0, "curve": [[0.5, 5, 3.0], [1.0, 10, 2.5]]}
    log = [{"t": 1.0, "type": "session_start", "session": "s-res", "tag": "res",
            "branch": "ratchet/res", "base_commit": "c0", "config": {}, "hardware": {},
            "agent": "claude", "resumed": False, "pid": 1},
           {"t": 2.0, "type": "exp_end", "exp": 1, "kind": "baseline", "status": "ok",
            "decision": "baseline", "val_bpb": 3.0, "result": result},
           {"t": 3.0, "type": "proposal", "exp": 2, "description": "lower SMOOTHING",
            "diff": "-SMOOTHING = 1.0\n+SMOOTHING = 0.5\n"},
           {"t": 3.5, "type": "journal", "exp": 2, "text": NOTE},
           {"t": 4.0, "type": "exp_end", "exp": 2, "kind": "candidate", "status": "ok",
            "decision": "discard", "val_bpb": 3.1, "delta": 0.1, "margin": 0.01,
            "description": "lower SMOOTHING", "result": result}]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    session = Session(ws, ws.config(), RunOptions(session="s-res", tag="res", resume=True),
                      agent=None)
    context = session.context_for(files={"train.py": "x = 1\n"}, based_on="c0")
    assert [(n.exp, n.text) for n in context.journal] == [(2, NOTE)]
    (entry,) = context.history
    assert entry.diff.endswith("+SMOOTHING = 0.5\n") and entry.result["curve"] == result["curve"]
    assert context.best_result["curve"] == result["curve"]
    message = user_message(context)
    assert f"[exp 2] {NOTE}" in message and "lower SMOOTHING [SMOOTHING 1.0->0.5]" in message
