"""The keep rule from numbers alone: no git, no engine, no training."""

import pytest

from ratchet.engine.loop import keep_rule as kr


def test_margin_is_the_larger_of_noise_and_the_minimum():
    assert kr.margin([], 0.01, 2.0) == 0.01
    assert kr.margin([2.0], 0.01, 2.0) == 0.01  # one run says nothing of the noise
    assert kr.margin([2.0, 2.1, 2.2], 0.01, 2.0) == pytest.approx(0.2)  # 2 x stdev 0.1
    assert kr.margin([2.0, 2.0], 0.05, 2.0) == 0.05


@pytest.mark.parametrize("val, decision", [
    (None, kr.CRASH),
    (1.85, kr.PENDING_CONFIRM),  # beats 2.0 by more than the margin 0.1
    (1.9, kr.NEAR_MISS),  # better by exactly the margin is not enough
    (1.95, kr.NEAR_MISS),
    (2.0, kr.DISCARD),  # a tie is no improvement
    (2.3, kr.DISCARD),
])
def test_candidate_against_best_and_margin(val, decision):
    verdict = kr.judge_candidate(val, 2.0, 0.1, confirm=True, fresh=True)
    assert verdict.decision == decision
    assert verdict.new_best is None


def test_candidate_without_confirmation_keeps_only_on_the_current_best():
    assert kr.judge_candidate(1.5, 2.0, 0.1, confirm=False, fresh=True).decision == kr.KEEP
    # measured on an older best: it must be rebased and confirmed before it can be kept
    assert kr.judge_candidate(1.5, 2.0, 0.1, confirm=False,
                              fresh=False).decision == kr.PENDING_CONFIRM


def test_candidate_without_a_baseline_is_never_kept():
    assert kr.judge_candidate(0.1, None, 0.0, confirm=False, fresh=True).decision == kr.DISCARD


def test_confirmation_keeps_the_mean_of_both_runs():
    verdict = kr.judge_confirmation([1.8, 1.84], 2.0, 0.1, moved=False, may_rerun=True)
    assert verdict.decision == kr.KEEP
    assert verdict.new_best == pytest.approx(1.82)


def test_a_lucky_first_run_is_not_confirmed():
    # 1.8 won, but its confirmation 2.05 brings the mean to 1.925: within the margin
    verdict = kr.judge_confirmation([1.8, 2.05], 2.0, 0.1, moved=False, may_rerun=True)
    assert verdict.decision == kr.NEAR_MISS
    assert kr.judge_confirmation([1.8, 2.3], 2.0, 0.1, moved=False,
                                 may_rerun=True).decision == kr.DISCARD


def test_confirmation_when_the_best_moved():
    assert kr.judge_confirmation([1.5], 2.0, 0.1, moved=True,
                                 may_rerun=True).decision == kr.CONFIRM_AGAIN
    # out of reruns (or stopping): it measured code that is no longer on the best
    assert kr.judge_confirmation([1.5], 2.0, 0.1, moved=True,
                                 may_rerun=False).decision == kr.DISCARD
    # a failed run is a crash whether or not the best moved
    assert kr.judge_confirmation(None, 2.0, 0.1, moved=True,
                                 may_rerun=True).decision == kr.CRASH


def test_results_tsv_rows():
    assert kr.tsv_row(kr.BASELINE, "ok") == ("keep", "")
    assert kr.tsv_row(kr.KEEP, "ok") == ("keep", "")
    assert kr.tsv_row(kr.NEAR_MISS, "ok") == ("discard", " (near miss)")
    assert kr.tsv_row(kr.DISCARD, "ok") == ("discard", "")
    assert kr.tsv_row(kr.CRASH, "crash") == ("crash", "")
    assert kr.tsv_row(kr.CRASH, "timeout") == ("crash", " (timeout)")
    assert kr.tsv_confirmed(kr.KEEP) == ("keep", "")
    assert kr.tsv_confirmed(kr.NEAR_MISS) == ("discard", " (not confirmed)")
