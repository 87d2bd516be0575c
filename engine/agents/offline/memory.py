"""What the agent learns from outcomes: the study's trials, crashes to avoid, sensitive constants.

The study learns from the configuration actually tried, not the point TPE asked for. Crashes and
timeouts are recorded with a penalty so TPE steers away from them, and values at or past one
that crashed are not proposed again until a finished run shows that side works. The run's
diagnostics say why (out of memory, over time), and a discarded run that trained far fewer
steps than the best run marks the values beyond it as too slow to try.
"""

from __future__ import annotations

import optuna
from optuna.distributions import BaseDistribution

from ratchet.engine.agents.base import Context, HistoryEntry
from ratchet.engine.agents.offline.changes import entry_change, old_value
from ratchet.engine.agents.offline.constants import Number
from ratchet.engine.agents.offline.ranges import contains
from ratchet.engine.protocol import schema

CRASH_PENALTY = 0.5  # a crash scores this much worse than the worst result seen
# statuses that are the candidate's own doing (a kill on request or a lost worker is not)
OWN_FAILURES = (schema.CRASHED, schema.TIMEOUT, schema.OVER_BUDGET, schema.OVER_LIMIT)
NO_RESULT_PENALTY = 10.0  # crash score when nothing has finished yet (val_bpb of bytes is < 8)
SLOW_FRACTION = 0.5  # a discarded run with fewer steps than this share of the best run's

Values = dict[str, Number]


class Memory:
    """Outcomes learned so far, each entry once, whether reported or read from the history."""

    def __init__(self, study: optuna.Study, ranges: dict[str, BaseDistribution]) -> None:
        self.study = study
        self.ranges = ranges  # shared with the agent, which adds each constant when first seen
        self.baseline: Values | None = None  # the first file's constants, once one is seen
        self.deltas: dict[str, list[float]] = {}  # each finished change's delta, in order
        self.crashes: list[tuple[str, float, float]] = []  # (constant, from, to) that crashed
        self.slow: list[tuple[str, float, float]] = []  # (constant, from, to) that ran slow
        self.reasons: dict[tuple[str, float], str] = {}  # (constant, to) -> why it is avoided
        self.best_steps = 0  # steps of the best run (its diagnostics), 0 while unknown
        self._worst: float | None = None
        self._worked: dict[str, set[float]] = {}  # values seen in runs that finished
        # (n, description) of entries already learned from; n alone can repeat (a proposal the
        # loop rejects is reported under the number the next experiment then uses)
        self._seen: set[tuple[int, str]] = set()
        self._pending: list[tuple[HistoryEntry, Values | None]] = []

    def first_sight(self, entry: HistoryEntry) -> bool:
        """Mark the entry seen; False when it was already learned from."""
        key = (entry.n, entry.description)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def observe(self, entry: HistoryEntry, config: Values | None) -> None:
        if self.baseline is None:  # reported before the first proposal: no file seen yet
            self._pending.append((entry, config))
            return
        self._learn(entry, config)

    def learn_earlier(self, entry: HistoryEntry, config: Values) -> bool:
        """An earlier session's run with the configuration it ran, learned as this session's
        own (never marked seen: its number is another session's); False when a constant the
        study searches lies outside its range there, so the run is not learned."""
        if any(n in self.ranges and not contains(self.ranges[n], v) for n, v in config.items()):
            return False
        self._learn(entry, config)
        return True

    def catch_up(self, context: Context, config: Values) -> None:
        """Learn what was reported before the first proposal, then the history not reported."""
        steps = context.best_result.get("steps")
        self.best_steps = steps if isinstance(steps, int) and steps > 0 else self.best_steps
        self._flush_pending(context)
        self._import_history(context, config)

    def crash_limit(self, name: str, value: Number) -> float | None:
        """The crashed value this one is at or beyond (moving the same way), unless a finished
        run has shown that side works after all; crashes rarely come back from going further."""
        for crashed, start, to in self.crashes:
            way = 1.0 if to > start else -1.0
            if crashed != name or (float(value) - to) * way < 0:
                continue
            if not any((v - to) * way >= 0 for v in self._worked.get(name, ())):
                return to
        for slow, start, to in self.slow:  # strictly beyond: the slow value itself ran
            way = 1.0 if to > start else -1.0
            if slow == name and (float(value) - to) * way > 0:
                return to
        return None

    def avoided(self) -> list[tuple[str, float, str, str]]:
        """(constant, value, ">=" / "<=" / ">" / "<", why) of each limit still in force."""
        crashed = {(n, to, ">=" if to > start else "<=", self.reasons.get((n, to), "crashed"))
                   for n, start, to in self.crashes if self.crash_limit(n, to) is not None}
        slow = {(n, to, ">" if to > start else "<", self.reasons.get((n, to), "slow"))
                for n, start, to in self.slow}
        return sorted(crashed | slow)

    def _flush_pending(self, context: Context) -> None:
        """Entries the context's history also holds are left to _import_history, which can
        rebuild the configuration they ran (on a resume, the first file seen is the current
        best, not the baseline)."""
        in_history = {(e.n, e.description) for e in context.history}
        pending, self._pending = self._pending, []
        for entry, config in pending:
            if (entry.n, entry.description) in in_history:
                self._seen.discard((entry.n, entry.description))
            else:
                self._learn(entry, config)

    def _learn(self, entry: HistoryEntry, config: Values | None) -> None:
        if entry.decision == schema.BASELINE and config is None:
            config = self.baseline
        if config is None:
            return
        value = self._score(entry)
        if value is None:
            return
        params = {n: v for n, v in config.items()
                  if n in self.ranges and contains(self.ranges[n], v)}
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions={n: self.ranges[n] for n in params}, value=value,
            user_attrs={"status": entry.status, "n": entry.n},
        ))
        change = entry_change(entry)
        old = old_value(entry.description) if change else None
        moved = change is not None and old is not None and old != change[1] \
            and entry.decision != schema.BASELINE
        if entry.status == schema.OK and entry.val_bpb is not None:
            for n, v in config.items():
                self._worked.setdefault(n, set()).add(float(v))
            slow = self._slowness(entry)
            if moved and slow:
                self.slow.append((change[0], float(old), float(change[1])))
                self.reasons[(change[0], float(change[1]))] = slow
        elif moved and entry.status != schema.STOPPED_EARLY:  # a loser, not a crash
            self.crashes.append((change[0], float(old), float(change[1])))
            self.reasons[(change[0], float(change[1]))] = failure_reason(entry)
        if entry.decision != schema.BASELINE and change and entry.delta is not None:
            name = change[0]
            self.deltas.setdefault(name, []).append(entry.delta)

    def _slowness(self, entry: HistoryEntry) -> str:
        """Why a finished, discarded run counts as too slow to push further, or ''."""
        steps = entry.result.get("steps")
        if entry.decision == "keep" or not isinstance(steps, int) or not self.best_steps:
            return ""
        if steps >= SLOW_FRACTION * self.best_steps:
            return ""
        return f"slow: {steps} steps against the best run's {self.best_steps}"

    def _score(self, entry: HistoryEntry) -> float | None:
        """What the study records: val_bpb, a penalty for crashes, the worst so far for a run
        stopped early (a clear loser), nothing for killed runs."""
        if entry.status == schema.OK and entry.val_bpb is not None:
            self._worst = max(self._worst or entry.val_bpb, entry.val_bpb)
            return entry.val_bpb
        if entry.status == schema.STOPPED_EARLY:
            return self._worst
        if entry.status in OWN_FAILURES or entry.decision == schema.CRASH:
            if self._worst is None:
                return NO_RESULT_PENALTY
            return self._worst + CRASH_PENALTY
        return None  # killed or interrupted: the configuration itself told us nothing

    def _import_history(self, context: Context, config: Values) -> None:
        """Learn from finished experiments the loop did not report through observe (a resume).

        Each entry's configuration is the best at its time plus its change; the best at each
        time comes from undoing the kept changes ("NAME old -> new") backwards from the file.
        """
        if all((e.n, e.description) in self._seen for e in context.history):
            return
        base: Values | None = dict(config)
        for entry in reversed(context.history):
            if entry.decision != "keep" or base is None:
                continue
            change, old = entry_change(entry), old_value(entry.description)
            base = None if change is None or old is None else {**base, change[0]: old}
        last_keep = max((i for i, e in enumerate(context.history) if e.decision == "keep"),
                        default=-1)
        if base is None:  # a kept change we cannot undo: trust only what came after it
            history = context.history[last_keep + 1:]
            best: Values = dict(config)
        else:
            history, best = context.history, base
        for entry in history:
            change = entry_change(entry)
            if (entry.n, entry.description) not in self._seen:
                self._seen.add((entry.n, entry.description))
                if entry.decision == schema.BASELINE:
                    self._learn(entry, dict(best))
                elif change:
                    self._learn(entry, {**best, change[0]: change[1]})
            if entry.decision == "keep" and change:
                best = {**best, change[0]: change[1]}
        for entry in context.history:
            self._seen.add((entry.n, entry.description))


def failure_reason(entry: HistoryEntry) -> str:
    """What a failed run's diagnostics say it ran out of: memory, time, or neither."""
    error = str(entry.result.get("error") or "").lower()
    if entry.status == schema.OVER_LIMIT or "out of memory" in error or "oom" in error.split():
        return "out of memory"
    if entry.status in (schema.TIMEOUT, schema.OVER_BUDGET):
        return "over time"
    return "crashed"
