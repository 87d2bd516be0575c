"""Experiments per hour with pipelined proposals, for one worker and for two.

    python bench/throughput.py [--budget S] [--think S] [--experiments N] [--workers 1 2]

Each run creates a throwaway CPU workspace whose train.py lasts exactly the budget (a bigram
that sleeps to a fixed wall time), and an agent that thinks `--think` seconds per proposal.
Devices are simulated (each worker's child sees its own CUDA_VISIBLE_DEVICES; training is on
CPU). Prints experiments per hour, the 3600/budget limit, the limit once each experiment's own
start-up and evaluation are counted, and the fraction of time each device sat idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import git

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from paced_agent import PacedAgent  # noqa: E402
from trainers import fixed_duration  # noqa: E402

from ratchet.engine import workspace  # noqa: E402
from ratchet.engine.loop.session import RunOptions, Session  # noqa: E402
from ratchet.engine.protocol import events
from ratchet.engine.workspace import config as configmod  # noqa: E402


def run(root: Path, workers: int, budget: float, think: float, experiments: int) -> None:
    ws = workspace.init(root, device="cpu", budget=budget, echo=lambda *_: None)
    (ws.root / "train.py").write_text(fixed_duration(wall=budget))
    config = ws.config()
    config.loop.baseline_seeds = 1
    config.loop.gpus = list(range(workers)) if workers > 1 else []
    config.experiment.grace_seconds = 60.0
    config.data.eval_tokens = 65536
    configmod.save(ws.root, config)
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("fixed-duration trainer")
    options = RunOptions(session="bench", tag="bench", max_experiments=experiments)
    Session(ws, ws.config(), options, PacedAgent(seconds=think)).run()
    log = list(events.iter_events(ws.runs_dir() / "bench" / "events.jsonl"))
    report(log, workers, budget, think)


def report(log: list[dict], workers: int, budget: float, think: float) -> None:
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    ends = [e for e in log if e["type"] == "exp_end"]
    spans: dict[str, list[tuple[float, float]]] = {}
    for end in ends:
        start = starts[end["exp"]]
        spans.setdefault(start["worker"], []).append((start["t"], end["t"]))
    first = min(s for runs in spans.values() for s, _ in runs)
    last = max(e for runs in spans.values() for _, e in runs)
    hours = (last - first) / 3600
    rate = len(ends) / hours
    limit = 3600 / budget * workers
    mean = statistics.mean(e - s for runs in spans.values() for s, e in runs)
    own_limit = 3600 / mean * workers
    idle = {}
    for worker, runs in sorted(spans.items()):
        runs.sort()
        busy = sum(e - s for s, e in runs)
        idle[worker] = 1 - busy / (last - first)
    print(f"workers {workers}: {len(ends)} experiments in {last - first:.0f} s, budget "
          f"{budget:g} s, agent {think:g} s per proposal")
    print(f"  experiments/hour {rate:.1f}; limit 3600/budget x workers {limit:.1f} "
          f"({rate / limit:.0%}); mean experiment {mean:.1f} s (training + start-up + "
          f"evaluation), limit at that length {own_limit:.1f} ({rate / own_limit:.0%})")
    print("  device idle fraction: " + ", ".join(f"{w}: {f:.1%}" for w, f in idle.items()),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per training run")
    parser.add_argument("--think", type=float, default=5.0, help="agent seconds per proposal")
    parser.add_argument("--experiments", type=int, default=8, help="proposals per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
            run(Path(tmp) / "ws", workers, args.budget, args.think,
                args.experiments * workers)


if __name__ == "__main__":
    main()
