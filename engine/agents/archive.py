"""Past experiments on demand: one experiment in full, and a search over all of them.

The diagnostics table gives every run one line; these give an agent the rest when it asks
(the Claude agent's `view_experiment` and `search_experiments` tools): the full diff, the output
tail and the training curve, and which earlier runs touched the same thing, whatever their
descriptions called it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ratchet.engine.agents import diagnostics
from ratchet.engine.protocol.history import HistoryEntry

TAIL_CHARS = 3000
SEARCH_LIMIT = 20
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?")


def find(history: Sequence[HistoryEntry], n: object, session: str = "") -> HistoryEntry | None:
    """The experiment numbered n (its latest run, e.g. a confirmation), or None; of an earlier
    session's when `session` names it (`history` being the earlier sessions' entries)."""
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    return next((e for e in reversed(history) if e.n == n and e.session == session), None)


def view(entry: HistoryEntry) -> str:
    """Everything recorded about one experiment, as text for the agent."""
    r = entry.result
    lines = [f"Experiment {entry.label}: {entry.description}"
             + (f" (earlier session {entry.session})" if entry.session else ""),
             f"verdict: {diagnostics.verdict(entry)}; val_bpb {_num(entry.val_bpb, 6)}; "
             f"delta/margin {diagnostics.delta_margin(entry)}",
             f"steps {r.get('steps') or '-'}; tokens {r.get('tokens') or '-'}; params "
             f"{r.get('params') or '-'}; trainer seconds {_num(r.get('trainer_seconds'), 1)} "
             f"of a {_num(r.get('budget_seconds'), 0)} s budget; peak memory MB "
             f"{_num(r.get('peak_memory_mb'), 0)}; mfu {_num(r.get('mfu'), 1)}"]
    if r.get("error"):
        lines.append(f"error: {r['error']}")
    lines.append("## Diff\n" + (entry.diff.strip() or "(no diff recorded)"))
    curve = r.get("curve") or []
    lines.append("## Training curve (elapsed s, step, loss)\n" + (
        "\n".join(f"{t:g} {s} {loss:g}" for t, s, loss in curve) or "(no loss was logged)"))
    tail = (r.get("tail") or "").strip()
    lines.append("## Output tail\n" + (tail[-TAIL_CHARS:] or "(no output)"))
    return "\n".join(lines)


def search(history: Sequence[HistoryEntry], query: str, limit: int = SEARCH_LIMIT,
           earlier: Sequence[HistoryEntry] = ()) -> str:
    """Experiments whose description, diff or error mention the query's words, best matches
    first: a constant's name finds every run that changed it. Matches among the `earlier`
    sessions' experiments follow in a block of their own (newest first among equals)."""
    words = {w.lower() for w in _WORD.findall(query)}
    if not words:
        return "search_experiments needs a query with words or numbers, e.g. 'LEARNING_RATE'"
    own = _matches(history, words, lambda i, entry: -entry.n)
    text = _rows(own, limit) if own else f"no experiment matches {query!r}"
    found = _matches(earlier, words, lambda i, _entry: -i)
    if found:
        if not own:
            text = f"no experiment of this session matches {query!r}"
        text += ("\nEarlier sessions' experiments (exp is session:number; view_experiment takes "
                 "the session and exp):\n" + _rows(found, limit))
    return text


def _matches(entries: Sequence[HistoryEntry], words: set[str], recency) -> list[HistoryEntry]:
    """The entries that mention any of the words, most words first, then by `recency`."""
    scored = []
    for i, entry in enumerate(entries):
        removed, added = diagnostics.changed_lines(entry.diff)
        text = " ".join([entry.description, *removed, *added,
                         str(entry.result.get("error") or "")])
        hits = len(words & {w.lower() for w in _WORD.findall(text)})
        if hits:
            scored.append((-hits, recency(i, entry), i))
    scored.sort()
    return [entries[i] for *_, i in scored]


def _rows(entries: list[HistoryEntry], limit: int) -> str:
    rows = [diagnostics.short_row(entry) for entry in entries[:limit]]
    more = f"\n({len(entries) - limit} more matches)" if len(entries) > limit else ""
    return f"{diagnostics.SHORT_HEADER}\n" + "\n".join(rows) + more


def _num(value: object, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"
