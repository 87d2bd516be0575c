"""What a session's noise is and what effect it can detect: the statistics the keep rule
decides with, and a session's figures from its log alone.

The keep rules (engine/loop/rules/) judge with these; the status line, `ratchet status`
and `report` say them, so that a user can tell a kept change from luck and knows how small a
real gain can be and still be found.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ratchet.engine.protocol.state import LoopState

KEEP_Z = 1.2  # a gain of this many standard errors is kept (bench/keep_rules.py)
POWER_Z = 0.84  # an effect kept four times in five sits this far past the keep line
# Student's t against the normal at 97.5%, by degrees of freedom: a noise figure from few
# runs is uncertain, so the keep line moves out while the session has measured little.
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 10: 2.23,
         12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04, 60: 2.00}


def seed_margin(baseline: Sequence[float], min_improvement: float, noise_k: float) -> float:
    """A change must beat the best by more than this: seed noise or the configured minimum."""
    spread = statistics.stdev(baseline) if len(baseline) >= 2 else 0.0
    return max(min_improvement, noise_k * spread)


def paired_noise(baseline: Sequence[float], sequences: Sequence[Sequence[float]]
                 ) -> tuple[float, int]:
    """The noise of one paired difference and its degrees of freedom.

    Pooled from the spread of each finished candidate's differences around their own mean
    (its effect drops out), with the baseline's seed spread as a prior: until differences are
    measured, pairing is assumed to cancel nothing (a difference of two runs, sqrt 2 x spread).
    """
    squares, df = 0.0, 0
    if len(baseline) >= 2:
        df = len(baseline) - 1
        squares = df * 2 * statistics.variance(baseline)
    for diffs in sequences:
        if len(diffs) >= 2:
            mean = statistics.fmean(diffs)
            squares += sum((d - mean) ** 2 for d in diffs)
            df += len(diffs) - 1
    return ((squares / df) ** 0.5 if df else 0.0), df


def inflation(df: int) -> float:
    """How far the keep line moves out for a noise figure with `df` degrees of freedom."""
    if df <= 0:
        return 1.0  # no noise measured at all: the noise is taken as 0, and any gain counts
    known = [t for d, t in sorted(_T975.items()) if d <= df]
    return (known[-1] if known else _T975[1]) / 1.96


def detectable(sigma: float, df: int, runs: int) -> float:
    """The effect the paired rule keeps about four times in five, at this noise."""
    return (KEEP_Z * inflation(df) + POWER_Z) * sigma / runs ** 0.5


@dataclass(frozen=True)
class Noise:
    rule: str  # paired or margin
    spread: float | None  # one run's spread across the baseline's seeds (val_bpb)
    sigma: float | None  # paired: the noise of one paired difference; margin: the spread
    df: int  # the degrees of freedom behind sigma
    detectable: float | None  # paired: the gain kept about 4 times in 5; margin: its margin
    # the margin rule on one baseline run (a train.py that fixes its seed): never measured, and
    # a change must gain this much instead
    unmeasured: float | None = None

    def line(self) -> str:
        """One line: 'noise ±0.0123 (paired, 7 df), detects gains of 0.0250'."""
        if self.unmeasured is not None:
            return (f"noise: not measured (one baseline run); keeps gains above "
                    f"{self.unmeasured:.4f}")
        if self.sigma is None or self.detectable is None:
            return "noise: not measured yet (the baseline's seeds measure it)"
        return (f"noise ±{self.sigma:.4f} ({self.rule}, {self.df} df), detects gains of "
                f"{self.detectable:.4f}")


def of(state: LoopState) -> Noise:
    """The session's noise as its log says (the rule it ran with, from its session_start)."""
    config = state.config if isinstance(state.config, dict) else {}
    loop, ex = config.get("loop") or {}, config.get("experiment") or {}
    rule = loop.get("rule", "margin")  # a session from before the paired rule used the margin
    min_improvement = float(ex.get("min_improvement", 0.0) or 0.0)
    spread = statistics.stdev(state.baseline) if len(state.baseline) >= 2 else None
    if rule == "paired":
        if spread is None and not any(len(d) >= 2 for d in state.paired):
            return Noise(rule, None, None, 0, None)
        sigma, df = paired_noise(state.baseline, state.paired)
        runs = max(2, len(state.best_runs))
        return Noise(rule, spread, sigma, df,
                     max(min_improvement, detectable(sigma, df, runs)))
    if spread is None:
        one = int(loop.get("baseline_seeds", 0) or 0) == 1
        return Noise(rule, None, None, 0, None, min_improvement if one else None)
    return Noise(rule, spread, spread, len(state.baseline) - 1,
                 seed_margin(state.baseline, min_improvement, float(loop.get("noise_k", 2.0))))
