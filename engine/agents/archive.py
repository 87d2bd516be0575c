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


def find(history: Sequence[HistoryEntry], n: object) -> HistoryEntry | None:
    """The experiment numbered n (its latest run, e.g. a confirmation), or None."""
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    return next((e for e in reversed(history) if e.n == n), None)


def view(entry: HistoryEntry) -> str:
    """Everything recorded about one experiment, as text for the agent."""
    r = entry.result
    lines = [f"Experiment {entry.n}: {entry.description}",
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


def search(history: Sequence[HistoryEntry], query: str, limit: int = SEARCH_LIMIT) -> str:
    """Experiments whose description, diff or error mention the query's words, best matches
    first: a constant's name finds every run that changed it."""
    words = {w.lower() for w in _WORD.findall(query)}
    if not words:
        return "search_experiments needs a query with words or numbers, e.g. 'LEARNING_RATE'"
    scored = []
    for entry in history:
        removed, added = diagnostics.changed_lines(entry.diff)
        text = " ".join([entry.description, *removed, *added, entry.result.get("error", "")])
        found = {w.lower() for w in _WORD.findall(text)}
        hits = len(words & found)
        if hits:
            scored.append((-hits, -entry.n, entry))
    if not scored:
        return f"no experiment matches {query!r}"
    scored.sort(key=lambda item: item[:2])
    rows = [diagnostics.short_row(entry) for *_, entry in scored[:limit]]
    more = f"\n({len(scored) - limit} more matches)" if len(scored) > limit else ""
    return f"{diagnostics.SHORT_HEADER}\n" + "\n".join(rows) + more


def _num(value: object, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"
