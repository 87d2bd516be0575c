"""The keep rule from numbers alone: no git, no engine, no training."""

import pytest

from ratchet.engine.loop import ledger
from ratchet.engine.loop.rules import margin as margin_rule
from ratchet.engine.loop.rules import paired as paired_rule
from ratchet.engine.protocol import noise
from ratchet.engine.protocol import schema as kr


def test_margin_is_the_larger_of_noise_and_the_minimum():
    assert margin_rule.margin([], 0.01, 2.0) == 0.01
    assert margin_rule.margin([2.0], 0.01, 2.0) == 0.01  # one run says nothing of the noise
    assert margin_rule.margin([2.0, 2.1, 2.2], 0.01, 2.0) == pytest.approx(0.2)  # 2 x stdev 0.1
    assert margin_rule.margin([2.0, 2.0], 0.05, 2.0) == 0.05


@pytest.mark.parametrize("val, decision", [
    (None, kr.CRASH),
    (1.85, kr.PENDING_CONFIRM),  # beats 2.0 by more than the margin 0.1
    (1.9, kr.NEAR_MISS),  # better by exactly the margin is not enough
    (1.95, kr.NEAR_MISS),
    (2.0, kr.DISCARD),  # a tie is no improvement
    (2.3, kr.DISCARD),
])
def test_candidate_against_best_and_margin(val, decision):
    verdict = margin_rule.judge_candidate(val, 2.0, 0.1, confirm=True, fresh=True)
    assert verdict.decision == decision
    assert verdict.new_best is None


def test_candidate_without_confirmation_keeps_only_on_the_current_best():
    assert margin_rule.judge_candidate(1.5, 2.0, 0.1, confirm=False, fresh=True).decision == kr.KEEP
    # measured on an older best: it must be rebased and confirmed before it can be kept
    assert margin_rule.judge_candidate(1.5, 2.0, 0.1, confirm=False,
                              fresh=False).decision == kr.PENDING_CONFIRM


def test_candidate_without_a_baseline_is_never_kept():
    verdict = margin_rule.judge_candidate(0.1, None, 0.0, confirm=False, fresh=True)
    assert verdict.decision == kr.DISCARD


def test_confirmation_keeps_the_mean_of_both_runs():
    verdict = margin_rule.judge_confirmation([1.8, 1.84], 2.0, 0.1, moved=False, may_rerun=True)
    assert verdict.decision == kr.KEEP
    assert verdict.new_best == pytest.approx(1.82)


def test_a_lucky_first_run_is_not_confirmed():
    # 1.8 won, but its confirmation 2.05 brings the mean to 1.925: within the margin
    verdict = margin_rule.judge_confirmation([1.8, 2.05], 2.0, 0.1, moved=False, may_rerun=True)
    assert verdict.decision == kr.NEAR_MISS
    assert margin_rule.judge_confirmation([1.8, 2.3], 2.0, 0.1, moved=False,
                                 may_rerun=True).decision == kr.DISCARD


def test_confirmation_when_the_best_moved():
    assert margin_rule.judge_confirmation([1.5], 2.0, 0.1, moved=True,
                                 may_rerun=True).decision == kr.CONFIRM_AGAIN
    # out of reruns (or stopping): it measured code that is no longer on the best
    assert margin_rule.judge_confirmation([1.5], 2.0, 0.1, moved=True,
                                 may_rerun=False).decision == kr.DISCARD
    # a failed run is a crash whether or not the best moved
    assert margin_rule.judge_confirmation(None, 2.0, 0.1, moved=True,
                                 may_rerun=True).decision == kr.CRASH


def test_results_tsv_rows():
    assert ledger.tsv_row(kr.BASELINE, "ok") == ("keep", "")
    assert ledger.tsv_row(kr.KEEP, "ok") == ("keep", "")
    assert ledger.tsv_row(kr.NEAR_MISS, "ok") == ("discard", " (near miss)")
    assert ledger.tsv_row(kr.DISCARD, "ok") == ("discard", "")
    assert ledger.tsv_row(kr.CRASH, "crash") == ("crash", "")
    assert ledger.tsv_row(kr.CRASH, "timeout") == ("crash", " (timeout)")
    assert ledger.tsv_confirmed(kr.KEEP) == ("keep", "")
    assert ledger.tsv_confirmed(kr.NEAR_MISS) == ("discard", " (not confirmed)")


# --- the paired rule ------------------------------------------------------------------------


def _judge(diffs, sigma=0.01, df=30, keep_runs=3, cap=3, min_improvement=0.0):
    return paired_rule.judge_paired(diffs, sigma, df, keep_runs=keep_runs, cap=cap,
                           min_improvement=min_improvement)


def test_a_first_run_that_looks_no_better_is_discarded_at_once():
    reading = _judge([0.004])
    assert (reading.decision, reading.runs) == (kr.DISCARD, 1)
    assert _judge([0.0]).decision == kr.DISCARD  # a tie is no gain


def test_a_first_run_that_looks_better_gets_another_seed_even_when_clear():
    assert _judge([-0.001]).decision == kr.ANOTHER_RUN
    assert _judge([-0.5]).decision == kr.ANOTHER_RUN  # one run never keeps


def test_a_clear_win_is_kept_only_on_every_seed_of_the_best():
    assert _judge([-0.03, -0.03]).decision == kr.ANOTHER_RUN  # the best has 3 seeds
    kept = _judge([-0.03, -0.03, -0.03])
    assert kept.decision == kr.KEEP
    assert kept.effect == pytest.approx(-0.03)
    assert kept.se == pytest.approx(0.01 / 3 ** 0.5)


def test_too_little_gain_stops_early_and_a_close_call_ends_at_the_cap():
    assert _judge([-0.004, 0.002]).decision == kr.NEAR_MISS  # z -0.14: not worth a third
    assert _judge([-0.004, 0.006]).decision == kr.DISCARD
    assert _judge([-0.012, -0.006]).decision == kr.ANOTHER_RUN  # z -1.27: close
    assert _judge([-0.008, -0.005, -0.006]).decision == kr.NEAR_MISS  # z -1.10: not kept


def test_an_uncertain_noise_figure_moves_the_keep_line_out():
    # the same runs: kept with a well-measured noise, not with one from two degrees of freedom
    assert _judge([-0.013, -0.013, -0.013], df=30).decision == kr.KEEP
    assert _judge([-0.013, -0.013, -0.013], df=2).decision == kr.NEAR_MISS


def test_a_gain_below_min_improvement_is_never_kept():
    assert _judge([-0.03] * 3, min_improvement=0.05).decision != kr.KEEP


def test_paired_noise_pools_each_candidates_spread_around_its_own_effect():
    # no baseline spread: the noise is the candidates' own, whatever their effects
    sigma, df = noise.paired_noise([3.0], [[-0.10, -0.12], [0.50, 0.52], [0.2]])
    assert df == 2  # one per candidate with two runs; a single run tells nothing
    assert sigma == pytest.approx(0.02 / 2 ** 0.5)
    # the baseline's spread is the prior: a difference of two runs, sqrt(2) x its stdev
    sigma, df = noise.paired_noise([3.0, 3.1, 3.2], [])
    assert (sigma, df) == (pytest.approx(0.1 * 2 ** 0.5), 2)
    assert noise.paired_noise([3.0], []) == (0.0, 0)


def test_detectable_effect_shrinks_with_runs_and_measured_noise():
    detectable = noise.detectable
    assert detectable(0.01, 30, 3) < detectable(0.01, 30, 2) < detectable(0.01, 2, 2)


def test_a_paired_candidates_rows_wait_for_its_last_run_and_share_its_verdict():
    from ratchet.engine.protocol import state as statemod

    def end(n, kind, decision, val, **extra):
        return {"type": "exp_end", "exp": n, "kind": kind, "status": "ok", "decision": decision,
                "val_bpb": val, "commit": "abc1234def", "description": "LR up", **extra}

    def rows(events):
        state, out = statemod.LoopState(), []
        for event in events:
            out += ledger.rows_for(event, state.pending_confirms, state.pending_runs)
            statemod.apply(state, event)
        return out, state

    runs = [end(4, "candidate", kr.PENDING_CONFIRM, 2.9),
            end(5, "confirm", kr.ANOTHER_RUN, 2.8, confirms=4)]
    assert rows(runs)[0] == []  # nothing is written while the verdict is open
    kept, state = rows([*runs, end(6, "confirm", kr.KEEP, 2.85, confirms=4,
                                   paired={"diffs": [-0.1, -0.2, -0.1],
                                           "seeds": {"1337": 2.9, "1338": 2.8, "1339": 2.85}})])
    assert [r[3] for r in kept] == ["keep", "keep", "keep"]
    assert [r[1] for r in kept] == [2.9, 2.8, 2.85]
    assert state.best_runs == {1337: 2.9, 1338: 2.8, 1339: 2.85}
    assert state.paired == [[-0.1, -0.2, -0.1]] and not state.pending_runs
    # dropped before its last run (the engine stopped): every run so far is a discard
    dropped, _ = rows([*runs, {"type": "proposal_dropped", "exp": 4, "reason": "stopped"}])
    assert [r[3] for r in dropped] == ["discard", "discard"]


def test_a_kept_candidates_luck_is_halved_in_the_new_best_it_becomes():
    # the old best ran 3.0 on both seeds; the candidate ran 2.8 and 2.6: effect -0.3
    new = paired_rule.references({1: 3.0, 2: 3.0}, paired_rule.Runs({1: 2.8, 2: 2.6}, [-0.2, -0.4]))
    assert new == {"1": pytest.approx(2.75), "2": pytest.approx(2.65)}
