"""What the workspace's earlier sessions teach the offline agent: their runs, as observations.

Each earlier experiment is read as the configuration it ran: the constants of the target file at
its commit (while git still has it). Those measured at this session's budget, with every
constant the current file has inside its search range, are learned as if this session had run
them (the study's trials, crash limits, sensitivities); constants the current file does not
have are left out. A run of the same code as the current best (the file with its constants'
values blanked) that changed one constant is a change not to propose again from that best; the
same change made from other code or other constants may be, and is marked as tried before.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ratchet.engine.agents.base import AgentError, HistoryEntry
from ratchet.engine.agents.offline.changes import entry_change
from ratchet.engine.agents.offline.constants import Number, parse_constants
from ratchet.engine.agents.offline.moves import Change

Values = dict[str, Number]
# commits -> {commit: the target file's text there}, as Context.earlier_files gives it
FilesAt = Callable[[Iterable[str]], dict[str, str]]


def shape(source: str) -> str:
    """The code without its constants' values: two files of one shape differ only in them."""
    try:
        constants = sorted(parse_constants(source).values(), key=lambda c: c.start)
    except AgentError:
        constants = []
    parts, last = [], 0
    for constant in constants:
        parts += [source[last:constant.start], "0"]
        last = constant.end
    blank = "".join(parts) + source[last:]
    try:
        return ast.dump(ast.parse(blank))  # comments and layout do not count
    except (SyntaxError, ValueError, RecursionError):
        return blank


@dataclass
class Recall:
    """The earlier runs the agent could read, and what it took from them."""

    # each readable run: (the run, the constants it ran, the shape of its code)
    runs: list[tuple[HistoryEntry, Values, str]] = field(default_factory=list)
    changes: dict[Change, HistoryEntry] = field(default_factory=dict)  # the latest run of each
    unreadable: int = 0  # runs whose file git no longer has (or never had: another repository)
    sessions: int = 0

    def repeats(self, config: Values, code: str) -> dict[Change, HistoryEntry]:
        """The single-constant changes from `config` (of the file of shape `code`) that an
        earlier run made: that very configuration ran already."""
        found: dict[Change, HistoryEntry] = {}
        for entry, theirs, their_shape in self.runs:
            if their_shape != code or theirs.keys() != config.keys():
                continue
            differ = [n for n, v in config.items() if theirs[n] != v]
            if len(differ) == 1:
                found[(differ[0], float(theirs[differ[0]]))] = entry
        return found


def recall(entries: Sequence[HistoryEntry], files_at: FilesAt) -> Recall:
    """Every earlier run the agent can read: its configuration from the file at its commit."""
    found = Recall(sessions=len({e.session for e in entries}))
    runs = [e for e in entries if e.status != "interrupted" and e.decision != "interrupted"]
    texts = files_at(e.commit for e in runs if e.commit)
    shapes: dict[str, tuple[Values, str] | None] = {}
    for entry in runs:
        change = entry_change(entry)
        if change is not None:
            found.changes[(change[0], float(change[1]))] = entry
        text = texts.get(entry.commit)
        if text is None:
            found.unreadable += 1
            continue
        if entry.commit not in shapes:
            try:
                values = {n: c.value for n, c in parse_constants(text).items()}
                shapes[entry.commit] = (values, shape(text))
            except AgentError:
                shapes[entry.commit] = None
        read = shapes[entry.commit]
        if read is None:
            found.unreadable += 1
            continue
        found.runs.append((entry, read[0], read[1]))
    return found


def describe(entry: HistoryEntry) -> str:
    """`session:n (discard, val_bpb 2.9512)`: which run, and how it ended."""
    how = entry.decision if entry.status in ("ok", entry.decision) else \
        f"{entry.decision}: {entry.status}"
    value = f", val_bpb {entry.val_bpb:.4f}" if entry.val_bpb is not None else ""
    return f"{entry.label} ({how}{value})"
