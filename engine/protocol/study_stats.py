"""The statistics of a study (`ratchet validate`, `ratchet ablate`): paired effects, the verdict
on an effect at a longer budget, its trend with the budget, and each kept change's contribution.

Pure: the standard library and the protocol's vocabulary only, so `report` and any reader of a
study's log compute exactly what the study recorded.

Signs follow val_bpb (lower is better): an effect is a difference of val_bpb, and a negative
effect is a gain.

**Pairs.** Two commits measured on the same seeds give one difference per seed that both ran
ok; the seed's own luck (initialisation, data order) cancels in it. The effect is the mean of
the differences, its standard error their standard deviation over sqrt(n); with one pair there
is no standard error and nothing is significant.

**Significance.** An effect e with standard error s from n pairs is significant when the
two-sided 95% interval e ± t·s leaves out zero, t being Student's t at 97.5% with n - 1 degrees
of freedom (`t975`): few seeds widen the interval, as they should. A standard error of exactly
zero (every pair differs by the same amount) makes any non-zero effect significant.

**Verdicts** (`verdict`, validate). At a budget with effect e (standard error s), against the
reference budget's effect e0 (s0; the smallest budget studied, normally 1x):

- `reverses`: e - t·s > 0, the change now significantly hurts;
- `vanishes`: |e| <= t·s, within noise of zero;
- `shrinks`: e + t·s < 0, still a significant gain, and e - e0 > t'·sqrt(s² + s0²), significantly
  smaller than at the reference (t' with the fewer of the two degrees of freedom; the runs at two
  budgets are taken as independent, which is conservative where a seed's luck carries over);
- `holds`: a significant gain not significantly smaller than at the reference (about as large,
  or larger).

At the reference budget itself the verdict is against zero only (holds, vanishes or reverses).

**Trend** (`trend`): the ordinary least-squares slope of the effect against log2 of the budget
multiple, i.e. the change of the effect per doubling of the budget, with its standard error
propagated from each budget's (the budgets' runs are independent). A positive slope is a gain
that fades with longer training.

**Contributions** (`flag`, ablate): a kept change's contribution in the final stack is the
effect of the best against the best without that change (best - ablated, same seeds): negative
where the change helps. `helps` when significantly negative, `harmful` when significantly
positive, `within_noise` otherwise.

**Pruning** (`no_worse`): the stack without the changes that did not help is no worse than the
best when its effect (pruned - best) is not significantly positive and is at most `tolerance`
(the session's min_improvement: the smallest gain its loop treats as real).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ratchet.engine.protocol import schema

# Student's t at 97.5% by degrees of freedom; between entries the lower one's (a wider interval)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021,
         60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    """Student's t at 97.5% with `df` degrees of freedom (df >= 1); 1.96 past the table."""
    if df < 1:
        raise ValueError("no degrees of freedom")
    known = [t for d, t in sorted(_T975.items()) if d <= df]
    return known[-1] if df <= max(_T975) else 1.96


@dataclass(frozen=True)
class Effect:
    """A paired effect: the mean of `diffs`, and its standard error (None under 2 pairs)."""

    mean: float
    se: float | None
    diffs: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.diffs)

    @property
    def half_width(self) -> float | None:
        """Half the 95% interval: t·se (None without a standard error)."""
        return None if self.se is None else t975(self.runs - 1) * self.se

    def below_zero(self) -> bool:
        """Significantly negative: a gain."""
        return self.half_width is not None and self.mean + self.half_width < 0

    def above_zero(self) -> bool:
        """Significantly positive: a loss."""
        return self.half_width is not None and self.mean - self.half_width > 0

    def text(self) -> str:
        """'-0.0123 ± 0.0031' (the standard error), or '-0.0123 (1 pair)'."""
        if self.se is None:
            return f"{self.mean:+.4f} ({self.runs} pair{'s' * (self.runs != 1)})"
        return f"{self.mean:+.4f} ± {self.se:.4f}"


def effect(diffs: Sequence[float]) -> Effect | None:
    """The effect of these paired differences (None when there are none)."""
    diffs = tuple(float(d) for d in diffs)
    if not diffs:
        return None
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) >= 2 else None
    return Effect(statistics.fmean(diffs), se, diffs)


def paired(first: Mapping[int, float], second: Mapping[int, float]) -> Effect | None:
    """The effect of `second` against `first` (second - first) over the seeds both measured,
    in seed order; None when they share no seed."""
    return effect([second[s] - first[s] for s in sorted(set(first) & set(second))])


def verdict(at: Effect, reference: Effect | None = None) -> str | None:
    """holds, shrinks, vanishes or reverses (module docstring); None without a standard error.
    `reference`: the effect at the reference budget (None, or `at` itself: against zero)."""
    if at.half_width is None:
        return None
    if at.above_zero():
        return schema.REVERSES
    if not at.below_zero():
        return schema.VANISHES
    if reference is None or reference is at or reference.se is None:
        return schema.HOLDS
    df = min(at.runs, reference.runs) - 1
    if at.mean - reference.mean > t975(df) * math.hypot(at.se, reference.se):
        return schema.SHRINKS
    return schema.HOLDS


@dataclass(frozen=True)
class Trend:
    slope: float  # the effect's change per doubling of the budget (val_bpb)
    se: float | None  # None where a budget's effect has no standard error
    budgets: int  # budgets it is fitted on

    def text(self) -> str:
        spread = f" ± {self.se:.4f}" if self.se is not None else ""
        return f"{self.slope:+.4f}{spread} per doubling of the budget ({self.budgets} budgets)"


def trend(points: Sequence[tuple[float, Effect]]) -> Trend | None:
    """The least-squares slope of the effect against log2(multiple), over (multiple, effect)
    points; None under two distinct budgets."""
    xs = [math.log2(m) for m, _ in points]
    if len(set(xs)) < 2:
        return None
    mean_x = statistics.fmean(xs)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * e.mean for x, (_, e) in zip(xs, points, strict=True)) / sxx
    ses = [e.se for _, e in points]
    se = None if any(s is None for s in ses) else math.sqrt(
        sum((x - mean_x) ** 2 * s ** 2 for x, s in zip(xs, ses, strict=True))) / sxx
    return Trend(slope, se, len(points))


def flag(contribution: Effect) -> str | None:
    """helps, within_noise or harmful (module docstring); None without a standard error."""
    if contribution.half_width is None:
        return None
    if contribution.below_zero():
        return schema.HELPS
    return schema.HARMFUL if contribution.above_zero() else schema.WITHIN_NOISE


def no_worse(pruned: Effect, tolerance: float) -> bool:
    """Whether a pruned stack (its effect: pruned - best) is no worse than the best."""
    return pruned.half_width is not None and not pruned.above_zero() \
        and pruned.mean <= tolerance
