"""Simulated sessions through the real keep rules: how often each keeps a change that does
nothing, how often it keeps a real gain, and how many runs it spends per candidate.

    python bench/keep_rules.py [--sessions 500] [--candidates 30] [--seed-sigma U]
                               [--run-sigma E] [--seed N]

A run's val_bpb is the code's true value plus the seed's own luck, drawn once per seed and
session and shared by every code trained with that seed (initialisation and data order), plus
a run's own noise (steps done, float order). The defaults of both are what bench/noise_runs.py
measured on the default CPU workspace (docs/benchmarks.md). Sigma in the table is one run's
spread across seeds, sqrt(U^2 + E^2): the baseline spread a user sees.

Three rules, each through the functions the engine decides with (engine/loop/rules/):
- autoresearch's: one run, kept if lower than the best run so far;
- margin (Ratchet 1's): beat the mean of three baseline seeds by noise_k x their spread, then a
  confirmation run with a fresh seed, the mean of both must still beat it;
- paired (this release's): the same seeds as the best, sequential, noise pooled over the
  session (`judge_paired`).

A session has --candidates candidates whose true effects (against the best at the time, in
sigmas) are drawn from the offline agent's measured mix. In each row but the last, one of them,
at a random point after the first third (when the session has measured its noise), is replaced
by a change of the row's effect: the share of those kept is the rule's false-keep rate (0) or
power. The last row is the mix itself: the share of all its candidates kept. Runs per candidate
are over whole sessions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Callable

from ratchet.engine.loop.rules import margin as margin_rules
from ratchet.engine.loop.rules import paired as paired_rules
from ratchet.engine.protocol import noise, schema

BASELINE_SEEDS = 4  # the default baseline_seeds (--baseline-seeds)
# The offline agent's changes on the default CPU workspace, in sigmas of one run: the shares
# of first-run effects (candidate - best) in two real 30-minute sessions (70 candidates; the
# figures hold each run's own noise too, so they are wider than the true effects): 67% worse by
# more than half a sigma, 14% within it, 19% better.
AGENT_MIX = ((0.67, (0.5, 4.5)), (0.14, (-0.5, 0.5)), (0.19, (-2.5, -0.5)))


class World:
    """One simulated session's noise: each seed's luck, drawn once, and a run's own noise."""

    def __init__(self, rng: random.Random, seed_sigma: float, run_sigma: float):
        self.rng, self.run_sigma, self.seed_sigma = rng, run_sigma, seed_sigma
        self.luck: dict[int, float] = {}

    def run(self, true: float, seed: int) -> float:
        if seed not in self.luck:
            self.luck[seed] = self.rng.gauss(0.0, self.seed_sigma)
        return true + self.luck[seed] + self.rng.gauss(0.0, self.run_sigma)


def autoresearch(world: World, effects: list[float]) -> tuple[list[bool], int]:
    """Which candidates were kept, and the runs spent, under keep-if-lower with one run."""
    true, best = 3.0, world.run(3.0, 0)
    kept, runs = [], 0
    for effect in effects:
        val = world.run(true + effect, 0)
        runs += 1
        kept.append(val < best)
        if kept[-1]:
            best, true = val, true + effect
    return kept, runs


def margin_rule(world: World, effects: list[float], noise_k: float = 2.0,
                min_improvement: float = 0.001) -> tuple[list[bool], int]:
    true = 3.0
    baseline = [world.run(true, s) for s in range(BASELINE_SEEDS)]
    best = statistics.fmean(baseline)
    margin = margin_rules.margin(baseline, min_improvement, noise_k)
    kept, runs = [], 0
    for i, effect in enumerate(effects):
        val = world.run(true + effect, 0)
        runs += 1
        kept.append(False)
        first = margin_rules.judge_candidate(val, best, margin, confirm=True, fresh=True)
        if first.decision != schema.PENDING_CONFIRM:
            continue
        again = world.run(true + effect, 1000 + i)  # the confirmation's fresh seed
        runs += 1
        verdict = margin_rules.judge_confirmation([val, again], best, margin, moved=False,
                                               may_rerun=False)
        if verdict.decision == schema.KEEP:
            kept[-1], best, true = True, verdict.new_best, true + effect
    return kept, runs


def paired_rule(world: World, effects: list[float], max_runs: int = 4,
                min_improvement: float = 0.001) -> tuple[list[bool], int]:
    true = 3.0
    baseline = [world.run(true, s) for s in range(BASELINE_SEEDS)]
    best_runs = dict(enumerate(baseline))
    finished: list[list[float]] = []
    kept, runs = [], 0
    for effect in effects:
        sigma, df = noise.paired_noise(baseline, finished)
        seeds = sorted(best_runs)
        cap = max(2, min(max_runs, len(seeds)))
        mine: dict[int, float] = {}
        diffs: list[float] = []
        while True:
            seed = seeds[len(diffs)] if len(diffs) < len(seeds) else len(diffs)
            mine[seed] = world.run(true + effect, seed)
            runs += 1
            diffs.append(mine[seed] - best_runs.get(seed, statistics.fmean(best_runs.values())))
            reading = paired_rules.judge_paired(diffs, sigma, df, keep_runs=min(cap, len(seeds)),
                                             cap=cap, min_improvement=min_improvement)
            if reading.decision != schema.ANOTHER_RUN:
                break
        finished.append(diffs)
        kept.append(reading.decision == schema.KEEP)
        if kept[-1]:
            best_runs = {int(k): v for k, v in
                         paired_rules.references(best_runs, paired_rules.Runs(mine, diffs)).items()}
            true = true + effect
    return kept, runs


RULES: dict[str, Callable[..., tuple[list[bool], int]]] = {
    "autoresearch": autoresearch, "margin": margin_rule, "paired": paired_rule}


def mixed_effects(rng: random.Random, n: int, sigma: float) -> list[float]:
    shares = [share for share, _ in AGENT_MIX]
    return [rng.uniform(*AGENT_MIX[rng.choices(range(len(AGENT_MIX)), shares)[0]][1]) * sigma
            for _ in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--seed-sigma", type=float, default=0.010,
                        help="spread of a seed's own luck, shared by every code (val_bpb)")
    parser.add_argument("--run-sigma", type=float, default=0.025,
                        help="spread of one run's own noise at a fixed seed (val_bpb)")
    parser.add_argument("--baseline-seeds", type=int, default=BASELINE_SEEDS)
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    globals()["BASELINE_SEEDS"] = args.baseline_seeds
    sigma = (args.seed_sigma ** 2 + args.run_sigma ** 2) ** 0.5
    print(f"seed {args.seed}; {args.sessions} sessions x {args.candidates} candidates per row; "
          f"seed luck {args.seed_sigma:g}, run noise {args.run_sigma:g}, "
          f"sigma (one run) {sigma:.4f} val_bpb")
    rows = [("neutral (0)", 0.0), ("+1 sigma", -1.0), ("+2 sigma", -2.0), ("+3 sigma", -3.0),
            ("agent mix", None)]
    print(f"\n| true gain | {' | '.join(f'{r} kept | {r} runs' for r in RULES)} |")
    print("|---" * (1 + 2 * len(RULES)) + "|")
    for label, gain in rows:
        cells = []
        for name, rule in RULES.items():
            rng = random.Random(f"{args.seed}:{label}:{name}")
            kept = runs = total = 0
            for _ in range(args.sessions):
                # a session of the agent's mix; a row's change arrives at a random point of it
                effects = mixed_effects(rng, args.candidates, sigma)
                probe = rng.randrange(args.candidates // 3, args.candidates)
                if gain is not None:
                    effects[probe] = gain * sigma
                flags, spent = rule(World(rng, args.seed_sigma, args.run_sigma), effects)
                kept += flags[probe] if gain is not None else sum(flags)
                total += 1 if gain is not None else args.candidates
                runs += spent
            per = runs / (args.sessions * args.candidates)
            cells.append(f"{100 * kept / total:.1f}% | {per:.2f}")
        print(f"| {label} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
