"""results.tsv as a function of the event log: the rows each event means, and their repair.

The log is the single source of truth. A row is written only once its event is on disk (and,
for a keep, once the branch has moved), so a killed engine leaves results.tsv behind the log,
never ahead of it. A resuming engine brings the file in line with the rows its log backs
(`repair`): rows of this session the log does not back are dropped, missing ones appended, and
every other line (earlier sessions, autoresearch's own rows) stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ratchet.engine.protocol import schema
from ratchet.engine.workspace import results_tsv

# results_tsv.append's arguments: commit, val_bpb, memory_mb, status, description
Row = tuple[str, float | None, float, str, str]



def rows_for(event: dict, pending: Mapping[int, dict],
             held: Mapping[int, list[dict]] | None = None) -> list[Row]:
    """The rows an event adds to results.tsv; `pending` holds the candidates waiting for a
    confirmation before the event and `held` their further runs so far (the folded state's
    `pending_confirms` and `pending_runs`, not yet updated)."""
    held = held or {}
    kind = event.get("type")
    if kind == schema.PROPOSAL_DROPPED:
        waiting = pending.get(event.get("exp", 0))
        why = f" (dropped: {event.get('reason', '')})"
        return [] if waiting is None else [
            row(end, "discard", why) for end in (waiting, *held.get(event.get("exp", 0), []))]
    decision = event.get("decision", "")
    if kind != schema.EXP_END or decision in (schema.PENDING_CONFIRM, schema.ANOTHER_RUN):
        return []  # a winner's rows wait until its last run says what it is
    runs = held.get(event.get("confirms", 0), []) if event.get("kind") == schema.CONFIRM else []
    if decision == schema.CONFIRM_AGAIN:
        return [row(end, "discard", results_tsv.AGAIN) for end in (*runs, event)]
    rows = []
    if event.get("kind") == schema.CONFIRM and decision != schema.RETRY:
        waiting = pending.get(event.get("confirms", 0))
        if waiting is not None:
            rows += [row(end, *tsv_confirmed(decision)) for end in (waiting, *runs)]
    note = tsv_row(decision, event.get("status", ""))
    if event.get("status") == schema.STOPPED_EARLY:
        note = ("discard", _stopped(event.get("early_stop")))
    return rows + [row(event, *note)]


def _stopped(early: object) -> str:
    """' (stopped early at 25%: loss +0.123 behind the best)', from the exp_end's early_stop."""
    early = early if isinstance(early, dict) else {}
    fraction, gap = early.get("fraction"), early.get("gap")
    if isinstance(fraction, (int, float)) and isinstance(gap, (int, float)):
        return f" (stopped early at {fraction * 100:g}%: loss {gap:+.3f} behind the best)"
    return " (stopped early)"


def tsv_row(decision: str, run_status: str) -> tuple[str, str]:
    """results.tsv's status (autoresearch's keep, discard or crash) and a note for the
    description, for an experiment's own row."""
    if run_status != schema.OK:
        note = f" ({run_status})" if decision in (schema.CRASH, schema.INTERRUPTED) \
            and run_status != schema.CRASHED else ""
        return "crash", note
    if decision == schema.INTERRUPTED:  # ran, but its keep could not move the branch
        return "discard", " (interrupted)"
    if decision in (schema.BASELINE, schema.KEEP):
        return "keep", ""
    return "discard", " (near miss)" if decision == schema.NEAR_MISS else ""


def tsv_confirmed(decision: str) -> tuple[str, str]:
    """The row of a candidate whose confirmation ended: written only now that it is known."""
    return ("keep", "") if decision == schema.KEEP else ("discard", " (not confirmed)")


def row(end: dict, status: str, suffix: str = "") -> Row:
    label = str(end.get("description", ""))
    if end.get("kind") == schema.CONFIRM:
        label = f"{results_tsv.CONFIRM}{label}"
    memory = (end.get("result") or {}).get("peak_memory_mb")
    memory = memory if isinstance(memory, (int, float)) else 0.0
    return str(end.get("commit", "")), end.get("val_bpb"), memory, status, label + suffix


def repair(path: Path, backed: list[Row], ours: set[str]) -> None:
    """Make results.tsv hold `backed` (every row this session's log backs, in order).

    Rows are matched in order; an unmatched row whose commit (7 characters) is in `ours`, this
    session's own candidates, is not backed by the log and goes; what is missing is appended.
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() \
        if path.exists() else []
    wanted = [results_tsv.cells(*r) for r in backed]
    kept, matched, dropped = lines[:1], 0, False
    for line in lines[1:]:
        found = tuple(line.split("\t"))
        if matched < len(wanted) and found == wanted[matched]:
            matched += 1
        elif found[0] in ours:
            dropped = True
            continue
        kept.append(line)
    if dropped:
        results_tsv.rewrite(path, kept)
    for missing in backed[matched:]:
        results_tsv.append(path, *missing)
