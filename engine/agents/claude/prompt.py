"""What Claude reads for one proposal: a stable, cached prefix and the per-proposal state.

The system prompt (Ratchet's instructions and the workspace's program.md) does not change during
a session, so it is marked for prompt caching; the files, the diagnostics table, the journal,
the crash tail and the person's notes come after it in the user message, and, where the
workspace has earlier sessions, what they tried and learned and what studies of them concluded
(`earlier`), which takes its share of the diagnostics table's budget.
"""

from __future__ import annotations

from ratchet.engine.agents import diagnostics, earlier, journal
from ratchet.engine.agents.base import Context
from ratchet.prompts import text as prompt_text

CACHE = {"type": "ephemeral"}
CRASH_TAIL_CHARS = 3000
ASK = "Propose the next experiment: edit the files with the tools, then call finish."
TABLE_NOTE = ("One row per finished experiment, oldest first. delta is val_bpb minus the best "
              "before it, margin what it had to beat; time is the engine's clock; the loss "
              "columns are this run's training loss minus the best run's at the same point of "
              "the budget.")
LOOKUP = "view_experiment shows any row's diff, curve and output in full."


def system_blocks(program: str) -> list[dict]:
    """Instructions then program.md; the last block carries the cache breakpoint."""
    instructions = prompt_text("claude_system.md").strip()
    program = program.strip() or "(the workspace has no program.md)"
    return [{"type": "text", "text": instructions},
            {"type": "text", "text": program, "cache_control": dict(CACHE)}]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def user_message(context: Context, ask: str = ASK, lookup: str = LOOKUP,
                 with_files: bool = True, earlier_lookup: str = earlier.LOOKUP) -> str:
    """The per-proposal state; `lookup` and `earlier_lookup` say how to read a past run in
    full, and an agent that reads the files itself (Claude Code) gets them `with_files=False`."""
    before = earlier.render(context.earlier, context.earlier_journal, lookup=earlier_lookup,
                            studies=context.earlier_studies)
    parts = [f"Best val_bpb so far: {_number(context.best_bpb)}; a change must beat it by more "
             f"than {context.margin:.6f} to be kept."]
    if before:
        parts.append("## Earlier sessions of this workspace (what they tried and learned: do "
                     "not repeat on the same code what they discarded)\n" + before)
    parts += ["## Results so far (kept changes form the current code)\n" + TABLE_NOTE + " "
              + lookup + "\n"
              + diagnostics.table(context.history, context.best_result,
                                  budget_chars=diagnostics.TABLE_CHARS - len(before)),
              "## Your research journal (your notes from earlier proposals)\n"
              + journal.render(context.journal)]
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
    if with_files:
        parts.append(f"## Editable files (the current best code)\n{files}")
    parts.append(ask)
    return "\n\n".join(parts)
