"""The keep rule: what a finished run means for the ratchet, decided from numbers alone.

Everything here is a pure function of val_bpb figures and settings: no git, no log, no clock.
The scheduler applies the verdicts and results.tsv is written from them, so the rule is read,
changed and tested in this one place.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ratchet.engine.protocol import noise
from ratchet.engine.protocol.noise import (  # noqa: F401 - the rule's statistics
    KEEP_Z,
    detectable,
    inflation,
    paired_noise,
)

# The decisions are the protocol's words (an exp_end's `decision`); this module says when each.
from ratchet.engine.protocol.schema import (  # noqa: F401 - the loop names them through here
    ANOTHER_RUN,
    BASELINE,
    CONFIRM_AGAIN,
    CRASH,
    DISCARD,
    INTERRUPTED,
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


def tsv_row(decision: str, run_status: str) -> tuple[str, str]:
    """results.tsv's status (autoresearch's keep, discard or crash) and a note for the
    description, for an experiment's own row."""
    if run_status != "ok":
        note = f" ({run_status})" if decision in (CRASH, INTERRUPTED) and run_status != "crash" \
            else ""
        return "crash", note
    if decision == INTERRUPTED:  # ran, but its keep could not move the branch
        return "discard", " (interrupted)"
    if decision in (BASELINE, KEEP):
        return "keep", ""
    return "discard", " (near miss)" if decision == NEAR_MISS else ""


def tsv_confirmed(decision: str) -> tuple[str, str]:
    """The row of a candidate whose confirmation ended: written only now that it is known."""
    return ("keep", "") if decision == KEEP else ("discard", " (not confirmed)")


# --- the paired rule --------------------------------------------------------------------------
#
# A candidate's run k uses the k-th seed the best was measured with (the baseline's seeds, or
# the kept candidate's), so the seed's own luck (initialisation, data order) is the same on
# both sides and cancels in the difference. The rule reads the mean of those differences
# against its standard error, from a noise figure pooled over the whole session
# (`paired_noise`), and spends runs only where the verdict is open: one run for a change that
# looks no better, the best's every seed for a keep (so the next comparison has them all),
# more runs up to the cap for a close call. bench/keep_rules.py measures its false-keep rate
# and power against the margin rule and autoresearch's.

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
