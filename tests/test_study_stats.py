"""The statistics of validate and ablate (engine/protocol/study_stats.py), on numbers whose
answers are known."""

from __future__ import annotations

import math

import pytest

from ratchet.engine.protocol import schema
from ratchet.engine.protocol import study_stats as st


def test_effect_is_the_mean_paired_difference_with_its_standard_error():
    e = st.effect([-0.10, -0.12, -0.08, -0.10])
    assert e.mean == pytest.approx(-0.10)
    assert e.se == pytest.approx(math.sqrt(((0.0 + 0.0004 + 0.0004 + 0.0) / 3) / 4))
    assert e.runs == 4
    assert e.half_width == pytest.approx(3.182 * e.se)
    assert st.effect([]) is None
    one = st.effect([-0.5])
    assert one.se is None and one.half_width is None
    assert not one.below_zero() and not one.above_zero()


def test_paired_uses_only_the_seeds_both_ran_in_seed_order():
    base = {3: 1.0, 1: 2.0, 2: 3.0}
    best = {1: 1.5, 3: 0.25, 7: 9.0}  # seed 2 crashed for best, seed 7 never ran for base
    e = st.paired(base, best)
    assert e.diffs == (-0.5, -0.75)
    assert st.paired({1: 1.0}, {2: 1.0}) is None


def test_t975_is_wider_with_fewer_degrees_of_freedom():
    assert st.t975(1) == pytest.approx(12.706)
    assert st.t975(3) == pytest.approx(3.182)
    assert st.t975(11) == st.t975(10)  # between entries: the lower df's, a wider interval
    assert st.t975(10_000) == 1.96
    with pytest.raises(ValueError):
        st.t975(0)


def test_verdicts():
    ref = st.effect([-0.10, -0.11, -0.09, -0.10])
    assert st.verdict(ref) == schema.HOLDS  # against zero at the reference itself
    assert st.verdict(ref, ref) == schema.HOLDS
    same = st.effect([-0.10, -0.095, -0.105, -0.10])
    assert st.verdict(same, ref) == schema.HOLDS
    larger = st.effect([-0.20, -0.21, -0.19, -0.20])
    assert st.verdict(larger, ref) == schema.HOLDS  # grows: still holds
    smaller = st.effect([-0.04, -0.05, -0.03, -0.04])
    assert st.verdict(smaller, ref) == schema.SHRINKS
    gone = st.effect([0.01, -0.01, 0.005, -0.004])
    assert st.verdict(gone, ref) == schema.VANISHES
    exactly_zero = st.effect([0.0, 0.0, 0.0])
    assert st.verdict(exactly_zero, ref) == schema.VANISHES
    reversed_ = st.effect([0.05, 0.06, 0.04, 0.05])
    assert st.verdict(reversed_, ref) == schema.REVERSES
    assert st.verdict(st.effect([-0.3]), ref) is None  # one pair: no verdict
    # a noisy smaller effect that is not significantly smaller than the reference holds
    noisy = st.effect([-0.04, -0.10, -0.06, -0.08])
    assert noisy.below_zero()
    assert st.verdict(noisy, ref) == schema.HOLDS


def test_trend_is_the_slope_per_doubling():
    points = [(1.0, st.effect([-0.10, -0.10])), (2.0, st.effect([-0.06, -0.06])),
              (4.0, st.effect([-0.02, -0.02]))]
    trend = st.trend(points)
    assert trend.slope == pytest.approx(0.04)
    assert trend.se == 0.0 and trend.budgets == 3
    # standard errors propagate: two budgets one doubling apart, se 0.01 each
    two = st.trend([(1.0, st.Effect(-0.1, 0.01, (-0.1,) * 4)),
                    (2.0, st.Effect(-0.1, 0.01, (-0.1,) * 4))])
    assert two.slope == pytest.approx(0.0)
    assert two.se == pytest.approx(math.sqrt(2) * 0.01)
    assert st.trend(points[:1]) is None
    assert st.trend([(1.0, st.effect([-0.1])), (2.0, st.effect([-0.1]))]).se is None
    assert "per doubling" in trend.text()


def test_flags_of_contributions():
    assert st.flag(st.effect([-0.1, -0.12, -0.09])) == schema.HELPS
    assert st.flag(st.effect([0.0, 0.0])) == schema.WITHIN_NOISE
    assert st.flag(st.effect([0.01, -0.01, 0.0])) == schema.WITHIN_NOISE
    assert st.flag(st.effect([0.1, 0.12, 0.09])) == schema.HARMFUL
    assert st.flag(st.effect([0.1])) is None


def test_no_worse():
    assert st.no_worse(st.effect([0.0, 0.0]), tolerance=0.001)
    assert st.no_worse(st.effect([-0.01, -0.02]), tolerance=0.001)
    assert not st.no_worse(st.effect([0.1, 0.12, 0.11]), tolerance=0.001)  # worse
    # not significantly worse, but worse on average by more than the tolerance
    assert not st.no_worse(st.effect([0.01, -0.005, 0.02]), tolerance=0.001)
    assert not st.no_worse(st.effect([0.0]), tolerance=0.001)  # one pair proves nothing


def test_effect_text():
    assert st.effect([-0.1, -0.1]).text() == "-0.1000 ± 0.0000"
    assert st.effect([-0.1]).text() == "-0.1000 (1 pair)"
