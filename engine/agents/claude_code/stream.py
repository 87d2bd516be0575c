"""Claude Code's `--output-format stream-json` output, read one JSON line at a time.

Each line becomes text for the agent pane (its thinking, its words, one line per tool call) and
the final `result` line says how the run ended and what it cost. Lines that are not JSON or of
a type not known here are skipped: the CLI's output grows with its releases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

LOGIN_WORDS = ("login", "log in", "api key", "api_key", "authentication", "unauthorized")


@dataclass
class Outcome:
    """What one run of the CLI said about itself."""

    result: str = ""  # the final answer's text
    is_error: bool = False
    finished: bool = False  # a `result` line arrived
    auth_failed: bool = False
    cost_usd: float | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    model: str = ""
    session_id: str = ""


def read_line(line: str, outcome: Outcome) -> str:
    """Fold one output line into `outcome`; returns the text it adds to the agent pane."""
    try:
        data = json.loads(line)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    kind = data.get("type")
    if kind == "system" and data.get("subtype") == "init":
        outcome.model = str(data.get("model") or "")
        outcome.session_id = str(data.get("session_id") or "")
        return f"[claude-code {data.get('claude_code_version', '')}: {outcome.model}]\n"
    if kind == "assistant":
        message = data.get("message") or {}
        if data.get("error") == "authentication_failed":
            outcome.auth_failed = True
        return "".join(_block_text(b) for b in message.get("content") or []
                       if isinstance(b, dict))
    if kind == "user":
        content = (data.get("message") or {}).get("content") or []
        return "".join(_refusal(b) for b in content if isinstance(b, dict))
    if kind == "result":
        _read_result(data, outcome)
    return ""


def _read_result(data: dict, outcome: Outcome) -> None:
    outcome.finished = True
    outcome.is_error = bool(data.get("is_error")) or data.get("subtype") != "success"
    outcome.result = str(data.get("result") or "")
    outcome.turns = int(data.get("num_turns") or 0)
    cost = data.get("total_cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        outcome.cost_usd = float(cost)
    usage = data.get("usage") or {}
    names = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
             "cache_read_input_tokens": "cache_read_tokens",
             "cache_creation_input_tokens": "cache_write_tokens"}
    outcome.tokens = {ours: usage[theirs] for theirs, ours in names.items()
                      if isinstance(usage.get(theirs), int)}
    text = outcome.result.lower()
    if outcome.is_error and (data.get("api_error_status") in (401, 403)
                             or any(word in text for word in LOGIN_WORDS)):
        outcome.auth_failed = True


def _block_text(block: dict) -> str:
    kind = block.get("type")
    if kind == "text":
        return "\n" + str(block.get("text") or "") + "\n"
    if kind == "thinking":
        return "\n[thinking] " + str(block.get("thinking") or "") + "\n"
    if kind == "tool_use":
        return tool_line(str(block.get("name") or "?"), block.get("input")) + "\n"
    return ""


def _refusal(block: dict) -> str:
    if block.get("type") != "tool_result" or not block.get("is_error"):
        return ""
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    first = str(content or "").strip().splitlines()
    return f"[refused: {first[0][:200] if first else 'error'}]\n"


def tool_line(name: str, args: object) -> str:
    """One line per tool call, as the Claude agent writes them: [edit train.py: Edit]."""
    args = args if isinstance(args, dict) else {}
    path = str(args.get("file_path") or args.get("path") or "")
    short = path.rsplit("/", 1)[-1] if path else "?"
    if name in ("Edit", "MultiEdit", "Write"):
        return f"[edit {short}: {name}]"
    if name == "Read":
        return f"[view {path.split('/experiments/')[-1] if '/experiments/' in path else short}]"
    if name in ("Grep", "Glob"):
        return f"[search: {str(args.get('pattern', ''))[:80]}]"
    return f"[{name}]"
