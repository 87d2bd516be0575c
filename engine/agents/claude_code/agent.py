"""Claude Code as Ratchet's agent: one run of the `claude` CLI per proposal, in a scratch folder.

The CLI edits a copy of the editable files with its own file tools; its JSON stream goes to the
agent pane as it arrives; then the edited files take the engine's check (a refusal is handed
back in a new run, up to check_retries) and, once accepted, the same commit and budget as any
proposal. What stops it from going on (no CLI, no login, a run past its deadline) pauses the
session with one line.
"""

from __future__ import annotations

import re
import threading

from ratchet.engine.agents.base import Agent, AgentError, AgentPaused, Context, Emit, Proposal
from ratchet.engine.agents.claude.prompt import user_message
from ratchet.engine.agents.claude_code import command, process, stream
from ratchet.engine.agents.claude_code.scratch import EXPERIMENTS, JOURNAL, Scratch
from ratchet.engine.protocol import schema
from ratchet.engine.workspace.config import Config
from ratchet.prompts import text as prompt_text

MAX_DESCRIPTION = 200
RATIONALE_CHARS = 2000
_DESCRIPTION = re.compile(r"^\s*\**DESCRIPTION:?\**\s*:?\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


class ClaudeCodeAgent(Agent):
    name = "claude-code"

    def __init__(self, config: Config):
        self.settings = config.agent.claude_code
        self.editable = list(config.experiment.editable)
        self.total_cost_usd = 0.0  # spent by this engine process
        self._total_lock = threading.Lock()

    def propose(self, context: Context, emit: Emit) -> Proposal:
        scratch = Scratch(context, self.editable)
        try:
            return self._propose(context, emit, scratch)
        finally:
            scratch.remove()

    def _propose(self, context: Context, emit: Emit, scratch: Scratch) -> Proposal:
        system = prompt_text("claude_code_system.md").strip() + "\n\n" + (
            context.program.strip() or "(the workspace has no program.md)")
        files = ", ".join(scratch.editable)
        prompt = user_message(
            context, with_files=False,
            lookup=f"{EXPERIMENTS}/exp-NNNN.txt holds any row's diff, curve and output in full.",
            earlier_lookup=f"{EXPERIMENTS}/SESSION/exp-NNNN.txt holds any of them in full, and "
                           f"{EXPERIMENTS}/SESSION/{JOURNAL} that session's notes.",
            ask=f"The editable files ({files}) are in the current folder, with {EXPERIMENTS}/ "
                f"and {JOURNAL}. Propose the next experiment: edit the files, then end with "
                "the DESCRIPTION line.")
        refusal = ""
        runs = self.settings.check_retries + 1
        for _ in range(runs):
            text = prompt if not refusal else (
                f"{prompt}\n\nRatchet refused your last edit: {refusal}. The files in this "
                "folder still hold that edit: fix it, then end with the DESCRIPTION line.")
            outcome = self._run(text, system, scratch, context, emit)
            changed = scratch.changed()
            refusal = ("you changed none of the editable files" if not changed
                       else context.check(changed))
            if not refusal:
                return Proposal(description=_description(outcome.result), files=changed,
                                rationale=outcome.result.strip()[-RATIONALE_CHARS:])
            emit(f"[refused: {refusal}]\n")
        raise AgentError(f"Claude Code's edits were refused {runs} times; last: "
                         f"{refusal}")

    def _run(self, prompt: str, system: str, scratch: Scratch, context: Context,
             emit: Emit) -> stream.Outcome:
        """One run of the CLI; raises AgentPaused for what only the person can fix."""
        outcome = stream.Outcome()

        def on_line(line: str) -> None:
            text = stream.read_line(line, outcome)
            if text:
                emit(text)

        argv = command.argv(self.settings, system)
        try:
            finished = process.run(argv, prompt, scratch.root, command.environment(),
                                   self.settings.timeout_seconds, on_line)
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            raise AgentPaused(f"Claude Code's CLI {self.settings.command!r} cannot be run: "
                              "install it (npm install -g @anthropic-ai/claude-code) or set "
                              "[agent.claude-code] command") from None
        finally:
            self._record_usage(outcome, context)
        for note in scratch.take_notes():
            context.record(schema.JOURNAL, text=note)
            emit(f"[journal] {note}\n")
        if finished.timed_out:
            raise AgentPaused(f"Claude Code did not finish within "
                              f"{self.settings.timeout_seconds:g} s and was stopped "
                              "([agent.claude-code] timeout_seconds)")
        if outcome.auth_failed:
            raise AgentPaused(f"Claude Code could not log in: {_one_line(outcome.result)}; "
                              "run `claude` once to log in, or set ANTHROPIC_API_KEY")
        if outcome.is_error or not outcome.finished:
            said = outcome.result or finished.stderr or f"exit status {finished.returncode}"
            raise AgentError(f"Claude Code failed: {_one_line(said)}")
        return outcome

    def _record_usage(self, outcome: stream.Outcome, context: Context) -> None:
        """Tokens and cost as the CLI reports them; nothing when it reported nothing."""
        if not outcome.finished or (outcome.cost_usd is None and not outcome.tokens):
            return
        cost = outcome.cost_usd or 0.0
        with self._total_lock:
            self.total_cost_usd += cost
            total = self.total_cost_usd
        tokens = {name: outcome.tokens.get(name, 0) for name in (
            "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}
        context.record(schema.AGENT_USAGE, model=outcome.model or self.settings.model or "",
                       **tokens, requests=outcome.turns, cost_usd=round(cost, 8),
                       total_cost_usd=round(total, 8))


def _description(result: str) -> str:
    """The DESCRIPTION line of its final message, else that message's last line."""
    found = _DESCRIPTION.findall(result)
    text = found[-1] if found else next(
        (line.strip() for line in reversed(result.splitlines()) if line.strip()),
        "an edit by Claude Code")
    text = " ".join(text.strip("`* ").split())
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 3] + "..."


def _one_line(text: str) -> str:
    """The last non-empty line: where an error message or a traceback says what went wrong."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"

