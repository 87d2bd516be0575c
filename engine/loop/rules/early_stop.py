"""Early stopping on the paired seed: a candidate's training loss against the best's run on the
same seed, at fixed fractions of the budget, from numbers alone.

A run is a list of (elapsed seconds, training loss) points as train.py logged them. The loss at
a fraction is the mean over a window around it (one step's loss is one batch's: too noisy), and
the gap is candidate minus reference there. A run that trails by more than the threshold at a
checkpoint is a clear loser. The thresholds come from data (`calibrate`): the largest gap at
each fraction of any run that still went on to beat its reference, plus a margin.

Every point is train.py's own report, so none of it is trusted:
- a candidate's lies about its own curve can only keep it from being stopped (a full run, and
  the harness's val_bpb judges it as any other);
- the best's curve, which every later candidate is compared with, is bounded below (`floor`):
  its final loss must match what its val_bpb (measured by the harness) implies on the baseline's
  own ratio of the two, and its drop from each checkpoint to the end must be at least the
  baseline's smallest. A best that reported a falsely low curve is compared as if it had not.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# The loss is recorded at every eighth of the budget to three quarters (the profile, for the
# bench and later calibration). A change to the schedule itself (warm-up, decay, time planning)
# trails early by design and catches up late: it is judged from a quarter on, against twice the
# floor, and calibrated only from other schedule changes; judging it at every eighth stopped 2 of
# 4 eventual keeps of a held-out session (bench/early_stop.py). Any other change is judged from
# an eighth on, calibrated from the other changes alone, so a late-catching schedule change that
# won does not loosen the rule for every other kind.
CHECKPOINTS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
JUDGED = (0.125, 0.25, 0.5, 0.75)
SCHEDULE_JUDGED = (0.25, 0.5, 0.75)
WINDOW = 0.1  # the share of the budget averaged around each checkpoint
MARGIN = 0.02  # added to the largest gap a winner had (training loss, nats per token)
# never stop a run trailing by less than this (training loss), whatever the data says yet; at
# an eighth the loss still falls fast and a small skew in progress reads as a gap, so twice
PRIOR = {0.125: 0.10, 0.25: 0.05, 0.5: 0.05, 0.75: 0.05}
SCHEDULE_PRIOR = {f: 0.10 for f in SCHEDULE_JUDGED}

Curve = Sequence[tuple[float, float]]  # (elapsed seconds, training loss)


def loss_at(curve: Curve, fraction: float, budget: float, window: float = WINDOW) -> float | None:
    """The mean loss logged within the window around `fraction` of the budget (None: fewer
    than two points there)."""
    lo, hi = (fraction - window / 2) * budget, (fraction + window / 2) * budget
    found = [loss for t, loss in curve if lo <= t <= hi and math.isfinite(loss)]
    return statistics.fmean(found) if len(found) >= 2 else None


def final_loss(curve: Curve, budget: float) -> float | None:
    """The mean loss of the budget's last window."""
    return loss_at(curve, 1.0 - WINDOW / 2, budget)


def at_checkpoints(curve: Curve, budget: float,
                   checkpoints: Sequence[float] = CHECKPOINTS) -> dict[float, float]:
    """The run's loss at each checkpoint it reached."""
    found = {f: loss_at(curve, f, budget) for f in checkpoints}
    return {f: loss for f, loss in found.items() if loss is not None}


def gaps(candidate: dict[float, float], reference: dict[float, float]) -> dict[float, float]:
    """Candidate minus reference at each checkpoint both have (`at_checkpoints`, `floor`)."""
    return {f: candidate[f] - reference[f] for f in candidate if f in reference}


@dataclass(frozen=True)
class Stop:
    fraction: float
    gap: float
    threshold: float

    def to_json(self) -> dict:
        return {"fraction": self.fraction, "gap": round(self.gap, 5),
                "threshold": round(self.threshold, 5)}


def judge(gap_by_fraction: dict[float, float], thresholds: dict[float, float]) -> Stop | None:
    """The first checkpoint judged (one with a threshold) where the run trails by more than the
    threshold."""
    for f in sorted(gap_by_fraction):
        if f in thresholds and gap_by_fraction[f] > thresholds[f]:
            return Stop(f, gap_by_fraction[f], thresholds[f])
    return None


def calibrate(samples: Sequence[tuple[dict[float, float], float]], prior: dict[float, float],
              margin: float = MARGIN) -> dict[float, float]:
    """Thresholds from finished runs: (their gaps, their final val_bpb minus the reference's).
    At each fraction the prior judges, no run that went on to beat its reference (final
    difference below zero) would have been stopped: the threshold is the largest gap such a run
    had, plus the margin, and never below the prior."""
    out = dict(prior)
    for gap_by_fraction, final in samples:
        if final < 0:
            for f, gap in gap_by_fraction.items():
                if f in out:
                    out[f] = max(out[f], gap + margin)
    return out


def points(train_log: Sequence[dict]) -> list[tuple[float, float]]:
    """(elapsed, loss) of each logged step that says both as numbers."""
    number = (int, float)
    return [(float(r["elapsed"]), float(r["loss"])) for r in train_log
            if isinstance(r.get("elapsed"), number) and isinstance(r.get("loss"), number)
            and not isinstance(r.get("loss"), bool)]


def profile(curve: Curve, budget: float) -> dict[str, float]:
    """What an exp_end records of a run's curve for later comparisons: its loss at each
    checkpoint and at the end, by name ("0.25", ..., "end")."""
    out = {f"{f:g}": round(loss, 5) for f, loss in at_checkpoints(curve, budget).items()}
    end = final_loss(curve, budget)
    if end is not None:
        out["end"] = round(end, 5)
    return out


def _read(recorded: dict) -> tuple[dict[float, float], float | None]:
    """A recorded profile's checkpoints and end; what is not a number is left out."""
    points = {}
    for f in CHECKPOINTS:
        value = recorded.get(f"{f:g}")
        if isinstance(value, (int, float)) and math.isfinite(value):
            points[f] = float(value)
    end = recorded.get("end")
    return points, (float(end) if isinstance(end, (int, float)) and math.isfinite(end) else None)


def checkpoints_of(recorded: dict) -> dict[float, float]:
    return _read(recorded)[0]


@dataclass(frozen=True)
class Baseline:
    """What the baseline's runs say about how a curve relates to its val_bpb: on each seed the
    ratio of the final training loss to val_bpb (a seed's own training data sets it), and the
    smallest drop from each checkpoint to the end. The baseline runs the person's own
    train.py: the one curve taken as told."""

    ratios: dict[int, float]
    drop: dict[float, float]

    @classmethod
    def of(cls, runs: dict[int, dict]) -> Baseline | None:
        """From each baseline seed's {"profile", "val"}; None without one."""
        ratios, drops = {}, {f: [] for f in CHECKPOINTS}
        for seed, run in runs.items():
            points, end = _read(run.get("profile") or {})
            val = run.get("val")
            if end is None or not isinstance(val, (int, float)) or val <= 0:
                continue
            ratios[seed] = end / val
            for f, at in points.items():
                drops[f].append(at - end)
        if not ratios:
            return None
        return cls(ratios, {f: min(d) for f, d in drops.items() if d})

    def ratio(self, seed: int) -> float:
        return self.ratios.get(seed, min(self.ratios.values()))


def floor(reference: dict, val_bpb: float, baseline: Baseline, seed: int) -> dict[float, float]:
    """The reference's loss at each checkpoint (from its recorded profile), raised where it
    claims less than its measured val_bpb allows on its seed: its end at least the baseline's
    ratio there x val_bpb, each checkpoint at least that end plus the baseline's smallest
    drop."""
    points, end = _read(reference)
    end = max(end or 0.0, baseline.ratio(seed) * val_bpb)
    return {f: max(at, end + baseline.drop.get(f, 0.0)) for f, at in points.items()}


def touches_schedule(diff: str) -> bool:
    """Whether a change's diff touches the learning-rate schedule or the time planning, whose
    early losses say less of its end (bench/early_stop.py measures it): `prior_for` it."""
    changed = [line[1:] for line in diff.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return any(word in line.upper() for line in changed for word in SCHEDULE_WORDS)


# learning-rate warm-up and decay (not weight decay), and how train.py plans its time
SCHEDULE_WORDS = ("WARMUP", "MIN_LR", "LR_DECAY", "DECAY_FRAC", "COOLDOWN", "SCHEDULE", "LR_FRAC",
                  "ANNEAL", "TIME_LEFT", "BUDGET", "HANDOFF_RESERVE")


def prior_for(schedule: bool, further: bool = False) -> dict[float, float]:
    """The floor under the thresholds at each checkpoint judged, for a schedule change
    (`touches_schedule`) or any other. A candidate's further run is judged nowhere (its curve
    still calibrates): it runs because the candidate looked ahead, its verdict is the mean over
    its seeds, and one seed's early loss must not throw that evidence away (judging further runs
    stopped a keep's fourth run, bench/early_stop.py --further)."""
    if further:
        return {}
    return SCHEDULE_PRIOR if schedule else PRIOR


Sample = tuple[dict[float, float], float, bool | None]  # gaps, final difference, schedule change


def samples_for(samples: Sequence[Sample],
                schedule: bool) -> list[tuple[dict[float, float], float]]:
    """The finished runs that calibrate a change of this kind: those of the same kind, and
    those recorded before the kind was (None), which count for both."""
    return [(gaps, final) for gaps, final, kind in samples if kind is None or kind == schedule]
