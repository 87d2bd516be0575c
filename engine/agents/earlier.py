"""What the workspace's earlier sessions tried and learned, as a Claude agent reads it.

One short row per earlier experiment (named `session:number`) under a line per session, then
the notes those sessions wrote, within a share of the diagnostics table's character budget
(`prompt` gives the session's own table the rest): the notes get at most a third, newest first;
of the rows, every kept change stays, and the oldest of the others go first, with a count of
what was left out, which `search_experiments` still finds. What studies of those sessions
concluded (`ratchet validate`: did the best's gain hold at longer budgets; `ratchet ablate`:
which kept changes still mattered) comes first, newest first, within a share of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ratchet.engine.agents import diagnostics
from ratchet.engine.protocol import schema
from ratchet.engine.protocol.history import HistoryEntry, JournalNote, StudyNote

EARLIER_CHARS = diagnostics.TABLE_CHARS // 4  # the earlier sessions' share of the table budget
NOTES_SHARE = 3  # the notes take at most 1/NOTES_SHARE of it
STUDIES_SHARE = 4  # the studies' conclusions at most 1/STUDIES_SHARE
NOTE_LINE = 80  # what a line saying how many rows were left out costs, at most
LOOKUP = ("view_experiment with the session and exp shows any of them in full; "
          "search_experiments searches them too.")


def render(entries: Sequence[HistoryEntry], notes: Sequence[JournalNote],
           budget_chars: int = EARLIER_CHARS, lookup: str = LOOKUP,
           studies: Sequence[StudyNote] = ()) -> str:
    """The section's text, '' when there were no earlier sessions."""
    concluded = render_studies(studies, entries, budget_chars // STUDIES_SHARE)
    budget_chars -= len(concluded) + 1 if concluded else 0
    if not entries and not notes:
        return concluded
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
    return "\n".join(([concluded] if concluded else []) + [head, *body])


def render_studies(studies: Sequence[StudyNote], entries: Sequence[HistoryEntry] = (),
                   budget_chars: int = EARLIER_CHARS // STUDIES_SHARE) -> str:
    """A line per study that read anything, newest first while they fit; '' for none. A
    validate line names the studied session's kept changes (from `entries`) it measured."""
    head = ("What studies of earlier sessions concluded (effect = val_bpb of the change minus "
            "without it, paired on the same seeds, +- its standard error; negative helps):")
    read = [note for note in reversed(studies) if note.readings]
    lines: list[str] = []
    size = len(head) + NOTE_LINE  # room kept for the line saying how many were left out
    for note in read:
        line = _study_line(note, entries)
        if size + len(line) + 1 > budget_chars:
            lines.append(f"({len(read) - len(lines)} older studies left out)")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join([head, *lines]) if lines else ""


def _study_line(note: StudyNote, entries: Sequence[HistoryEntry]) -> str:
    unfinished = "" if note.complete else " (unfinished)"
    if note.study == schema.STUDY_VALIDATE:
        kept = [e.description for e in entries if e.session == note.of and e.decision == "keep"]
        what = f"the best of session {note.of}" + (
            f" (its kept changes: {'; '.join(kept)})" if kept else "")
        readings = sorted((r for r in note.readings if isinstance(r.get("multiple"), (int, float))),
                          key=lambda r: r["multiple"])
        parts = [f"{r['multiple']:g}x the budget: {_effect(r)} {r.get('verdict') or ''}".rstrip()
                 for r in readings]
        trend = readings[-1].get("trend") if readings else None
        if isinstance(trend, dict) and isinstance(trend.get("slope"), (int, float)) \
                and (trend.get("budgets") or 0) >= 2:
            parts.append(f"trend {trend['slope']:+.4f} per doubling")
        return f"- validate{unfinished}: {what} against its base: " + "; ".join(parts)
    parts = []
    for r in note.readings:
        if "change" not in r:
            pruned = r.get("pruned")
            if isinstance(pruned, list) and pruned:
                parts.append("the stack without those that did not help measured "
                             + ("no worse" if r.get("no_worse") else "worse"))
            continue
        flag = str(r.get("flag") or "").replace("_", " ")
        if r.get("flag") == schema.NOT_APPLIED:
            parts.append(f"'{r.get('description', '')}' could not be undone")
        else:
            parts.append(f"'{r.get('description', '')}' {flag} ({_effect(r)})")
    return f"- ablate{unfinished} of the best of session {note.of}, each kept change " \
        f"undone: " + "; ".join(parts)


def _effect(reading: dict) -> str:
    effect, se = reading.get("effect"), reading.get("se")
    if not isinstance(effect, (int, float)):
        return "no reading"
    return f"{effect:+.4f}" + (f" +- {se:.4f}" if isinstance(se, (int, float)) else "")


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
