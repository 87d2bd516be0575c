"""What Claude reads for one proposal: a stable, cached prefix and the per-proposal state.

The system prompt (Ratchet's instructions and the workspace's program.md) does not change during
a session, so it is marked for prompt caching; the files, results table, crash tail and notes
come after it in the user message.
"""

from __future__ import annotations

from ratchet.engine.agents.base import Context, HistoryEntry
from ratchet.engine.workspace.layout import template_text

CACHE = {"type": "ephemeral"}
RECENT_DISCARDS = 15  # non-kept results shown besides every kept one
CRASH_TAIL_CHARS = 3000


def system_blocks(program: str) -> list[dict]:
    """Instructions then program.md; the last block carries the cache breakpoint."""
    instructions = template_text("claude_system.md").strip()
    program = program.strip() or "(the workspace has no program.md)"
    return [{"type": "text", "text": instructions},
            {"type": "text", "text": program, "cache_control": dict(CACHE)}]


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.6f}" if signed else f"{value:.6f}"


def results_table(history: list[HistoryEntry], recent: int = RECENT_DISCARDS) -> str:
    """Every kept result and the most recent others, oldest first, one line each."""
    if not history:
        return "(no experiments besides the baseline yet)"
    others = [e for e in history if e.decision != "keep"]
    shown_others = {id(e) for e in others[-recent:]}
    rows = ["exp | result | val_bpb | delta | description"]
    hidden = 0
    for entry in history:
        if entry.decision != "keep" and id(entry) not in shown_others:
            hidden += 1
            continue
        result = entry.decision if entry.status == "ok" else f"{entry.decision} ({entry.status})"
        rows.append(f"{entry.n} | {result} | {_number(entry.val_bpb)} | "
                    f"{_number(entry.delta, signed=True)} | {entry.description}")
    if hidden:
        rows.insert(1, f"({hidden} older results that were not kept are not shown)")
    return "\n".join(rows)


def user_message(context: Context) -> str:
    parts = [f"Best val_bpb so far: {_number(context.best_bpb)}; a change must beat it by more "
             f"than {context.margin:.6f} to be kept.",
             "## Results so far (kept changes form the current code)\n"
             + results_table(context.history)]
    if context.in_flight:
        parts.append("## Running right now (do not propose these again)\n"
                     + "\n".join(f"- {d}" for d in context.in_flight))
    if context.last_crash_tail.strip():
        parts.append("## Output tail of the last crash\n```\n"
                     + context.last_crash_tail[-CRASH_TAIL_CHARS:] + "\n```")
    if context.steer:
        parts.append("## Notes from the person running Ratchet (follow them)\n"
                     + "\n".join(f"- {note}" for note in context.steer))
    files = "\n\n".join(f"### {name}\n```python\n{text}\n```" if name.endswith(".py")
                        else f"### {name}\n```\n{text}\n```"
                        for name, text in context.files.items())
    parts.append(f"## Editable files (the current best code)\n{files}")
    parts.append("Propose the next experiment: edit the files with the tools, then call finish.")
    return "\n\n".join(parts)
