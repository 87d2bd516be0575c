"""The margin rule (Ratchet 1's): a change must beat the best by a margin, then be confirmed.

The margin is the baseline's seed spread times `noise_k`, or the configured minimum where that is
larger. A winner's first run is confirmed by a second on another seed before it is kept (unless
confirmations are off and it was measured on the current best), and the mean of its runs on the
same commit is the new best. The pure judgements below are what bench/keep_rules.py simulates.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ratchet.engine.loop.rules.base import (
    BACK,
    FRONT,
    MAX_CONFIRM_ROUNDS,
    Finished,
    Rule,
    Ruling,
    Tally,
    no_verdict,
)
from ratchet.engine.protocol import noise, schema
from ratchet.engine.protocol.schema import (
    CONFIRM_AGAIN,
    CRASH,
    DISCARD,
    KEEP,
    NEAR_MISS,
    PENDING_CONFIRM,
)
from ratchet.engine.protocol.state import LoopState


@dataclass(frozen=True)
class Verdict:
    decision: str
    new_best: float | None = None  # the best's val_bpb after a confirmed keep


def margin(baseline: Sequence[float], min_improvement: float, noise_k: float) -> float:
    """The margin rule's margin: seed noise (noise_k x the baseline's spread) or the minimum."""
    return noise.seed_margin(baseline, min_improvement, noise_k)


def judge_candidate(val_bpb: float | None, best: float | None, margin: float, *,
                    confirm: bool, fresh: bool) -> Verdict:
    """A candidate's first run. `val_bpb` is None when the run failed.

    A winner is confirmed by a second run before it is kept, unless confirmations are off
    and it was measured on the current best (`fresh`); one based on an older best is always
    confirmed, since it must be rebased first.
    """
    if val_bpb is None:
        return Verdict(CRASH)
    if best is None:  # no baseline to compare with (every baseline run failed)
        return Verdict(DISCARD)
    if val_bpb < best - margin:
        return Verdict(PENDING_CONFIRM if confirm or not fresh else KEEP)
    return Verdict(NEAR_MISS if val_bpb < best else DISCARD)


def judge_confirmation(runs: Sequence[float] | None, best: float | None, margin: float, *,
                       moved: bool, may_rerun: bool) -> Verdict:
    """A winner's confirmation run. `runs` holds every run that measured the confirmed
    commit (the candidate run too when no rebase came between), or None when it failed.

    `moved` says the best changed while the confirmation ran; then the run measured a
    commit that is no longer on the best, and it is rerun while `may_rerun` allows.
    """
    if runs is not None and moved and may_rerun:
        return Verdict(CONFIRM_AGAIN)
    if runs is None:
        return Verdict(CRASH)
    if moved or best is None:
        return Verdict(DISCARD)
    mean = statistics.mean(runs)
    if mean < best - margin:
        return Verdict(KEEP, new_best=mean)
    return Verdict(NEAR_MISS if mean < best else DISCARD, new_best=mean)


@dataclass
class MarginTally(Tally):
    first: float | None = None  # the winning first run's val_bpb
    first_commit: str = ""  # the commit it measured


class MarginRule(Rule):
    name = "margin"
    waiting_for = "its confirmation"

    def tally(self) -> MarginTally:
        return MarginTally()

    def next_seed(self, tally: MarginTally, exp: int, moved: bool, state: LoopState) -> int:
        tally.rounds += 1  # a confirmation's seed is one no candidate run uses
        return self.settings.seed + 1000 + exp + (tally.rounds - 1) * 100

    def judge(self, run: Finished, tally: MarginTally, state: LoopState) -> Ruling:
        if run.kind == schema.CANDIDATE:
            return self._first(run, tally, state)
        # on the candidate's own commit both runs measured the same code; after a rebase
        # only this run did
        runs = None if run.val_bpb is None else (
            [tally.first, run.val_bpb] if run.commit == tally.first_commit else [run.val_bpb])
        verdict = judge_confirmation(
            runs, state.best_bpb, self.margin(state), moved=run.moved,
            may_rerun=not run.stopping and tally.rounds < MAX_CONFIRM_ROUNDS)
        if verdict.decision == CONFIRM_AGAIN:
            return Ruling(CONFIRM_AGAIN, again=FRONT)  # rebased onto the new best as it starts
        return Ruling(verdict.decision, {"new_best": verdict.new_best})

    def _first(self, run: Finished, tally: MarginTally, state: LoopState) -> Ruling:
        shared = no_verdict(run, state)
        if shared is not None:
            return shared
        verdict = judge_candidate(run.val_bpb, state.best_bpb, self.margin(state),
                                  confirm=self.settings.confirm, fresh=run.fresh)
        if verdict.decision == PENDING_CONFIRM:
            tally.first, tally.first_commit = run.val_bpb, run.commit
            return Ruling(PENDING_CONFIRM, again=BACK)
        return Ruling(verdict.decision)
