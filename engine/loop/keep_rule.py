"""The keep rule: what a finished run means for the ratchet, decided from numbers alone.

Everything here is a pure function of val_bpb figures and settings: no git, no log, no clock.
The scheduler applies the verdicts and results.tsv is written from them, so the rule is read,
changed and tested in this one place.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# The decisions are the protocol's words (an exp_end's `decision`); this module says when each.
from ratchet.engine.protocol.schema import (  # noqa: F401 - the loop names them through here
    BASELINE,
    CONFIRM_AGAIN,
    CRASH,
    DISCARD,
    KEEP,
    NEAR_MISS,
    PENDING_CONFIRM,
    RETRY,
)


@dataclass(frozen=True)
class Verdict:
    decision: str
    new_best: float | None = None  # the best's val_bpb after a confirmed keep


def margin(baseline: Sequence[float], min_improvement: float, noise_k: float) -> float:
    """A change must beat the best by more than this: seed noise or the configured minimum."""
    spread = statistics.stdev(baseline) if len(baseline) >= 2 else 0.0
    return max(min_improvement, noise_k * spread)


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


def tsv_row(decision: str, run_status: str) -> tuple[str, str]:
    """results.tsv's status (autoresearch's keep, discard or crash) and a note for the
    description, for an experiment's own row."""
    if run_status != "ok":
        note = f" ({run_status})" if decision == CRASH and run_status != "crash" else ""
        return "crash", note
    if decision in (BASELINE, KEEP):
        return "keep", ""
    return "discard", " (near miss)" if decision == NEAR_MISS else ""


def tsv_confirmed(decision: str) -> tuple[str, str]:
    """The row of a candidate whose confirmation ended: written only now that it is known."""
    return ("keep", "") if decision == KEEP else ("discard", " (not confirmed)")
