"""The search space: a fixed range per constant, derived once from its baseline value.

Distances between values are measured in normalised units (0..1 across the range, in log space
for log ranges) so a step means the same for a learning rate as for a layer count.
"""

from __future__ import annotations

import math

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from ratchet.engine.agents.offline.constants import Number

# Float constants whose name says they live in [0, 1] (WARMDOWN_RATIO, FINAL_LR_FRAC, betas):
# searched on a linear range inside it, because a log range around 0.9 would propose betas above
# 1 and one around 0.5 a warmdown longer than the run. A whole-number ratio (ASPECT_RATIO = 64)
# is no fraction.
FRACTION_HINTS = ("FRAC", "RATIO", "BETA", "DROPOUT", "MOMENTUM", "PROB")


def search_range(name: str, value: Number) -> BaseDistribution:
    """The fixed range searched for a constant, derived from its baseline value."""
    if isinstance(value, int):
        if value >= 1:
            return IntDistribution(max(1, value // 2), value * 2)
        if value == 0:
            return IntDistribution(0, 2)
        return IntDistribution(value * 2, value // 2)
    value = float(value)
    if any(hint in name for hint in FRACTION_HINTS) and 0.0 <= value <= 1.0:
        if value == 0.0:
            return FloatDistribution(0.0, 0.2)
        if value == 1.0:
            return FloatDistribution(0.5, 1.0)
        if value > 0.5:  # near one (betas, momentum): scale the distance to one instead
            return FloatDistribution(max(0.0, 1.0 - 4.0 * (1.0 - value)),
                                     1.0 - (1.0 - value) / 4.0)
        return FloatDistribution(value / 4.0, min(1.0, value * 4.0))
    if 0.0 < value < 1.0:  # most floats below one are shares of something: stay below one
        return FloatDistribution(value / 4.0, min(1.0, value * 4.0), log=True)
    if value > 0.0:
        return FloatDistribution(value / 4.0, value * 4.0, log=True)
    if value == 0.0:
        return FloatDistribution(0.0, 0.1)
    return FloatDistribution(value * 4.0, value / 4.0)


def unit(dist: BaseDistribution, value: float) -> float:
    """Position of a value in its range, 0..1 (outside that when the value is out of range)."""
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    low, high = float(dist.low), float(dist.high)
    if high == low:
        return 0.0
    if dist.log and value > 0:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def from_unit(dist: BaseDistribution, u: float) -> float:
    """The value at position u of the range; the inverse of `unit`."""
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    low, high = float(dist.low), float(dist.high)
    if dist.log:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def contains(dist: BaseDistribution, value: Number) -> bool:
    """Whether the study can record this value under the range (type and bounds)."""
    if isinstance(dist, IntDistribution):
        return isinstance(value, int) and dist.low <= value <= dist.high
    assert isinstance(dist, FloatDistribution)
    return isinstance(value, float) and dist.low <= value <= dist.high


def as_type(value: float, dist: BaseDistribution) -> Number:
    """A sampled value as the constant's type: whole for int ranges, rounded for float ones."""
    return int(value) if isinstance(dist, IntDistribution) else round_value(value, dist)


def round_value(value: float, dist: BaseDistribution) -> float:
    """4 significant digits (6 when 4 would leave the range, so the study can record it)."""
    assert isinstance(dist, FloatDistribution)
    rounded = float(f"{value:.4g}")
    return rounded if dist.low <= rounded <= dist.high else float(f"{value:.6g}")
