"""Claude Code as the agent: the real `claude` CLI (from npm) against the scripted Messages API,
driven by `ratchet run --agent claude-code`, and what pauses the session: no CLI, no login, a
CLI that hangs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import claude_code_cli
import git
import pytest
import trainers
from fake_messages_api import FakeMessagesAPI, stream
from test_claude_agent import FAKE_KEY, OLD, wait_for

from ratchet.engine.agents.base import AgentPaused, Context
from ratchet.engine.agents.claude_code import stream as cli_stream
from ratchet.engine.agents.claude_code.agent import ClaudeCodeAgent, _description
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import paths
from ratchet.engine.workspace import config as configmod
from ratchet.tui import view_state as dashboard

NOTE = "Hypothesis: less smoothing fits a small corpus better."


@pytest.fixture(scope="module")
def claude_cli():
    return claude_code_cli.installed()


def folder_of(body: dict) -> str:
    """The scratch folder Claude Code works in, as its system prompt names it."""
    text = " ".join(b.get("text", "") for b in body.get("system", []))
    return re.search(r"Primary working directory: (\S+)", text).group(1)


def tool(name: str, **args) -> tuple:
    return ("tool_use", name, args)


def proposal_replies(old: str, new: str, description: str, note: str = "") -> list:
    """Read train.py (and journal.md), edit it (and append to the journal), then finish."""
    def read(body):
        where = folder_of(body)
        calls = [tool("Read", file_path=f"{where}/train.py")]
        if note:
            calls.append(tool("Read", file_path=f"{where}/journal.md"))
        return stream(("thinking", f"Try {new}.", "sig-cc"),
                      ("text", "Reading the trainer first."), *calls)

    def edit(body):
        where = folder_of(body)
        calls = [tool("Edit", file_path=f"{where}/train.py", old_string=old, new_string=new)]
        if note:
            calls.append(tool("Write", file_path=f"{where}/journal.md", content=note + "\n"))
        return stream(*calls)

    return [read, edit, stream(("text", f"Done.\nDESCRIPTION: {description}"),
                               stop_reason="end_turn", input_tokens=500, output_tokens=60)]


def test_ratchet_run_with_claude_code_makes_two_proposals_end_to_end(make_workspace, claude_cli,
                                                                     tmp_path):
    ws = make_workspace("cc", budget_seconds=61.0, eval_tokens=65536)
    config = ws.config()
    config.loop.baseline_seeds, config.loop.confirm = 1, False
    config.loop.rule = "margin"  # one run decides: the agent, not the rule, is under test
    config.agent.claude_code.command = str(claude_cli)
    config.agent.claude_code.timeout_seconds = 120.0
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text(trainers.loop_bigram())
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("bigram trainer")
    home = tmp_path / "home"  # the CLI's own settings and caches, away from the user's
    home.mkdir()
    # the second edit is to another line, so it merges onto the first one if that is kept
    replies = (proposal_replies(OLD, "SMOOTHING = 0.5", "lower SMOOTHING from 1.0 to 0.5",
                                note=NOTE)
               + proposal_replies("UNUSED_WIDTH = 64", "UNUSED_WIDTH = 128",
                                  "raise UNUSED_WIDTH from 64 to 128"))
    with FakeMessagesAPI(replies) as api:
        env = {**os.environ, "HOME": str(home), "ANTHROPIC_API_KEY": FAKE_KEY,
               "ANTHROPIC_BASE_URL": api.url}
        done = subprocess.run([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                               "--agent", "claude-code", "--max-experiments", "2", "--tag", "cc"],
                              cwd=ws.root, env=env, capture_output=True, text=True, timeout=280)
        assert done.returncode == 0, done.stdout + done.stderr
        (folder,) = paths.sessions(ws.runs_dir())
        log = wait_for(folder / "events.jsonl", lambda log: any(
            e["type"] == "session_end" for e in log))
        requests = list(api.requests)

    assert len(requests) == 6  # three per proposal, all of them to the local server
    for request in requests:
        assert sorted(t["name"] for t in request["body"]["tools"]) == [
            "Edit", "Glob", "Grep", "Read", "Write"]  # no shell, no web
        assert request["headers"]["x-api-key"] == FAKE_KEY
    first_prompt = " ".join(b["text"] for b in requests[0]["body"]["messages"][0]["content"])
    assert "## Results so far" in first_prompt and "DESCRIPTION" in first_prompt
    assert "Ratchet, an autonomous ML research loop" in json_text(requests[0]["body"]["system"])

    proposals = [e for e in log if e["type"] == "proposal"]
    assert [p["description"] for p in proposals] == ["lower SMOOTHING from 1.0 to 0.5",
                                                     "raise UNUSED_WIDTH from 64 to 128"]
    assert "+SMOOTHING = 0.5" in proposals[0]["diff"]
    assert "+UNUSED_WIDTH = 128" in proposals[1]["diff"]
    ends = {e["exp"]: e for e in log if e["type"] == "exp_end" and e["kind"] == "candidate"}
    (end_of_session,) = [e for e in log if e["type"] == "session_end"]
    tip = repo.commit("ratchet/cc")
    assert tip.hexsha == end_of_session["best_commit"]
    for proposal, line in zip(proposals, ("SMOOTHING = 0.5\n", "UNUSED_WIDTH = 128"),
                              strict=True):
        # trained and judged by the engine, then kept on the branch or reverted
        end = ends[proposal["exp"]]
        assert end["status"] == "ok" and end["decision"] in ("keep", "discard", "near_miss")
        committed = repo.commit(end["commit"]).tree["train.py"].data_stream.read().decode()
        assert line in committed
        on_branch = repo.is_ancestor(end["commit"], tip)
        assert on_branch == (end["decision"] == "keep")
    # the reasoning and the tool calls streamed into the agent pane's events
    streamed = "".join(e["text"] for e in log if e["type"] == "agent_delta")
    pane = "".join(dashboard.fold(log).agent_chunks)  # what the agent pane shows
    for proposal in proposals:
        assert f"── experiment {proposal['exp']} ──\n" in pane
        assert "".join(e["text"] for e in log if e["type"] == "agent_delta"
                       and e["exp"] == proposal["exp"]) in pane
    assert "[thinking] Try SMOOTHING = 0.5." in streamed
    assert "Reading the trainer first." in streamed
    assert "[edit train.py: Edit]" in streamed and "[view train.py]" in streamed
    (note,) = [e for e in log if e["type"] == "journal"]
    assert note["text"] == NOTE and note["exp"] == proposals[0]["exp"]
    usage = [e for e in log if e["type"] == "agent_usage"]
    assert [u["exp"] for u in usage] == [p["exp"] for p in proposals]
    assert all(u["cost_usd"] > 0 and u["output_tokens"] > 0 for u in usage)


def json_text(blocks: list[dict]) -> str:
    return " ".join(b.get("text", "") for b in blocks)


# --- what pauses the session ---------------------------------------------------------------


def context_for(tmp_path) -> Context:
    source = trainers.loop_bigram()
    return Context(files={"train.py": source}, program="Make val_bpb lower.", history=[],
                   best_bpb=2.9, margin=0.001)


def agent_with(command: str, timeout: float = 60.0) -> ClaudeCodeAgent:
    config = configmod.Config()
    config.agent.claude_code.command = command
    config.agent.claude_code.timeout_seconds = timeout
    return ClaudeCodeAgent(config)


def test_a_missing_cli_pauses_with_one_line(tmp_path):
    agent = agent_with(str(tmp_path / "no-such-claude"))
    with pytest.raises(AgentPaused) as caught:
        agent.propose(context_for(tmp_path), lambda _text: None)
    message = str(caught.value)
    assert "cannot be run" in message and "npm install -g @anthropic-ai/claude-code" in message
    assert "\n" not in message


def test_a_cli_that_hangs_is_stopped_at_its_deadline_and_pauses(tmp_path):
    hanging = tmp_path / "claude"
    hanging.write_text("#!/bin/sh\necho '{\"type\": \"system\", \"subtype\": \"init\"}'\n"
                       "sleep 60 &\nsleep 60\n")
    hanging.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(AgentPaused, match=r"did not finish within 1 s and was stopped"):
        agent_with(str(hanging), timeout=1.0).propose(context_for(tmp_path), lambda _t: None)
    assert time.monotonic() - started < 15


def test_a_failed_login_pauses_with_one_line(claude_cli, tmp_path, monkeypatch):
    home = tmp_path / "home"  # no credentials there, and no key in the environment
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with FakeMessagesAPI() as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        streamed: list[str] = []
        with pytest.raises(AgentPaused) as caught:
            agent_with(str(claude_cli)).propose(context_for(tmp_path), streamed.append)
    message = str(caught.value)
    assert message.startswith("Claude Code could not log in: Not logged in")
    assert "\n" not in message and "run `claude` once to log in" in message


def test_the_stream_shows_refused_tool_calls_and_reads_the_cost():
    outcome = cli_stream.Outcome()
    refused = ('{"type": "user", "message": {"content": [{"type": "tool_result", "is_error": '
               'true, "content": "<tool_use_error>File has not been read yet.</tool_use_error>"'
               '}]}}')
    assert cli_stream.read_line(refused, outcome) == (
        "[refused: <tool_use_error>File has not been read yet.</tool_use_error>]\n")
    assert cli_stream.read_line("not json", outcome) == ""
    cli_stream.read_line('{"type": "result", "subtype": "success", "is_error": false, '
                         '"result": "ok", "num_turns": 3, "total_cost_usd": 0.25, "usage": '
                         '{"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2,'
                         ' "cache_creation_input_tokens": 1}}', outcome)
    assert outcome.finished and not outcome.is_error and outcome.cost_usd == 0.25
    assert outcome.tokens == {"input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 2,
                              "cache_write_tokens": 1}
    assert _description("Edited.\n**DESCRIPTION:** raise LR to 0.02\n") == "raise LR to 0.02"
    assert _description("I lowered WARMUP to 0.01.") == "I lowered WARMUP to 0.01."


def test_a_refused_edit_goes_back_to_claude_code_in_a_new_run(claude_cli, make_workspace,
                                                              tmp_path, monkeypatch):
    """The engine's own check refuses an edit that does not compile; the next run is told why,
    finds its edit still in the folder, and fixes it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    source = trainers.loop_bigram()
    ws = make_workspace("refused")
    session = Session(ws, ws.config(), RunOptions(session="s-refused", tag="refused"), agent=None)
    replies = (proposal_replies(OLD, "SMOOTHING = 0.5 +", "lower SMOOTHING")
               + proposal_replies("SMOOTHING = 0.5 +", "SMOOTHING = 0.5", "lower SMOOTHING to 0.5"))
    with FakeMessagesAPI(replies) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        context = Context(files={"train.py": source}, program="", history=[], best_bpb=2.9,
                          margin=0.001, check=lambda files: session.check_files(
                              files, {"train.py": source}))
        streamed: list[str] = []
        proposal = agent_with(str(claude_cli)).propose(context, streamed.append)
        second_prompt = " ".join(b["text"] for b in api.requests[3]["body"]["messages"][0][
            "content"])
    assert proposal.description == "lower SMOOTHING to 0.5"
    assert "SMOOTHING = 0.5\n" in proposal.files["train.py"]
    assert "[refused: train.py does not compile" in "".join(streamed)
    assert "Ratchet refused your last edit: train.py does not compile" in second_prompt


def test_claude_code_reads_and_writes_only_inside_its_folder(claude_cli, tmp_path, monkeypatch):
    """Its file tools reach the scratch folder only: a read of the validation text elsewhere and
    a write beside it are refused, and nothing of the file reaches the API."""
    home = tmp_path / "home"
    home.mkdir()
    secret = tmp_path / "val.txt"
    secret.write_text("VALIDATION-TEXT-4471\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    replies = [stream(tool("Read", file_path=str(secret)),
                      tool("Grep", pattern="VALIDATION", path=str(tmp_path)),
                      tool("Write", file_path=str(tmp_path / "planted.py"), content="x = 1\n")),
               *proposal_replies(OLD, "SMOOTHING = 0.5", "lower SMOOTHING")]
    with FakeMessagesAPI(replies) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        proposal = agent_with(str(claude_cli)).propose(context_for(tmp_path), lambda _t: None)
        bodies = [json.dumps(r["body"]) for r in api.requests]
    results = [b for b in api.requests[1]["body"]["messages"][-1]["content"]
               if b["type"] == "tool_result"]
    assert len(results) == 3 and all(r.get("is_error") for r in results)
    assert not any("VALIDATION-TEXT-4471" in body for body in bodies)
    assert not (tmp_path / "planted.py").exists()
    assert proposal.description == "lower SMOOTHING"


def test_a_session_whose_cli_is_missing_pauses_and_stops_cleanly(make_workspace, tmp_path):
    """In a real session: one line in the log and in `ratchet status`, the engine alive and
    paused until `ratchet stop`."""
    from test_claude_agent import ratchet

    ws = make_workspace("cc-missing", budget_seconds=1.0)
    config = ws.config()
    config.loop.baseline_seeds = 1
    config.agent.claude_code.command = str(tmp_path / "nowhere" / "claude")
    configmod.save(ws.root, config)
    repo = git.Repo(ws.root)
    repo.index.add(["ratchet.toml"])
    repo.index.commit("claude-code with a missing CLI")
    env = dict(os.environ)
    run = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                            "--agent", "claude-code", "--tag", "missing"], cwd=ws.root, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not paths.sessions(ws.runs_dir()) and time.monotonic() < deadline:
            assert run.poll() is None, run.stdout.read()
            time.sleep(0.2)
        (folder,) = paths.sessions(ws.runs_dir())
        # the engine pauses once the baseline in flight has finished
        log = wait_for(folder / "events.jsonl", lambda log: any(
            e["type"] == "proposal_failed" for e in log) and any(
            e["type"] == "paused" for e in log))
        status = ratchet("status", cwd=ws.root, env=env)
        assert ratchet("stop", cwd=ws.root, env=env).returncode == 0
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    (failed,) = [e for e in log if e["type"] == "proposal_failed"]
    assert failed["paused"] is True and "\n" not in failed["error"]
    assert "cannot be run: install it (npm install -g @anthropic-ai/claude-code)" in failed["error"]
    assert "paused    by the agent: Claude Code's CLI" in status.stdout, status.stdout
    assert run.returncode == 0 and "session ended (stopped)" in out, out
