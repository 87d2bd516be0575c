"""The paired rule: every run of a candidate against the best's run on the same seed.

A candidate's run k uses the k-th seed the best was measured with (the baseline's seeds, or the
kept candidate's), so the seed's own luck (initialisation, data order) is the same on both sides
and cancels in the difference. The rule reads the mean of those differences against its standard
error, from a noise figure pooled over the whole session (`noise.paired_noise`), and spends runs
only where the verdict is open: one run for a change that looks no better, the best's every seed
for a keep (so the next comparison has them all), more runs up to the cap for a close call. A
seed the best lacks (a baseline seed that crashed) is compared with the best's mean instead.
bench/keep_rules.py measures its false-keep rate and power against the margin rule and
autoresearch's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from ratchet.engine.loop.rules.base import (
    FRONT,
    MAX_CONFIRM_ROUNDS,
    Finished,
    Rule,
    Ruling,
    Tally,
    no_verdict,
)
from ratchet.engine.protocol import schema
from ratchet.engine.protocol.noise import KEEP_Z, inflation, paired_noise
from ratchet.engine.protocol.schema import ANOTHER_RUN, DISCARD, KEEP, NEAR_MISS
from ratchet.engine.protocol.state import LoopState

CONTINUE_Z = 0.0  # after one run, another only where the change looks better at all
FUTILE_Z = 0.5  # from two runs on, a gain under this many standard errors is given up
# KEEP_Z (the keep line) and the noise statistics are the protocol's (engine/protocol/noise.py):
# the views say what the session can detect with the same figures.


@dataclass(frozen=True)
class Reading:
    """The paired rule's reading of a candidate's runs so far."""

    decision: str  # KEEP, DISCARD, NEAR_MISS or ANOTHER_RUN
    effect: float  # mean of candidate - best over the same seeds (negative: better)
    se: float  # its standard error
    sigma: float  # noise of one paired difference, as the session measured it
    runs: int
    why: str

    def to_json(self) -> dict:
        return {"effect": round(self.effect, 6), "se": round(self.se, 6),
                "sigma": round(self.sigma, 6), "runs": self.runs, "why": self.why}


def judge_paired(diffs: Sequence[float], sigma: float, df: int, *, keep_runs: int, cap: int,
                 min_improvement: float) -> Reading:
    """What the runs so far say: keep (a gain past the keep line, over `keep_runs` runs at
    least: every seed the best has), discard or near miss (no gain, or the cap reached), or
    another run. `diffs` are candidate - best, one per seed, in order."""
    n = len(diffs)
    effect = statistics.fmean(diffs)
    se = sigma / n ** 0.5
    z = effect / se if se > 0 else (-math.inf if effect < 0 else math.inf if effect > 0 else 0.0)
    keep_z = KEEP_Z * inflation(df)
    said = f"{n} run{'s' * (n > 1)}: effect {effect:+.4f} ± {se:.4f} (z {z:+.1f})"

    def reading(decision: str, why: str) -> Reading:
        return Reading(decision, effect, se, sigma, n, f"{said}; {why}")

    if n == 1 and z >= -CONTINUE_Z:
        return reading(DISCARD, "no better on the first seed")
    if n >= 2 and z <= -keep_z and -effect > min_improvement:
        if n >= keep_runs:
            return reading(KEEP, f"past the keep line (z {-keep_z:.1f})")
        return reading(ANOTHER_RUN, "a win, measured on the best's every seed before it is kept")
    if n >= 2 and z > -FUTILE_Z:
        return reading(NEAR_MISS if effect < 0 else DISCARD, "too little gain to go on")
    if n >= cap:
        return reading(NEAR_MISS if effect < 0 else DISCARD, f"not past the keep line in {cap} "
                       f"runs (z {-keep_z:.1f})")
    return reading(ANOTHER_RUN, "a close call: one more seed")


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


def record(reading: Reading | None, runs: Runs, state: LoopState) -> dict:
    """The exp_end's `paired` field: the reading, the differences and, on a keep, the new
    best's reference on each seed (`seeds`)."""
    data = reading.to_json() if reading is not None else {}
    data["diffs"] = [round(d, 6) for d in runs.diffs]
    if reading is not None and reading.decision == KEEP:
        data["seeds"] = references(state.best_runs, runs)
    return data


@dataclass
class PairedTally(Tally):
    runs: Runs = field(default_factory=Runs)
    moves: int = 0  # times the best moved under its further runs


class PairedRule(Rule):
    name = "paired"
    stops_early = True

    def tally(self) -> PairedTally:
        return PairedTally()

    def first_seed(self, state: LoopState) -> int:
        return seed_for(state, self.settings.seed, 0)

    def next_seed(self, tally: PairedTally, exp: int, moved: bool, state: LoopState) -> int:
        if moved:
            tally.runs.clear()  # only runs on the current best count
        tally.rounds += 1
        return seed_for(state, self.settings.seed, len(tally.runs.diffs))

    def judge(self, run: Finished, tally: PairedTally, state: LoopState) -> Ruling:
        """A candidate's run or one of its further runs: judged on all of its runs so far."""
        first = run.kind == schema.CANDIDATE
        if first:
            tally.runs.clear()
        if not first and run.val_bpb is not None and run.moved and not run.stopping \
                and tally.moves < MAX_CONFIRM_ROUNDS:
            tally.moves += 1  # its runs measured code that is not on the best: again, rebased
            return Ruling(schema.CONFIRM_AGAIN, again=FRONT)
        shared = no_verdict(run, state)
        if shared is not None:
            return Ruling(shared.decision, {"paired": record(None, tally.runs, state)})
        if run.moved and not first:
            return Ruling(DISCARD, {"paired": record(None, tally.runs, state)})
        reading = self._read(tally.runs, run.seed, run.val_bpb, state)
        decision = reading.decision
        if first and decision == ANOTHER_RUN:
            decision = schema.PENDING_CONFIRM  # a candidate awaiting its further runs
        fields = {"paired": record(reading, tally.runs, state)}
        if decision == KEEP:
            fields["new_best"] = tally.runs.mean()
        if decision in (schema.PENDING_CONFIRM, ANOTHER_RUN):
            if first and run.moved:
                tally.runs.clear()  # it ran on an older best: rebased, it runs again
            return Ruling(decision, fields, again=FRONT)
        return Ruling(decision, fields)

    def _read(self, runs: Runs, seed: int, val: float, state: LoopState) -> Reading:
        """Add a run to the candidate's runs and read them."""
        runs.vals[seed] = val
        runs.diffs.append(val - state.best_runs.get(seed, state.best_bpb))
        sigma, df = paired_noise(state.baseline, state.paired)
        n = len(seeds(state, self.settings.seed))
        return judge_paired(runs.diffs, sigma, df, keep_runs=n, cap=max(2, n),
                            min_improvement=self.settings.min_improvement)
