"""Early stopping's judgement from curves alone: the loss at a fraction, the thresholds from
finished runs, and a best that lies about its curve cannot make honest candidates look bad."""

from __future__ import annotations

import math

import pytest

from ratchet.engine.loop.rules import early_stop as es

BUDGET = 20.0


def honest(level: float, seconds: float = BUDGET, wiggle: float = 0.0) -> list[tuple[float, float]]:
    """A decaying training loss logged every 0.25 s, ending near `level`."""
    return [(t / 4, level + 1.5 * math.exp(-t / 4 / 5) + wiggle * (-1) ** t)
            for t in range(1, int(seconds * 4) + 1)]


def test_the_loss_at_a_fraction_is_the_window_s_mean():
    curve = [(9.0, 2.0), (10.0, 3.0), (11.0, 4.0), (15.0, 9.0)]
    assert es.loss_at(curve, 0.5, BUDGET) == pytest.approx(3.0)
    assert es.loss_at(curve, 0.25, BUDGET) is None  # nothing logged there
    assert es.loss_at([(10.0, 2.0)], 0.5, BUDGET) is None  # one batch is too noisy to judge
    assert es.loss_at(honest(2.0, wiggle=0.3), 0.5, BUDGET) == pytest.approx(
        es.loss_at(honest(2.0), 0.5, BUDGET), abs=0.05)


def test_a_run_is_stopped_at_the_first_checkpoint_past_its_threshold():
    thresholds = {0.25: 0.2, 0.5: 0.1, 0.75: 0.05}
    assert es.judge({0.25: 0.1, 0.5: 0.15, 0.75: 0.3}, thresholds) == es.Stop(0.5, 0.15, 0.1)
    assert es.judge({0.25: 0.1, 0.5: 0.05}, thresholds) is None
    # a checkpoint without a threshold is not judged, however far behind the run is there
    assert es.judge({0.125: 0.9, 0.25: 0.1}, thresholds) is None


def test_thresholds_spare_every_run_that_went_on_to_win():
    prior = {0.25: 0.05, 0.5: 0.05}
    finished = [({0.25: 0.3, 0.5: 0.02}, -0.01),  # trailed early, won in the end
                ({0.25: 0.9, 0.5: 0.8}, +0.5),  # a loser all along: says nothing of winners
                ({0.25: 0.1, 0.5: 0.12}, -0.2)]
    thresholds = es.calibrate(finished, prior, margin=0.02)
    assert thresholds == {0.25: pytest.approx(0.32), 0.5: pytest.approx(0.14)}
    for gaps, final in finished:
        if final < 0:
            assert es.judge(gaps, thresholds) is None
    assert es.calibrate([], prior) == prior
    # a checkpoint the prior does not judge gets no threshold, whatever the runs recorded
    assert set(es.calibrate([({0.125: 0.4, 0.25: 0.1}, -0.1)], prior)) == set(prior)


def test_each_kind_of_change_is_calibrated_from_its_own_kind():
    # a schedule change that trailed by 0.3 early and won must not loosen the rule for a change
    # to the model, and the other way round; a run recorded before kinds were counts for both
    won_late = ({0.25: 0.3}, -0.05, True)
    won_model = ({0.25: 0.12}, -0.05, False)
    old = ({0.25: 0.08}, -0.01, None)
    finished = [won_late, won_model, old]
    assert es.samples_for(finished, False) == [won_model[:2], old[:2]]
    assert es.samples_for(finished, True) == [won_late[:2], old[:2]]
    other = es.calibrate(es.samples_for(finished, False), es.prior_for(False))
    assert other[0.25] == pytest.approx(0.14)
    assert es.judge({0.25: 0.2}, other) == es.Stop(0.25, 0.2, pytest.approx(0.14))


def test_a_best_that_reported_a_falsely_low_curve_stops_no_honest_candidate():
    baseline = es.Baseline.of({1: {"profile": es.profile(honest(2.0), BUDGET), "val": 2.2},
                               2: {"profile": es.profile(honest(2.05), BUDGET), "val": 2.25}})
    assert baseline is not None and min(baseline.ratios.values()) > 0
    thresholds = {0.25: 0.05, 0.5: 0.05, 0.75: 0.05}
    # the kept change is as good as its harness measured (1.9 -> val 2.09), but it reported a
    # curve half a nat lower at every step
    truth, lie, val = honest(1.9), [(t, loss - 0.5) for t, loss in honest(1.9)], 2.09
    candidate = es.at_checkpoints(honest(1.9), BUDGET)  # the same code again, honestly
    lied = es.profile(lie, BUDGET)  # what its exp_end recorded
    raw = es.gaps(candidate, es.checkpoints_of(lied))
    assert es.judge(raw, thresholds) is not None  # taken at its word, the lie stops it
    bounded = es.gaps(candidate, es.floor(lied, val, baseline, 1))
    assert es.judge(bounded, thresholds) is None
    # an honest best is compared as it reported
    assert es.floor(es.profile(truth, BUDGET), val, baseline, 1) == pytest.approx(
        es.at_checkpoints(truth, BUDGET), abs=0.06)
    # a real loser is still stopped against the bounded curve
    loser = es.at_checkpoints(honest(2.4), BUDGET)
    assert es.judge(es.gaps(loser, es.floor(lied, val, baseline, 1)), thresholds)


def test_schedule_changes_are_recognised_from_the_diff():
    assert es.touches_schedule("--- a/train.py\n+++ b/train.py\n-WARMUP_FRAC = 0.05\n"
                               "+WARMUP_FRAC = 0.1\n")
    assert not es.touches_schedule("-MLP_RATIO = 4\n+MLP_RATIO = 8\n WARMUP_FRAC = 0.05\n")
    assert not es.touches_schedule("-WEIGHT_DECAY = 0.1\n+WEIGHT_DECAY = 0.03\n")
    # a schedule change is judged from a quarter on, against a higher floor; any other change
    # from an eighth, where the floor is as high (the loss still falls fast there)
    assert es.prior_for(True) == es.SCHEDULE_PRIOR and es.prior_for(False) == es.PRIOR
    assert set(es.SCHEDULE_PRIOR) == set(es.SCHEDULE_JUDGED) < set(es.PRIOR) == set(es.JUDGED)
    assert set(es.JUDGED) <= set(es.CHECKPOINTS) and min(es.JUDGED) < min(es.SCHEDULE_JUDGED)
    assert all(es.SCHEDULE_PRIOR[f] > es.PRIOR[f] for f in es.SCHEDULE_JUDGED)
    assert es.PRIOR[min(es.JUDGED)] > es.PRIOR[min(es.SCHEDULE_JUDGED)]


def test_a_candidates_further_run_is_never_stopped_but_still_calibrates():
    # a run on a further seed is there because the candidate looked ahead on the first
    for schedule in (False, True):
        thresholds = es.calibrate([({0.25: 0.01}, -0.1)], es.prior_for(schedule, further=True))
        assert thresholds == {}
        assert es.judge({0.125: 5.0, 0.25: 5.0, 0.5: 5.0, 0.75: 5.0}, thresholds) is None


def test_early_stopping_is_on_by_default_and_the_margin_rule_goes_without():
    from ratchet.engine.loop import rules
    from ratchet.engine.workspace import config as configmod

    config = configmod.Config()
    assert config.loop.early_stop and config.loop.rule == "paired"
    assert rules.create(config).stops_early
    # a workspace switched to the margin rule keeps its early_stop line: accepted, not applied
    config.loop.rule = "margin"
    configmod.validate(config)
    assert not rules.create(config).stops_early
