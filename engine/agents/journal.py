"""The agent's research journal as it reads it back: its notes, newest kept within a budget."""

from __future__ import annotations

from collections.abc import Sequence

from ratchet.engine.protocol.history import JournalNote

JOURNAL_CHARS = 12_000  # about 3.5k tokens


def render(notes: Sequence[JournalNote], budget_chars: int = JOURNAL_CHARS) -> str:
    """One line per note, oldest first, `[exp N] text`; the oldest go first past the budget."""
    if not notes:
        return "(empty: write hypotheses, findings and next steps with the journal tool)"
    lines: list[str] = []
    size = 0
    for note in reversed(notes):
        line = f"[exp {note.exp}] " + " ".join(note.text.split())
        if lines and size + len(line) + 1 > budget_chars:
            break
        lines.append(line)
        size += len(line) + 1
    left_out = len(notes) - len(lines)
    head = [f"({left_out} older notes left out)"] if left_out else []
    return "\n".join(head + lines[::-1])
