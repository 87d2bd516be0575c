"""Which seed a candidate's next run uses and what its runs so far say, under the paired rule.

A candidate's k-th run uses the k-th seed the best was measured with, and is compared with the
best's run on that seed (`keep_rule.judge_paired` reads the differences). The best's seeds are
the baseline's, then each kept candidate's own runs (`LoopState.best_runs`). A seed the best
lacks (a baseline seed that crashed) is compared with the best's mean instead.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ratchet.engine.loop import keep_rule
from ratchet.engine.protocol.state import LoopState


@dataclass
class Runs:
    """A candidate's paired runs on the current best: seed -> val_bpb, and the differences."""

    vals: dict[int, float] = field(default_factory=dict)
    diffs: list[float] = field(default_factory=list)

    def clear(self) -> None:
        """The best moved under it: runs on another best no longer count."""
        self.vals, self.diffs = {}, []

    def mean(self) -> float:
        return statistics.fmean(self.vals.values())


def seeds(state: LoopState, first: int) -> list[int]:
    """The best's seeds in the order candidates run them (`first`, the config's seed, alone
    where nothing is measured yet)."""
    return sorted(state.best_runs) or [first]


def seed_for(state: LoopState, first: int, index: int) -> int:
    """The seed of a candidate's run number `index` (from 0)."""
    known = seeds(state, first)
    return known[index] if index < len(known) else first + index


def judge(state: LoopState, runs: Runs, seed: int, val: float, noise: tuple[float, int],
          min_improvement: float, first: int) -> keep_rule.Reading:
    """Add a run to the candidate's runs and read them: keep, discard, near miss or another."""
    reference = state.best_runs.get(seed, state.best_bpb)
    runs.vals[seed] = val
    runs.diffs.append(val - reference)
    sigma, df = noise
    n = len(seeds(state, first))
    return keep_rule.judge_paired(runs.diffs, sigma, df, keep_runs=n, cap=max(2, n),
                                  min_improvement=min_improvement)


def record(reading: keep_rule.Reading | None, runs: Runs, state: LoopState) -> dict:
    """The exp_end's `paired` field: the reading, the differences and, on a keep, the new
    best's reference on each seed (`references`)."""
    data = reading.to_json() if reading is not None else {}
    data["diffs"] = [round(d, 6) for d in runs.diffs]
    if reading is not None and reading.decision == keep_rule.KEEP:
        data["seeds"] = references(state.best_runs, runs)
    return data


def references(best: dict[int, float], runs: Runs) -> dict[str, float]:
    """The new best's value on each seed, for the comparisons to come.

    A kept candidate's own runs were kept because they came out low: used alone, their luck
    would be every later candidate's handicap. Each seed's value is the mean of two estimates
    of the new best there: the candidate's run, and the old best's run plus the measured
    effect (bench/keep_rules.py measures what this buys).
    """
    effect = statistics.fmean(runs.diffs)
    return {str(s): (v + best[s] + effect) / 2 if s in best else v
            for s, v in sorted(runs.vals.items())}
