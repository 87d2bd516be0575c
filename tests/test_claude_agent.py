"""The Claude agent, real `anthropic` client and all, against a scripted Messages API."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import git
import pytest
import trainers
from fake_messages_api import FakeMessagesAPI, cut, error, error_midway, stream

from ratchet.cli import headless
from ratchet.engine.agents.base import AgentError, AgentPaused, Context, HistoryEntry
from ratchet.engine.agents.claude.agent import ALL_TOOLS, INTERRUPTED, ClaudeAgent
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events, paths
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import results_tsv

FAKE_KEY = "sk-ant-fake-4f9c2e7d1b"
OLD = "SMOOTHING = 1.0  # added to every bigram count"


def replace(new_value: str, path: str = "train.py") -> tuple:
    return ("tool_use", "str_replace", {"path": path, "old_str": OLD,
                                        "new_str": f"SMOOTHING = {new_value}"})


def finish(description: str = "lower SMOOTHING") -> tuple:
    return ("tool_use", "finish", {"description": description})


@pytest.fixture
def api():
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
def session(make_workspace):
    """A real Session on a bigram workspace: its file check is the one the agent must pass."""
    ws = make_workspace("unit")
    (ws.root / "train.py").write_text(trainers.loop_bigram())
    config = ws.config()
    return Session(ws, config, RunOptions(session="s-unit", tag="unit"), agent=None)


def agent_config(**agent) -> configmod.Config:
    config = configmod.Config()
    settings = {"thinking_budget": 1024, "max_tokens": 4096, "max_retries": 3,
                "retry_base_seconds": 0.02, "retry_cap_seconds": 1.0, "check_retries": 2,
                **agent}
    for key, value in settings.items():
        setattr(config.agent.claude, key, value)
    configmod.validate(config)
    return config


class Run:
    """One propose() call's context, with what the agent streamed and recorded."""

    def __init__(self, session: Session, api: FakeMessagesAPI, config=None, **context):
        self.streamed: list[str] = []
        self.recorded: list[dict] = []
        source = trainers.loop_bigram()
        self.context = Context(
            files={"train.py": source}, program="Make val_bpb lower.",
            history=[HistoryEntry(2, "raise SMOOTHING to 2", "ok", "discard", 3.1, 0.2)],
            best_bpb=2.9, margin=0.001,
            check=lambda files: session.check_files(files, {"train.py": source}),
            record=lambda kind, **fields: self.recorded.append({"type": kind, **fields}),
            **context)
        self.agent = ClaudeAgent(config or agent_config(), api_key=FAKE_KEY, base_url=api.url)

    def propose(self):
        return self.agent.propose(self.context, self.streamed.append)

    @property
    def text(self) -> str:
        return "".join(self.streamed)

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.recorded if e["type"] == kind]


def tool_results(request: dict) -> list[dict]:
    return [b for b in request["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]


def expected_usage(sent: list[dict]) -> dict:
    return {"input_tokens": sum(u["input_tokens"] for u in sent),
            "output_tokens": sum(u["output_tokens"] for u in sent),
            "cache_read_tokens": sum(u["cache_read_input_tokens"] for u in sent),
            "cache_write_tokens": sum(u["cache_creation_input_tokens"] for u in sent)}


def expected_cost(tokens: dict, prices: configmod.ClaudeConfig) -> float:
    return (tokens["input_tokens"] * prices.price_input
            + tokens["output_tokens"] * prices.price_output
            + tokens["cache_read_tokens"] * prices.price_cache_read
            + tokens["cache_write_tokens"] * prices.price_cache_write) / 1e6


# --- a proposal, streamed and applied ---------------------------------------------------------


def test_streamed_thinking_text_and_tool_edits_make_a_proposal(session, api):
    api.add(stream(("thinking", "Smoothing of 1.0 is heavy for 150k bytes; try less.", "sig-A1"),
                   ("text", "I will lower SMOOTHING."), replace("0.5")),
            stream(("text", "Done."), finish("lower SMOOTHING from 1.0 to 0.5"),
                   input_tokens=80, cache_read_input_tokens=2100, cache_creation_input_tokens=90,
                   output_tokens=40))
    run = Run(session, api, steer=["keep it small"], in_flight=["double SMOOTHING"],
              last_crash_tail="RuntimeError: boom")
    proposal = run.propose()

    assert proposal.description == "lower SMOOTHING from 1.0 to 0.5"
    assert set(proposal.files) == {"train.py"}
    assert "SMOOTHING = 0.5\n" in proposal.files["train.py"] and OLD not in proposal.files[
        "train.py"]
    assert "I will lower SMOOTHING." in proposal.rationale
    # reasoning reached the stream as it came, thinking marked, the tool call in one line
    assert "[thinking] Smoothing of 1.0 is heavy for 150k bytes; try less." in run.text
    assert "[edit train.py: str_replace]" in run.text
    assert "[finish: lower SMOOTHING from 1.0 to 0.5]" in run.text
    assert len(run.streamed) > 6  # many deltas, not one block at the end

    first, second = (r["body"] for r in api.requests)
    assert first["stream"] is True and first["model"] == "claude-sonnet-4-6"
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert [t["name"] for t in first["tools"]] == [t["name"] for t in ALL_TOOLS]
    prompt = first["messages"][0]["content"][0]["text"]
    for part in ("raise SMOOTHING to 2", "keep it small", "double SMOOTHING",
                 "RuntimeError: boom", OLD, "2.900000"):
        assert part in prompt
    # the stable prefix is marked for caching, and is the same in the second request
    assert second["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert second["system"] == first["system"] and second["tools"] == first["tools"]
    assert "Make val_bpb lower." in second["system"][-1]["text"]
    assert second["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    # the assistant turn goes back with its thinking block and signature intact
    assistant = second["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {
        "type": "thinking", "signature": "sig-A1",
        "thinking": "Smoothing of 1.0 is heavy for 150k bytes; try less."}
    assert [b["type"] for b in assistant["content"]] == ["thinking", "text", "tool_use"]
    (result,) = tool_results(api.requests[1])
    assert result["tool_use_id"] == assistant["content"][2]["id"]
    assert not result.get("is_error")

    (usage,) = run.of_type("agent_usage")
    tokens = expected_usage(api.sent_usage)
    assert {k: usage[k] for k in tokens} == tokens
    assert usage["cost_usd"] == pytest.approx(expected_cost(tokens, configmod.ClaudeConfig()))
    assert usage["total_cost_usd"] == pytest.approx(usage["cost_usd"])
    assert usage["model"] == "claude-sonnet-4-6" and usage["requests"] == 2
    assert not run.of_type("agent_retry")


# --- retries ----------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_the_wait_the_server_asked_for(session, api):
    api.add(error(429, "rate_limit_error", "slow down", retry_after="0.3"),
            stream(replace("0.5"), finish()))
    run = Run(session, api, config=agent_config(thinking_budget=0))
    started = time.monotonic()
    proposal = run.propose()
    assert time.monotonic() - started >= 0.3
    assert all("thinking" not in r["body"] for r in api.requests)  # 0 turns thinking off
    assert "SMOOTHING = 0.5" in proposal.files["train.py"]
    (retry,) = run.of_type("agent_retry")
    assert retry["attempt"] == 1 and retry["error"] == "429 rate_limit_error"
    assert retry["wait_seconds"] == 0.3 and retry["discarded_partial"] is False
    assert len(api.requests) == 2


def test_overloaded_and_server_errors_back_off_exponentially(session, api):
    api.add(error(529, "overloaded_error", "Overloaded"), error(500, "api_error", "oops"),
            stream(replace("0.5"), finish()))
    run = Run(session, api)
    run.propose()
    first, second = run.of_type("agent_retry")
    assert first["error"] == "529 overloaded_error" and second["error"] == "500 api_error"
    assert 0.01 <= first["wait_seconds"] <= 0.02  # base 0.02 with jitter
    assert 0.02 <= second["wait_seconds"] <= 0.04  # doubled
    assert "[529 overloaded_error: retrying in" in run.text


def test_retries_are_bounded(session, api):
    api.add(*[error(529, "overloaded_error", "Overloaded")] * 2)
    run = Run(session, api, config=agent_config(max_retries=1))
    with pytest.raises(AgentError, match="gave up after 2 attempts") as caught:
        run.propose()
    assert not isinstance(caught.value, AgentPaused)
    assert len(run.of_type("agent_retry")) == 1 and len(api.requests) == 2


def test_a_stream_cut_midway_is_discarded_and_retried(session, api):
    # the cut response had already streamed text and most of a tool call editing to 9.0
    api.add(cut(("text", "Going to set SMOOTHING to 9.0 right now."), replace("9.0"), after=9),
            stream(replace("0.5"), finish()))
    run = Run(session, api)
    proposal = run.propose()
    assert "SMOOTHING = 0.5" in proposal.files["train.py"]
    assert "9.0" not in proposal.files["train.py"]
    assert INTERRUPTED in run.text
    assert run.text.index("Going to set") < run.text.index(INTERRUPTED)
    (retry,) = run.of_type("agent_retry")
    assert retry["discarded_partial"] is True and retry["discarded_chars"] > 0
    # nothing of the cut response is sent back to the model
    assert len(api.requests[1]["body"]["messages"]) == 1
    # the cut response's usage (sent in message_start) is counted too
    (usage,) = run.of_type("agent_usage")
    assert len(api.sent_usage) == 2 and usage["requests"] == 2
    assert usage["input_tokens"] == expected_usage(api.sent_usage)["input_tokens"]


def test_an_overloaded_error_event_midway_is_retried(session, api):
    api.add(error_midway(("thinking", "Half a thought that never", "sig-X"), after=4),
            stream(replace("0.5"), finish()))
    run = Run(session, api)
    proposal = run.propose()
    assert "SMOOTHING = 0.5" in proposal.files["train.py"]
    (retry,) = run.of_type("agent_retry")
    assert "overloaded_error" in retry["error"] and retry["discarded_partial"] is True
    assert INTERRUPTED in run.text


# --- errors that need the person --------------------------------------------------------------


def test_invalid_key_pauses_with_one_line_and_no_key(session, api):
    api.add(error(401, "authentication_error", f"invalid x-api-key {FAKE_KEY}"))
    run = Run(session, api)
    with pytest.raises(AgentPaused) as caught:
        run.propose()
    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message and "\n" not in message and FAKE_KEY not in message
    assert len(api.requests) == 1 and not run.recorded


def test_exhausted_credit_pauses(session, api):
    api.add(error(400, "invalid_request_error", "Your credit balance is too low to access the "
                                                "Anthropic API."))
    run = Run(session, api)
    with pytest.raises(AgentPaused, match="credit balance is too low"):
        run.propose()


# --- edits the engine refuses -----------------------------------------------------------------


def test_an_edit_to_a_forbidden_file_is_refused_back_to_the_model(session, api):
    api.add(stream(("tool_use", "write_file", {"path": "prepare.py", "content": "x = 1\n"})),
            stream(replace("0.5"), finish()))
    run = Run(session, api)
    proposal = run.propose()
    assert set(proposal.files) == {"train.py"}
    (result,) = tool_results(api.requests[1])
    assert result["is_error"] is True
    assert "prepare.py may not be edited" in result["content"] and "train.py" in result["content"]
    assert "[refused: prepare.py may not be edited" in run.text


def test_an_edit_that_does_not_compile_goes_back_to_the_model(session, api):
    api.add(stream(replace("0.5 +"), finish("broken")),
            stream(("tool_use", "str_replace", {"path": "train.py", "old_str": "SMOOTHING = 0.5 +",
                                                "new_str": "SMOOTHING = 0.5"}), finish()))
    run = Run(session, api)
    proposal = run.propose()
    compile(proposal.files["train.py"], "train.py", "exec")
    assert "SMOOTHING = 0.5\n" in proposal.files["train.py"]
    edit, refused = tool_results(api.requests[1])
    assert not edit.get("is_error")
    assert refused["is_error"] is True and "does not compile" in refused["content"]


def test_refusals_and_tool_rounds_are_bounded_and_usage_is_still_recorded(session, api):
    api.add(stream(replace("0.5 +"), finish()), stream(finish()))
    run = Run(session, api, config=agent_config(check_retries=1))
    with pytest.raises(AgentError, match="refused 2 times; last: train.py does not compile"):
        run.propose()
    (usage,) = run.of_type("agent_usage")  # the failed proposal's tokens were paid for
    assert usage["requests"] == 2 and usage["cost_usd"] > 0

    api.add(*[stream(("tool_use", "view_file", {"path": "train.py"}))] * 2)
    config = agent_config()
    config.loop.max_tool_rounds = 2
    run = Run(session, api, config=config)
    with pytest.raises(AgentError, match="within 2 tool rounds"):
        run.propose()
    assert OLD in tool_results(api.requests[-1])[0]["content"]


# --- cost across restarts ---------------------------------------------------------------------


def test_cost_is_the_sum_of_proposals_across_engine_restarts():
    log = [{"type": "agent_usage", "exp": 2, "cost_usd": 0.25, "total_cost_usd": 0.25,
            "input_tokens": 1000, "output_tokens": 10, "cache_read_tokens": 0,
            "cache_write_tokens": 900},
           {"type": "session_start", "session": "s"},  # a resumed engine starts from zero
           {"type": "agent_usage", "exp": 3, "cost_usd": 0.5, "total_cost_usd": 0.5,
            "input_tokens": 20, "output_tokens": 30, "cache_read_tokens": 900,
            "cache_write_tokens": 0}]
    state = statemod.fold(log)
    assert state.cost_usd == pytest.approx(0.75)
    assert state.tokens == {"input_tokens": 1020, "output_tokens": 40, "cache_read_tokens": 900,
                            "cache_write_tokens": 900}
    assert headless.cost_line(state) == ("cost      $0.7500  tokens in 1020  out 40  cache read "
                                         "900  write 900")


# --- the whole loop ---------------------------------------------------------------------------


def ratchet(*args: str, cwd, env, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(path, predicate, timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    log: list[dict] = []
    while time.monotonic() < deadline:
        log = list(events.iter_events(path)) if path.exists() else []
        if predicate(log):
            return log
        time.sleep(0.2)
    raise AssertionError(f"timed out; last events: {[e['type'] for e in log[-10:]]}")


def test_headless_run_with_claude_commits_trains_records_and_pauses(make_workspace, api):
    ws = make_workspace("e2e", budget_seconds=61.0, eval_tokens=65536)
    config = ws.config()
    config.loop.baseline_seeds, config.loop.confirm = 1, False
    config.loop.rule = "margin"  # one run decides: the agent, not the rule, is under test
    config.agent.claude.retry_base_seconds, config.agent.claude.thinking_budget = 0.05, 1024
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text(trainers.loop_bigram())
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("bigram trainer")
    api.add(stream(("thinking", "Less smoothing should fit better.", "sig-E2E"),
                   ("text", "Lowering SMOOTHING."), replace("0.25")),
            error(529, "overloaded_error", "Overloaded"),
            stream(finish("lower SMOOTHING from 1.0 to 0.25")),
            error(401, "authentication_error", "invalid x-api-key"))
    env = {**os.environ, "ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": api.url}
    run = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                            "--agent", "claude", "--max-experiments", "3", "--tag", "claude"],
                           cwd=ws.root, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        folder = None
        deadline = time.monotonic() + 60
        while folder is None and time.monotonic() < deadline:
            found = paths.sessions(ws.runs_dir())
            folder = found[-1] if found else None
            time.sleep(0.2)
        assert folder is not None, "no session started"
        # the next proposal is asked for while the first one trains (pipelining): the 401 may
        # pause the session before that experiment ends, which it still does
        log = wait_for(folder / "events.jsonl", lambda log: any(
            e["type"] == "proposal_failed" and e.get("paused") for e in log) and any(
            e["type"] == "exp_end" and e["kind"] == "candidate" for e in log))
        status = ratchet("status", cwd=ws.root, env=env)
        assert status.returncode == 0, status.stderr
        stopped = ratchet("stop", cwd=ws.root, env=env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()

    proposal = next(e for e in log if e["type"] == "proposal")
    assert proposal["description"] == "lower SMOOTHING from 1.0 to 0.25"
    assert "+SMOOTHING = 0.25" in proposal["diff"]
    end = next(e for e in log if e["type"] == "exp_end" and e["exp"] == proposal["exp"])
    assert end["kind"] == "candidate" and end["status"] == "ok" and end["val_bpb"] is not None
    committed = repo.commit(end["commit"]).tree["train.py"].data_stream.read().decode()
    assert "SMOOTHING = 0.25\n" in committed
    rows = results_tsv.read(ws.root / "results.tsv")
    assert rows[-1]["description"].startswith("lower SMOOTHING from 1.0 to 0.25")
    streamed = "".join(e["text"] for e in log if e["type"] == "agent_delta")
    assert "[thinking] Less smoothing should fit better." in streamed
    assert "[edit train.py: str_replace]" in streamed

    (retry,) = [e for e in log if e["type"] == "agent_retry"]
    assert retry["exp"] == proposal["exp"] and retry["error"] == "529 overloaded_error"
    (usage,) = [e for e in log if e["type"] == "agent_usage"]
    tokens = expected_usage(api.sent_usage)
    assert usage["exp"] == proposal["exp"]
    assert {k: usage[k] for k in tokens} == tokens
    assert usage["cost_usd"] == pytest.approx(expected_cost(tokens, config.agent.claude))
    paused = next(e for e in log if e["type"] == "proposal_failed")
    assert paused["paused"] is True and "ANTHROPIC_API_KEY was refused" in paused["error"]
    assert f"${usage['cost_usd']:.4f}" in status.stdout, status.stdout
    assert "cache read" in status.stdout
    assert "paused    by the agent: ANTHROPIC_API_KEY was refused" in status.stdout
    assert "proposal_failed: ANTHROPIC_API_KEY was refused" in out
    assert "agent_retry: 529 overloaded_error" in out

    # the second request reused the cached prefix
    first, second = api.requests[0]["body"], api.requests[2]["body"]
    assert second["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert second["system"] == first["system"]
    assert second["messages"][1]["content"][0]["signature"] == "sig-E2E"

    for name in ("events.jsonl", "engine.log"):
        assert FAKE_KEY not in (folder / name).read_text()
    assert FAKE_KEY not in (ws.root / "results.tsv").read_text()
    assert FAKE_KEY not in out
