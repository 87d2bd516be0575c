"""How each experiment trained, as one compact table row: what an agent reads to choose the next.

Pure functions of the history the log folds (`HistoryEntry.result` holds exp_end's numbers and
its thinned loss curve). The table must fit a 500-experiment session into the agent's context,
so it has a character budget: every kept change and the recent runs get a full row, older runs a
short one, and the oldest short rows go first when the budget is spent
(bench/agent_context.py measures it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ratchet.engine.protocol import schema
from ratchet.engine.protocol.history import HistoryEntry

FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of the budget, where curves are compared
TABLE_CHARS = 40_000  # about 18k tokens (bench/agent_context.py)
FULL_RECENT = 30  # most recent experiments that keep a full row besides every kept one
TRIED_CHARS = 110
HEADER = ("exp | verdict | val_bpb | delta/margin | steps | tok/s | mem MB | mfu | "
          "time/budget s | loss at 25/50/75/100% minus best's | final loss | what was tried")
SHORT_HEADER = "exp | verdict | val_bpb | delta/margin | what was tried"


def loss_at(curve: Sequence[Sequence[float]], seconds: float) -> float | None:
    """The training loss at `seconds` into training, linearly interpolated between logged
    points; None before the first point or well past the last (a run that stopped early)."""
    if not curve or seconds < curve[0][0]:
        return None
    last = curve[-1]
    if seconds >= last[0]:
        return float(last[2]) if last[0] >= 0.95 * seconds else None
    for (t0, _s0, l0), (t1, _s1, l1) in zip(curve, curve[1:], strict=False):
        if t0 <= seconds <= t1:
            return float(l0) if t1 == t0 else l0 + (l1 - l0) * (seconds - t0) / (t1 - t0)
    return None


def losses(result: dict) -> list[float | None]:
    """The loss at each of FRACTIONS of the run's budget."""
    curve, budget = result.get("curve") or [], result.get("budget_seconds") or 0.0
    if not budget and curve:
        budget = curve[-1][0]
    return [loss_at(curve, f * budget) for f in FRACTIONS]


def best_line(best: dict) -> str:
    """The best run's own curve, which every row's loss columns are measured against."""
    if not best:
        return "Best run's training loss: not known yet."
    points = "/".join(_num(v, 3) for v in losses(best))
    return (f"Best run's training loss at 25/50/75/100% of the budget: {points}; steps "
            f"{best.get('steps') or '-'}, tok/s {_rate(best)}, mem MB "
            f"{_mem(best.get('peak_memory_mb'))}.")


ERROR_CHARS = 60  # of a failed run's error, beside its verdict


def verdict(entry: HistoryEntry) -> str:
    """The keep rule's decision; a failed run's status and the start of its error."""
    word = entry.decision if entry.status in (schema.OK, entry.decision) else \
        f"{entry.decision}:{entry.status}"
    error = " ".join(str(entry.result.get("error") or "").split()).replace("|", "/")
    if entry.status != schema.OK and error:
        word += f" ({error[:ERROR_CHARS]})"
    return f"{word}(confirm)" if entry.kind == schema.CONFIRM else word


def delta_margin(entry: HistoryEntry) -> str:
    """The keep rule's measure: the change against the best, and the margin it had to beat."""
    if entry.delta is None:
        return "-"
    margin = f"/{entry.margin:.4f}" if isinstance(entry.margin, (int, float)) else ""
    return f"{entry.delta:+.4f}{margin}"


def full_row(entry: HistoryEntry, best: Sequence[float | None]) -> str:
    r = entry.result
    mine = losses(r)
    against = " ".join("-" if a is None or b is None else f"{a - b:+.3f}"
                       for a, b in zip(mine, best, strict=True))
    final = r["curve"][-1][2] if r.get("curve") else None
    spent, budget = r.get("trainer_seconds"), r.get("budget_seconds")
    time = f"{_num(spent, 0)}/{_num(budget, 0)}" if budget else "-"
    mfu = f"{r['mfu']:.0f}%" if isinstance(r.get("mfu"), (int, float)) else "-"
    return " | ".join([entry.label, verdict(entry), _num(entry.val_bpb, 4),
                       delta_margin(entry), str(r.get("steps") or "-"), _rate(r),
                       _mem(r.get("peak_memory_mb")), mfu, time, against, _num(final, 3),
                       tried(entry)])


def short_row(entry: HistoryEntry) -> str:
    return " | ".join([entry.label, verdict(entry), _num(entry.val_bpb, 4),
                       delta_margin(entry), tried(entry)])


def table(history: Sequence[HistoryEntry], best_result: dict,
          budget_chars: int = TABLE_CHARS, full_recent: int = FULL_RECENT) -> str:
    """The diagnostics table, oldest first, within `budget_chars`."""
    if not history:
        return best_line(best_result) + "\n(no experiments besides the baseline yet)"
    best = losses(best_result) if best_result else [None] * len(FRACTIONS)
    recent = {id(e) for e in history[-full_recent:]}
    full = [e for e in history if e.decision == "keep" or id(e) in recent]
    short = [e for e in history if id(e) not in {id(f) for f in full}]
    full_rows = {id(e): full_row(e, best) for e in full}
    short_rows = {id(e): short_row(e) for e in short}
    size = sum(len(v) + 1 for v in (*full_rows.values(), *short_rows.values()))
    dropped = 0
    for entry in short:  # the oldest short rows go first
        if size <= budget_chars:
            break
        size -= len(short_rows.pop(id(entry))) + 1
        dropped += 1
    lines = [best_line(best_result), HEADER]
    if short_rows:
        lines.append(f"Older runs, short rows: {SHORT_HEADER}")
    if dropped:
        lines.append(f"({dropped} older runs that were not kept are left out: find them with "
                     "search_experiments)")
    for entry in history:
        row = full_rows.get(id(entry)) or short_rows.get(id(entry))
        if row:
            lines.append(row)
    return "\n".join(lines)


_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*(?:#.*)?$")


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and the added lines of a unified diff, file headers left out."""
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
    return removed, added


def diff_summary(diff: str, limit: int = TRIED_CHARS) -> str:
    """What a diff changed, in a few words: `NAME old->new` for constants, else line counts
    and the first added line."""
    removed, added = changed_lines(diff)
    if not removed and not added:
        return ""
    old = {m.group(1): m.group(2) for m in map(_ASSIGN.match, removed) if m}
    new = {m.group(1): m.group(2) for m in map(_ASSIGN.match, added) if m}
    if old and len(old) == len(removed) and len(new) == len(added) and set(old) == set(new):
        text = ", ".join(f"{name} {old[name]}->{new[name]}" for name in new)
    else:
        first = next((line.strip() for line in added if line.strip()), "")
        text = f"+{len(added)}/-{len(removed)} lines" + (f": {first}" if first else "")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tried(entry: HistoryEntry) -> str:
    """The description, and what the diff actually did where it says more."""
    summary = diff_summary(entry.diff)
    text = entry.description if not summary else f"{entry.description} [{summary}]"
    text = text.replace("|", "/")  # the table's column separator
    return text if len(text) <= 2 * TRIED_CHARS else text[:2 * TRIED_CHARS - 3] + "..."


def _num(value: object, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _rate(result: dict) -> str:
    seconds = result.get("training_seconds") or result.get("trainer_seconds") or 0
    tokens = result.get("tokens") or 0
    if not seconds or not tokens:
        return "-"
    rate = tokens / seconds
    return f"{rate / 1000:.0f}k" if rate >= 10_000 else f"{rate:.0f}"


def _mem(mb: object) -> str:
    return f"{mb:.0f}" if isinstance(mb, (int, float)) and mb > 0 else "-"
