"""The Claude agent: one conversation per proposal, streamed, editing through tools.

Claude reads the program, the current files and the results so far, edits an in-memory copy of
the editable files with tools, and calls `finish`; the engine's own check runs on the edits
before they are handed over, and a refusal goes back to Claude as a tool result. Requests are
retried here (the SDK's retries are off) so that every retry is recorded in the session's log.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

import anthropic

from ratchet.engine.agents.base import Agent, AgentError, AgentPaused, Context, Emit, Proposal
from ratchet.engine.agents.claude import research
from ratchet.engine.agents.claude.cost import Usage
from ratchet.engine.agents.claude.prompt import CACHE, system_blocks, user_message
from ratchet.engine.agents.claude.retry import (
    FAIL,
    PAUSE,
    TRANSPORT_ERRORS,
    Backoff,
    StreamCut,
    classify,
)
from ratchet.engine.agents.claude.tools import TOOLS, EditBuffer, description_problem, summary
from ratchet.engine.protocol import schema
from ratchet.engine.workspace.config import Config

RATIONALE_CHARS = 2000
ALL_TOOLS = [*TOOLS, *research.TOOLS]  # editing, then reading the past and the journal
INTERRUPTED = "\n[stream interrupted; partial response discarded; retrying]\n"


class ClaudeAgent(Agent):
    name = "claude"

    def __init__(self, config: Config, api_key: str | None = None, base_url: str | None = None,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = config.agent.claude
        self.editable = list(config.experiment.editable)
        self.max_rounds = config.loop.max_tool_rounds
        self.api_key = api_key or os.environ.get("ANTHROPIC_API_KEY", "")
        if not self.api_key:
            raise AgentError("the Claude agent needs ANTHROPIC_API_KEY")
        # base_url None lets the SDK read ANTHROPIC_BASE_URL, so any Messages API endpoint works
        self.client = anthropic.Anthropic(api_key=self.api_key, base_url=base_url, max_retries=0,
                                          timeout=self.settings.timeout_seconds)
        self.backoff = Backoff(self.settings.retry_base_seconds, self.settings.retry_cap_seconds,
                               rng or random.Random())
        self.sleep = sleep
        self.total_cost_usd = 0.0  # spent by this engine process
        self._total_lock = threading.Lock()

    # --- one proposal ----------------------------------------------------------------------

    def propose(self, context: Context, emit: Emit) -> Proposal:
        usage = Usage()
        try:
            return self._converse(context, emit, usage)
        finally:
            if usage.requests:  # money was spent even when the proposal failed
                cost = usage.cost_usd(self.settings)
                with self._total_lock:
                    self.total_cost_usd += cost
                context.record(schema.AGENT_USAGE, model=self.settings.model, **usage.fields(),
                               cost_usd=round(cost, 8),
                               total_cost_usd=round(self.total_cost_usd, 8))

    def _converse(self, context: Context, emit: Emit, usage: Usage) -> Proposal:
        buffer = EditBuffer(context.files, self.editable)
        system = system_blocks(context.program)
        messages: list[dict] = [{"role": "user", "content": [
            {"type": "text", "text": user_message(context)}]}]
        rationale: list[str] = []
        refusals = 0
        for _ in range(self.max_rounds):
            message = self._request(system, messages, emit, context.record, usage)
            sent_back = [p for p in map(_as_param, message.content) if p]
            messages.append({"role": "assistant", "content": sent_back or [
                {"type": "text", "text": "(no answer)"}]})  # the API refuses empty turns
            rationale += [b.text for b in message.content if b.type == "text" and b.text.strip()]
            calls = [b for b in message.content if b.type == "tool_use"]
            if not calls:
                note = ("Your answer reached max_tokens. Be brief: edit with the tools, then call "
                        "finish." if message.stop_reason == "max_tokens" else
                        "Edit the files with the tools, then call finish.")
                messages.append({"role": "user", "content": [{"type": "text", "text": note}]})
                continue
            results = []
            for call in calls:
                if call.name in research.NAMES:
                    emit(f"\n{research.summary(call.name, call.input)}\n")
                    result = research.apply(context, call.name, call.input)
                    results.append(_tool_result(call.id, result.text, result.is_error))
                    continue
                emit(f"\n{summary(call.name, call.input)}\n")
                if call.name != "finish":
                    result = buffer.apply(call.name, call.input)
                    if result.is_error:
                        emit(f"[refused: {result.text}]\n")
                    results.append(_tool_result(call.id, result.text, result.is_error))
                    continue
                problem = description_problem(call.input) or context.check(buffer.changed())
                if not problem:
                    return Proposal(description=call.input["description"].strip(),
                                    files=buffer.changed(),
                                    rationale="\n".join(rationale).strip()[-RATIONALE_CHARS:])
                refusals += 1
                emit(f"[refused: {problem}]\n")
                if refusals > self.settings.check_retries:
                    raise AgentError(f"Claude's edits were refused {refusals} times; last: "
                                     f"{problem}")
                results.append(_tool_result(call.id, f"Not accepted: {problem}. Fix it, then "
                                                     "call finish again.", True))
            messages.append({"role": "user", "content": results})
        raise AgentError(f"Claude did not finish within {self.max_rounds} tool rounds "
                         "([loop] max_tool_rounds)")

    # --- one request, retried --------------------------------------------------------------

    def _request(self, system: list[dict], messages: list[dict], emit: Emit,
                 record: Callable[..., object], usage: Usage):
        params: dict = {"model": self.settings.model, "max_tokens": self.settings.max_tokens,
                        "system": system, "tools": ALL_TOOLS, "messages": _mark_last(messages)}
        if self.settings.thinking_budget:
            params["thinking"] = {"type": "enabled",
                                  "budget_tokens": self.settings.thinking_budget}
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            streamed = [0]  # characters this attempt has sent to emit
            try:
                return self._stream_once(params, emit, usage, streamed)
            except (anthropic.AnthropicError, *TRANSPORT_ERRORS) as exc:
                verdict = classify(exc, self.api_key)
            discarded = streamed[0] > 0
            if verdict.action == PAUSE:
                raise AgentPaused(verdict.message)
            if verdict.action == FAIL:
                raise AgentError(verdict.message)
            if attempt + 1 >= attempts:
                raise AgentError(f"{verdict.message} (gave up after {attempts} attempts)")
            wait = self.backoff.wait(attempt, verdict.retry_after)
            emit(INTERRUPTED if discarded else
                 f"\n[{verdict.label}: retrying in {wait:g} s]\n")
            record(schema.AGENT_RETRY, attempt=attempt + 1, error=verdict.label,
                   message=verdict.message, wait_seconds=wait, discarded_partial=discarded,
                   discarded_chars=streamed[0])
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _stream_once(self, params: dict, emit: Emit, usage: Usage, streamed: list[int]):
        """Stream one response to `emit`; raise StreamCut if it ends before message_stop."""

        def out(text: str) -> None:
            if text:
                streamed[0] += len(text)
                emit(text)

        reported: dict[str, int] = {}
        finished = False
        try:
            with self.client.messages.stream(**params) as stream:
                for event in stream:
                    kind = event.type
                    if kind == "message_start":
                        reported = _usage_dict(event.message.usage)
                    elif kind == "message_delta":
                        reported.update({k: v for k, v in _usage_dict(event.usage).items()
                                         if v is not None})
                    elif kind == "content_block_start":
                        if event.content_block.type == "thinking":
                            out("\n[thinking] ")
                        elif event.content_block.type == "text":
                            out("\n")
                    elif kind == "thinking":
                        out(event.thinking)
                    elif kind == "text":
                        out(event.text)
                    elif kind == "message_stop":
                        finished = True
                if not finished:
                    raise StreamCut()
                return stream.get_final_message()
        finally:
            if reported:  # the usage the server reported, also for a response cut short
                usage.add(reported)


def _usage_dict(reported) -> dict[str, int]:
    names = ("input_tokens", "output_tokens", "cache_read_input_tokens",
             "cache_creation_input_tokens")
    return {name: getattr(reported, name, None) for name in names
            if getattr(reported, name, None) is not None}


def _as_param(block) -> dict | None:
    """A response block as it must be sent back: thinking keeps its signature intact."""
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if block.type == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    if block.type == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(exclude_none=True)


def _tool_result(tool_id: str, text: str, is_error: bool) -> dict:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": text,
            **({"is_error": True} if is_error else {})}


def _mark_last(messages: list[dict]) -> list[dict]:
    """A copy whose last block is a cache breakpoint, so each tool round reuses the one before."""
    last = messages[-1]
    content = list(last["content"])
    content[-1] = {**content[-1], "cache_control": dict(CACHE)}
    return [*messages[:-1], {**last, "content": content}]
