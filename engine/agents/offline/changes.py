"""One-constant changes as the results table names them: "LEARNING_RATE 0.01 -> 0.0173".

The description is the only record of a change that survives a resume or another agent's run
(`changes` may be empty), so the agent both writes and reads this form.
"""

from __future__ import annotations

import re

from ratchet.engine.agents.base import HistoryEntry
from ratchet.engine.agents.offline.constants import NUMBER, Number, format_value, parse_number

_CHANGE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s+(\S+)\s*->\s*(" + NUMBER + r")\s*$")


def describe(name: str, old: Number, new: Number) -> str:
    return f"{name} {format_value(old)} -> {format_value(new)}"


def read_description(description: str) -> tuple[str, Number | None, Number] | None:
    """(name, old, new) of a "NAME old -> new" description; old is None when not a number."""
    match = _CHANGE.match(description)
    if not match:
        return None
    try:
        old: Number | None = parse_number(match.group(2))
    except ValueError:
        old = None
    return match.group(1), old, parse_number(match.group(3))


def new_value(description: str) -> tuple[str, Number] | None:
    """(name, new value) of a "NAME old -> new" description."""
    read = read_description(description)
    return None if read is None else (read[0], read[2])


def old_value(description: str) -> Number | None:
    read = read_description(description)
    return None if read is None else read[1]


def entry_change(entry: HistoryEntry) -> tuple[str, Number] | None:
    """The single constant change an entry made, from its changes dict or its description."""
    if len(entry.changes) == 1:
        name, value = next(iter(entry.changes.items()))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, value
    return new_value(entry.description)
