"""A study's log read back (`ratchet validate`, `ratchet ablate`): its plan, which runs have
finished, and its readings (effect by budget; contribution per change), as pure functions of its
events.

The log is the source of truth: the study's first session_start holds the plan (the commits,
the seeds, the budgets or the changes), each run is known by what it measures (its kind, seed,
and budget multiple or the change it leaves out), and a run has finished once an exp_end records
it with any status but interrupted or lost. A resume runs what has not; `report` shows what
has. The readings here are the ones the study records in its study_result events
(`study_stats` holds the statistics).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ratchet.engine.protocol import schema
from ratchet.engine.protocol import study_stats as st

UNFINISHED = (schema.INTERRUPTED, schema.LOST)

# what a run measures: (kind, seed, budget multiple or None, the change it leaves out or None)
Key = tuple[str, int, float | None, int | None]


def key(kind: str, seed: int, multiple: float | None = None, ablates: int | None = None) -> Key:
    return (kind, int(seed), None if multiple is None else float(multiple), ablates)


def key_of(start: dict) -> Key | None:
    """The key of a study's exp_start (None for an event that is not one)."""
    kind, seed = start.get("kind"), start.get("seed")
    if kind not in schema.STUDY_KINDS or not isinstance(seed, int):
        return None
    multiple, ablates = start.get("multiple"), start.get("ablates")
    return key(kind, seed, multiple if isinstance(multiple, (int, float)) else None,
               ablates if isinstance(ablates, int) else None)


@dataclass
class StudyLog:
    session: str = ""
    study: str = ""  # validate | ablate ('' for a log that is no study's)
    plan: dict = field(default_factory=dict)  # the first session_start
    done: dict[Key, dict] = field(default_factory=dict)  # finished runs' exp_end
    running: dict[int, dict] = field(default_factory=dict)  # exp -> exp_start without end
    results: list[dict] = field(default_factory=list)  # study_result events, in order
    top_exp: int = 0
    starts: int = 0  # session_start events: 1 + resumes
    ended: bool = False
    end_reason: str = ""
    started: float = 0.0
    updated: float = 0.0
    _by_exp: dict[int, dict] = field(default_factory=dict)

    def values(self, kind: str, multiple: float | None = None,
               ablates: int | None = None) -> dict[int, float]:
        """seed -> val_bpb of the finished ok runs of this kind (and budget, or change)."""
        return {k[1]: end["val_bpb"] for k, end in self.done.items()
                if k[0] == kind and k[2] == (None if multiple is None else float(multiple))
                and k[3] == ablates and end.get("status") == schema.OK
                and isinstance(end.get("val_bpb"), (int, float))}

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.plan.get("seeds") or []]

    @property
    def multiples(self) -> list[float]:
        return [float(m) for m in self.plan.get("multiples") or []]

    @property
    def changes(self) -> list[dict]:
        return [c for c in self.plan.get("changes") or [] if isinstance(c, dict)]

    def pruned_commit(self) -> str:
        """The pruned stack's commit, as its first run recorded it ('' before it ran)."""
        return next((s.get("commit", "") for s in self._by_exp.values()
                     if s.get("kind") == schema.STUDY_PRUNED), "")


def fold(events: Iterable[dict]) -> StudyLog:
    log = StudyLog()
    for event in events:
        apply(log, event)
    return log


def apply(log: StudyLog, event: dict) -> None:
    kind = event.get("type")
    t = event.get("t")
    if isinstance(t, (int, float)):
        log.updated = float(t)
    exp = event.get("exp")
    if isinstance(exp, int):
        log.top_exp = max(log.top_exp, exp)
    if kind == schema.SESSION_START:
        log.starts += 1
        if not log.plan:
            log.plan, log.started = event, log.updated
            log.session = str(event.get("session", ""))
            log.study = str(event.get("study") or "")
        log.ended, log.end_reason = False, ""
    elif kind == schema.EXP_START and isinstance(exp, int):
        log.running[exp] = log._by_exp[exp] = event
    elif kind == schema.EXP_END and isinstance(exp, int):
        start = log.running.pop(exp, None) or log._by_exp.get(exp) or event
        found = key_of(start)
        if found is not None and event.get("status") not in UNFINISHED:
            log.done[found] = event
    elif kind == schema.STUDY_RESULT:
        log.results.append(event)
    elif kind == schema.SESSION_END:
        log.ended, log.end_reason = True, str(event.get("reason", ""))
        log.running.clear()


# --- readings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRow:
    """Validate at one budget: best - base on the same seeds."""

    multiple: float
    budget: float  # seconds
    base: dict[int, float]  # seed -> val_bpb
    best: dict[int, float]
    effect: st.Effect | None
    verdict: str | None
    trend: st.Trend | None  # over this budget and those before it

    def fields(self) -> dict:
        """The study_result event's fields for this row."""
        e = self.effect
        return {"study": schema.STUDY_VALIDATE, "multiple": self.multiple,
                "budget": self.budget, "effect": e.mean if e else None,
                "se": e.se if e else None, "runs": e.runs if e else 0,
                "diffs": list(e.diffs) if e else [], "verdict": self.verdict,
                "trend": None if self.trend is None else {
                    "slope": self.trend.slope, "se": self.trend.se,
                    "budgets": self.trend.budgets}}


def budget_rows(log: StudyLog) -> list[BudgetRow]:
    """Validate's effect at each planned budget, smallest first; the verdicts are against the
    smallest budget's effect (the reference, normally 1x)."""
    budget = float(log.plan.get("options", {}).get("budget") or 0.0)
    rows: list[BudgetRow] = []
    reference: st.Effect | None = None
    points: list[tuple[float, st.Effect]] = []
    for m in sorted(log.multiples):
        base, best = log.values(schema.STUDY_BASE, m), log.values(schema.STUDY_BEST, m)
        e = st.paired(base, best)
        if not rows:
            reference = e
        if e is not None:
            points.append((m, e))
        rows.append(BudgetRow(m, m * budget, base, best, e,
                              st.verdict(e, reference) if e is not None else None,
                              st.trend(points)))
    return rows


@dataclass(frozen=True)
class ChangeRow:
    """Ablate, one kept change: best - (best without it), on the same seeds."""

    exp: int
    commit: str
    description: str
    ablated: str  # the best without it ('' where its reverse does not apply)
    why: str  # why not
    values: dict[int, float]  # seed -> val_bpb of the best without it
    effect: st.Effect | None  # its contribution: negative where it helps
    flag: str | None

    def fields(self) -> dict:
        e = self.effect
        return {"study": schema.STUDY_ABLATE, "change": self.exp, "commit": self.commit,
                "description": self.description, "effect": e.mean if e else None,
                "se": e.se if e else None, "runs": e.runs if e else 0,
                "diffs": list(e.diffs) if e else [], "flag": self.flag,
                **({"why": self.why} if self.why else {})}


def change_rows(log: StudyLog) -> list[ChangeRow]:
    best = log.values(schema.STUDY_BEST)
    rows = []
    for change in log.changes:
        n = int(change.get("exp", 0))
        ablated = str(change.get("ablated") or "")
        values = log.values(schema.STUDY_ABLATED, ablates=n) if ablated else {}
        e = st.paired(values, best) if ablated else None
        flag = schema.NOT_APPLIED if not ablated else (st.flag(e) if e is not None else None)
        rows.append(ChangeRow(n, str(change.get("commit", "")),
                              str(change.get("description", "")), ablated,
                              str(change.get("why") or ""), values, e, flag))
    return rows


def to_prune(rows: list[ChangeRow]) -> list[ChangeRow]:
    """The changes that did not help (within noise or harmful), in stack order; None yet while
    a change has no flag (its runs are not all in)."""
    return [r for r in rows if r.flag in (schema.WITHIN_NOISE, schema.HARMFUL)]


def pruned_effect(log: StudyLog) -> st.Effect | None:
    """The pruned stack against the best (pruned - best): positive where it is worse."""
    return st.paired(log.values(schema.STUDY_BEST), log.values(schema.STUDY_PRUNED))


def result_of(log: StudyLog, **match) -> dict | None:
    """The latest study_result whose fields include `match` (e.g. multiple=2.0, change=7)."""
    for event in reversed(log.results):
        if all(event.get(k) == v for k, v in match.items()):
            return event
    return None
