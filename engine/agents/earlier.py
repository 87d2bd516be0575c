"""What the workspace's earlier sessions tried and learned, as a Claude agent reads it.

One short row per earlier experiment (named `session:number`) under a line per session, then
the notes those sessions wrote, within a share of the diagnostics table's character budget
(`prompt` gives the session's own table the rest): the notes get at most a third, newest first;
of the rows, every kept change stays, and the oldest of the others go first, with a count of
what was left out, which `search_experiments` still finds.
"""

from __future__ import annotations

from collections.abc import Sequence

from ratchet.engine.agents import diagnostics
from ratchet.engine.protocol.history import HistoryEntry, JournalNote

EARLIER_CHARS = diagnostics.TABLE_CHARS // 4  # the earlier sessions' share of the table budget
NOTES_SHARE = 3  # the notes take at most 1/NOTES_SHARE of it
NOTE_LINE = 80  # what a line saying how many rows were left out costs, at most
LOOKUP = ("view_experiment with the session and exp shows any of them in full; "
          "search_experiments searches them too.")


def render(entries: Sequence[HistoryEntry], notes: Sequence[JournalNote],
           budget_chars: int = EARLIER_CHARS, lookup: str = LOOKUP) -> str:
    """The section's text, '' when there were no earlier sessions."""
    if not entries and not notes:
        return ""
    sessions = list(dict.fromkeys([e.session for e in entries] + [n.session for n in notes]))
    kept = sum(1 for e in entries if e.decision == "keep")
    head = (f"{len(sessions)} earlier session{'s' * (len(sessions) != 1)} of this workspace "
            f"ran {len(entries)} experiment{'s' * (len(entries) != 1)} ({kept} kept), each "
            f"measured against its own session's best; val_bpb compares across sessions only "
            f"at the same budget. Rows: {diagnostics.SHORT_HEADER}, exp as session:number. "
            f"{lookup}")
    note_lines = _notes(notes, budget_chars // NOTES_SHARE)
    rows_budget = budget_chars - len(head) - sum(len(line) + 1 for line in note_lines)
    body = _rows(entries, sessions, rows_budget)
    if note_lines:
        body += ["Their journal notes:", *note_lines]
    return "\n".join([head, *body])


def _notes(notes: Sequence[JournalNote], budget: int) -> list[str]:
    """`[session:exp] text`, oldest first, the newest kept within the budget."""
    lines: list[str] = []
    size = 0
    for note in reversed(notes):
        line = f"[{note.session}:{note.exp}] " + " ".join(note.text.split())
        if size + len(line) + 1 > budget:
            break
        lines.append(line)
        size += len(line) + 1
    left_out = len(notes) - len(lines)
    return ([f"({left_out} older notes left out)"] if left_out else []) + lines[::-1]


def _rows(entries: Sequence[HistoryEntry], sessions: list[str], budget: int) -> list[str]:
    """A line per session and a row per experiment; past the budget the oldest rows that were
    not kept go first, then the oldest kept ones, and a session with no row left goes whole."""
    rows = {id(e): diagnostics.short_row(e) for e in entries}
    of: dict[str, list[HistoryEntry]] = {s: [] for s in sessions}
    for entry in entries:
        of[entry.session].append(entry)
    headers = {s: _session_line(s, of[s]) for s in sessions if of[s]}
    left = {s: len(of[s]) for s in sessions}
    size = sum(len(r) + 1 for r in rows.values()) + sum(len(h) + 1 for h in headers.values())
    order = [e for e in entries if e.decision != "keep"] + \
        [e for e in entries if e.decision == "keep"]
    for entry in order:
        if size <= budget:
            break
        size -= len(rows.pop(id(entry))) + 1
        session = entry.session
        left[session] -= 1
        if left[session] == len(of[session]) - 1:  # its line saying how many were left out
            size += NOTE_LINE
        if not left[session]:
            size -= len(headers[session]) + 1 + NOTE_LINE
            size += NOTE_LINE if not any(not left[s] for s in headers if s != session) else 0
    gone = [s for s in headers if not left[s]]
    lines = []
    if gone:
        lines.append(f"({len(gone)} older session{'s' * (len(gone) != 1)} with "
                     f"{sum(len(of[s]) for s in gone)} experiments left out: "
                     "search_experiments finds them)")
    for session in headers:
        if not left[session]:
            continue
        lines.append(headers[session])
        if left[session] < len(of[session]):
            lines.append(f"({len(of[session]) - left[session]} of its runs left out: "
                         "search_experiments finds them)")
        lines += [rows[id(e)] for e in of[session] if id(e) in rows]
    return lines


def _session_line(session: str, entries: list[HistoryEntry]) -> str:
    """`## session ID: N experiments, K kept, best val_bpb X, budget B s`."""
    kept = sum(1 for e in entries if e.decision == "keep")
    vals = [e.val_bpb for e in entries if e.val_bpb is not None and e.status == "ok"]
    budgets = {b for e in entries if isinstance(b := e.result.get("budget_seconds"), (int, float))
               and b > 0}
    parts = [f"{len(entries)} experiment{'s' * (len(entries) != 1)}", f"{kept} kept"]
    if vals:
        parts.append(f"lowest val_bpb {min(vals):.4f}")
    if len(budgets) == 1:
        parts.append(f"budget {next(iter(budgets)):g} s")
    return f"### session {session}: " + ", ".join(parts)
