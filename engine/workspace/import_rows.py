"""What the rows of an autoresearch results.tsv say: the sessions a file holds, and what each
row was in its session (a baseline run, a candidate, or a further run of one).

Ratchet writes its own sessions' rows in the same five columns: a candidate that needed further
runs (a confirmation, the paired rule's other seeds) has its row followed by one row per run,
labelled `confirm: <description>` (`results_tsv.CONFIRM`). Those are read back as the further
runs they were, so an import counts one keep where the session kept one change.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from ratchet.engine.protocol import schema
from ratchet.engine.workspace.results_tsv import AGAIN, CONFIRM

_BASELINE = re.compile(r"\s*baseline\b", re.IGNORECASE)  # a description that starts a session
# what Ratchet adds to a description in its rows (`results_tsv`, `ledger.tsv_row`)
_NOTE = re.compile(r" \((?:near miss|not confirmed|dropped: .*|the best moved; confirming "
                   r"again|[a-z_]+)\)$")


def number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


@dataclass
class Part:
    """One session of a results file: its rows, the first `baselines` of them baseline runs."""

    rows: list[dict[str, str]]
    baselines: int = 0
    measured: bool = False  # one of its baseline runs has a value


def value(row: dict[str, str]) -> float | None:
    """The row's val_bpb, or None for a crash (autoresearch logs those as 0.000000)."""
    val = number(row.get("val_bpb", ""))
    crashed = row.get("status", "").strip().lower() == "crash" or val is None or val <= 0.0
    return None if crashed else val


def split_sessions(rows: list[dict[str, str]]) -> list[Part]:
    """The sessions a results file holds, in order.

    A session begins with its baseline runs: every row up to the first one with a value, and
    the rows right after that whose description begins with "baseline" (Ratchet's other
    baseline seeds). A new session begins at a header line repeated, or at a row whose
    description begins with "baseline" once the current session has had a candidate.
    """
    parts: list[Part] = []
    current: Part | None = None
    for row in rows:
        if all(row.get(c, "").strip() == c for c in ("val_bpb", "status")):
            current = None  # a header again: what follows is a session of its own
            continue
        says_baseline = bool(_BASELINE.match(row.get("description", "")))
        if current is None or (says_baseline and current.baselines < len(current.rows)):
            current = Part([])
            parts.append(current)
        if current.baselines == len(current.rows) and (says_baseline or not current.measured):
            current.baselines += 1
            current.measured = current.measured or value(row) is not None
        current.rows.append(row)
    return parts




@dataclass(frozen=True)
class Role:
    """A row's place in its session, as the engine's exp_end would say it."""

    kind: str  # baseline, candidate or confirm
    decision: str
    confirms: int | None = None  # a further run: its candidate's row (from 0)
    new_best: float | None = None  # a confirmed keep: the mean of the candidate's runs


def roles(part: Part) -> list[Role]:
    """Each row's role. A `confirm: ...` row is a further run of the candidate row before it
    with its commit or description; that candidate waits for its runs (pending_confirm), the
    runs before the last are another_run, and the last says the verdict (its row's status)."""
    rows = part.rows
    target: dict[int, int] = {}  # further run -> its candidate
    for i in range(part.baselines, len(rows)):
        if rows[i].get("description", "").startswith(CONFIRM):
            found = _candidate_of(rows, part.baselines, target, i)
            if found is not None:
                target[i] = found
    runs: dict[int, list[int]] = {}  # candidate -> its further runs, a rerun after a move aside
    for i, c in target.items():
        if not _again(rows[i]):
            runs.setdefault(c, []).append(i)
    found_roles = []
    for i, row in enumerate(rows):
        c = target.get(i)
        if i < part.baselines:
            found_roles.append(Role(schema.BASELINE, schema.BASELINE))
        elif c is None:
            found_roles.append(Role(schema.CANDIDATE, schema.PENDING_CONFIRM if runs.get(i)
                                    else _verdict(row)))
        elif _again(row):
            found_roles.append(Role(schema.CONFIRM, schema.CONFIRM_AGAIN, c))
        elif i != runs[c][-1]:
            found_roles.append(Role(schema.CONFIRM, schema.ANOTHER_RUN, c))
        else:
            decision = _verdict(row)
            values = [v for v in map(value, [rows[c], *(rows[j] for j in runs[c])])
                      if v is not None]
            mean = statistics.fmean(values) if decision == schema.KEEP and values else None
            found_roles.append(Role(schema.CONFIRM, decision, c, mean))
    return found_roles


def _verdict(row: dict[str, str]) -> str:
    if value(row) is None:
        return schema.CRASH
    return schema.KEEP if row.get("status", "").strip().lower() == "keep" else schema.DISCARD


def _again(row: dict[str, str]) -> bool:
    return row.get("description", "").endswith(AGAIN)


def _bare(description: str) -> str:
    return _NOTE.sub("", description.removeprefix(CONFIRM)).strip()


def _candidate_of(rows: list[dict[str, str]], first: int, target: dict[int, int],
                  i: int) -> int | None:
    """The candidate row a further run belongs to: the latest before it on the same commit,
    else with the same description."""
    earlier = [j for j in range(i - 1, first - 1, -1) if j not in target
               and not rows[j].get("description", "").startswith(CONFIRM)]
    commit = rows[i].get("commit", "").strip()
    same = [j for j in earlier if commit and rows[j].get("commit", "").strip() == commit]
    if same:
        return same[0]
    name = _bare(rows[i].get("description", ""))
    return next((j for j in earlier if _bare(rows[j].get("description", "")) == name), None)
