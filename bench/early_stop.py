"""Early stopping replayed over real recorded runs: how much training compute it would save,
and which eventual keeps and real gains it would have cut short.

    python bench/early_stop.py RUNS_DIR_OR_SESSION... [--margin M] [--min-gap G]
        [--schedule-gap G] [--schedule floor|late|same] [--checkpoints 0.25,0.5,0.75]
        [--pool separate|shared] [--further]

Each session must have run its candidates to the end (early stopping off), with its train_log
events: every run's curve is then known to the end. The replay walks each log in order as the
engine would: each candidate run is compared with the best's run on its seed at that moment
(the baseline's runs, then a kept candidate's), the best's curve bounded below by its measured
val_bpb (`early_stop.floor`), and thresholds calibrated only from the runs that finished before
it and were not stopped (as a session would know them). It prints, per session and overall:
runs stopped, training compute saved (the budget share a stopped run would not have spent),
runs of eventually kept candidates that would have been stopped, runs whose final gain was
past 2 sigma of the paired noise that would have been stopped, and runs that ended better than
the best's run on their seed that would have been stopped; then the same for candidates whose
change touched the learning-rate schedule, and for the others.

By default it replays the engine's rule: other changes at the checkpoints of
`early_stop.JUDGED` against `PRIOR`, a schedule change at `SCHEDULE_JUDGED` against its own,
higher floor (`SCHEDULE_PRIOR`), each calibrated only from finished runs of its own kind.
`--schedule late` judges schedule changes only at the last checkpoint, `--schedule same` as any
other; `--checkpoints` judges other changes at other checkpoints of those every run records
(`early_stop.CHECKPOINTS`: every eighth of the budget to three quarters); `--pool shared`
calibrates every run from all finished runs. Only a candidate's first run is judged, as in the
engine; `--further` judges the runs on further seeds too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.engine.loop.rules import early_stop as es
from ratchet.engine.protocol import events, noise, paths, schema


@dataclass
class Sample:
    session: str
    exp: int
    candidate: int  # the candidate's exp (its own, or the one a further run confirms)
    budget: float
    gaps: dict[float, float]
    final: float  # val_bpb minus the reference's
    schedule: bool
    kept: bool = False  # the candidate was kept in the end
    stop: es.Stop | None = None


@dataclass
class Replay:
    samples: list[Sample] = field(default_factory=list)
    sigma: float = 0.0


def _curves(log: list[dict]) -> dict[int, list[tuple[float, float]]]:
    curves: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for e in log:
        if e.get("type") == schema.TRAIN_LOG and isinstance(e.get("loss"), (int, float)) \
                and isinstance(e.get("elapsed"), (int, float)):
            curves[e["exp"]].append((float(e["elapsed"]), float(e["loss"])))
    return curves


def replay(folder: Path) -> Replay:
    log = list(events.iter_events(folder / paths.EVENTS))
    curves = _curves(log)
    starts = {e["exp"]: e for e in log if e.get("type") == schema.EXP_START}
    ends = [e for e in log if e.get("type") == schema.EXP_END]
    best: dict[int, tuple[dict, float]] = {}  # seed -> the best's run there (profile, val_bpb)
    runs: dict[int, list[tuple[int, dict, float]]] = defaultdict(list)  # candidate -> its runs
    diffs = {e["exp"]: e.get("diff") or "" for e in log if e.get("type") == schema.PROPOSAL}
    baseline_runs, out, kept = [], Replay(), set()
    base = None
    for e in ends:
        start = starts.get(e["exp"], {})
        seed, budget = start.get("seed"), float(start.get("budget") or 0.0)
        val = e.get("val_bpb")
        run = es.profile(curves.get(e["exp"], []), budget) if budget > 0 else {}
        if e.get("status") != schema.OK or val is None or budget <= 0:
            continue
        if e.get("kind") == schema.BASELINE:
            best[seed] = (run, val)
            baseline_runs.append((run, val))
            base = es.Baseline.of({s: {"profile": r, "val": v} for s, (r, v) in best.items()})
            continue
        candidate = e["exp"] if e.get("kind") == schema.CANDIDATE else e.get("confirms", e["exp"])
        runs[candidate].append((seed, run, val))
        if seed in best and base is not None:
            ref_run, ref_val = best[seed]
            out.samples.append(Sample(
                folder.name, e["exp"], candidate, budget,
                es.gaps(es.checkpoints_of(run), es.floor(ref_run, ref_val, base, seed)),
                val - ref_val, es.touches_schedule(diffs.get(candidate, ""))))
        if e.get("decision") == schema.KEEP:
            kept.add(candidate)
            seeds = (e.get("paired") or {}).get("seeds") or {}
            for s, c, v in runs[candidate]:
                best[s] = (c, float(seeds.get(str(s), v)))
    for sample in out.samples:
        sample.kept = sample.candidate in kept
    paired = [d for d in (e.get("paired", {}).get("diffs") for e in ends
                          if isinstance(e.get("paired"), dict)) if d and len(d) >= 2]
    out.sigma = noise.paired_noise([v for _, v in baseline_runs], paired)[0]
    return out


SCHEDULE_MODES = ("floor", "late", "same")
POOLS = ("separate", "shared")


def _floor(fraction: float, given: float | None, engine: dict[float, float]) -> float:
    """The floor at a checkpoint: the one given, else the engine's (its latest before, where
    the engine judges no such checkpoint)."""
    if given is not None:
        return given
    return engine.get(fraction, engine[max((f for f in engine if f <= fraction),
                                           default=min(engine))])


def decide(samples: list[Sample], margin: float, min_gap: float | None = None,
           schedule_gap: float | None = None,
           schedule: str = "floor", checkpoints: tuple[float, ...] = es.JUDGED,
           pool: str = "separate", further: bool = False) -> None:
    """Stop each run as a session would: thresholds from the runs finished before it (of its
    own kind, schedule change or not, with `pool` "separate": the engine's rule). Other changes
    are judged at `checkpoints`; a schedule change at the engine's (`SCHEDULE_JUDGED`) against
    `schedule_gap` ("floor", the engine's rule), only at the last of them ("late"), or as any
    other ("same"). Only a candidate's first run is judged (the engine's rule), or with
    `further` its further runs too."""
    finished: list[es.Sample] = []
    for sample in samples:
        own = sample.schedule and schedule != "same"
        if sample.exp != sample.candidate and not further:
            prior = es.prior_for(sample.schedule, further=True)  # judged nowhere
        else:
            judged = es.SCHEDULE_JUDGED if own else checkpoints
            if own and schedule == "late":
                judged = judged[-1:]
            floors = (schedule_gap, es.SCHEDULE_PRIOR) if own and schedule == "floor" \
                else (min_gap, es.PRIOR)
            prior = {f: _floor(f, *floors) for f in judged}
        calibration = es.samples_for(finished, sample.schedule) if pool == "separate" \
            else [(g, final) for g, final, _ in finished]
        # only the checkpoints with a threshold (those of the prior) are judged
        sample.stop = es.judge(sample.gaps, es.calibrate(calibration, prior, margin))
        if sample.stop is None:
            finished.append((sample.gaps, sample.final, sample.schedule))


def summary(label: str, samples: list[Sample], sigma: float) -> str:
    if not samples:
        return f"| {label} | 0 | | | | | |"
    stopped = [s for s in samples if s.stop]
    saved = sum(1 - s.stop.fraction for s in stopped) / len(samples)
    keeps = [s for s in samples if s.kept]
    gains = [s for s in samples if s.final < -2 * sigma]
    better = [s for s in samples if s.final < 0]
    return (f"| {label} | {len(samples)} | {len(stopped)} | {saved:.0%} | "
            f"{sum(1 for s in keeps if s.stop)} of {len(keeps)} | "
            f"{sum(1 for s in gains if s.stop)} of {len(gains)} | "
            f"{sum(1 for s in better if s.stop)} of {len(better)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--margin", type=float, default=es.MARGIN)
    parser.add_argument("--min-gap", type=float,
                        help="never stop a run trailing by less (training loss; default: the "
                             f"engine's, {es.PRIOR})")
    parser.add_argument("--schedule-gap", type=float,
                        help="never stop a schedule change trailing by less (default: the "
                             f"engine's, {es.SCHEDULE_PRIOR})")
    parser.add_argument("--schedule", choices=SCHEDULE_MODES, default="floor",
                        help="schedule changes: against their own floor (the engine), only at "
                             "the last checkpoint, or as any other")
    parser.add_argument("--checkpoints", default=",".join(f"{f:g}" for f in es.JUDGED),
                        help="judge other changes at these checkpoints (of those every run "
                             "records)")
    parser.add_argument("--further", action="store_true",
                        help="judge a candidate's further runs too, not only its first")
    parser.add_argument("--pool", choices=POOLS, default="separate",
                        help="calibrate each kind of change from its own kind's runs (the "
                             "engine) or from all")
    args = parser.parse_args()
    try:
        checkpoints = tuple(sorted(float(f) for f in args.checkpoints.split(",")))
    except ValueError:
        parser.error(f"--checkpoints: not numbers: {args.checkpoints!r}")
    if not set(checkpoints) <= set(es.CHECKPOINTS):
        parser.error(f"--checkpoints: each must be one of those recorded, {es.CHECKPOINTS}")
    folders = []
    for path in args.paths:
        folders += [path] if (path / paths.EVENTS).exists() else sorted(
            p for p in path.iterdir() if (p / paths.EVENTS).exists())
    if not folders:
        print("bench/early_stop.py: no session folder with an events.jsonl", file=sys.stderr)
        return 2
    min_gap = es.PRIOR if args.min_gap is None else args.min_gap
    schedule_gap = es.SCHEDULE_PRIOR if args.schedule_gap is None else args.schedule_gap
    print(f"margin {args.margin}, min gap {min_gap} (schedule changes: {args.schedule}, "
          f"{schedule_gap}); checkpoints {checkpoints}; calibration pools {args.pool}\n")
    print("| runs | compared | stopped | compute saved | keeps stopped | 2-sigma gains stopped "
          "| runs that beat the best, stopped |")
    print("|---|---|---|---|---|---|---|")
    everything, sigmas = [], []
    for folder in folders:
        result = replay(folder)
        decide(result.samples, args.margin, args.min_gap, args.schedule_gap, args.schedule,
               checkpoints, args.pool, args.further)
        print(summary(folder.name, result.samples, result.sigma))
        everything += result.samples
        sigmas += [result.sigma] * len(result.samples)
    sigma = statistics.fmean(sigmas) if sigmas else 0.0
    print(summary("all", everything, sigma))
    print(summary("schedule changes", [s for s in everything if s.schedule], sigma))
    print(summary("other changes", [s for s in everything if not s.schedule], sigma))
    return 0


if __name__ == "__main__":
    sys.exit(main())
