"""Training steps per run with warm starts on and off: a warm start must not cost steps.

    python bench/warm_steps.py [--runs 4] [--budget 4] [--rounds 1] [--modes warm,cold]

Each mode creates a throwaway copy of the default CPU workspace (the real train.py) and runs
the loop as `ratchet run --headless --max-experiments 0` does, with `--runs` baseline runs one
after the other: with `warm_start = true` every run after the first finds its training process
started (torch imported) while the one before it trained; with `warm_start = false` each run's
process starts when its turn comes. Prints the steps each run did, and the mean per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import git
import psutil

from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout


def session_steps(root: Path) -> list[tuple[int, float, str]]:
    """(steps, training seconds, status or error) of each baseline run of the session."""
    found = []
    for log in sorted(root.glob("runs/*/events.jsonl")):
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event.get("type") == "exp_end":
                result = event.get("result") or {}
                status = event["status"] if event["status"] == "ok" else \
                    f"{event['status']}: {result.get('error', '')[:80]}"
                found.append((int(result.get("steps") or 0),
                              float(result.get("training_seconds") or 0.0), status))
    return found


def wait_idle(busy_below: float, patience: float = 600.0) -> float:
    """Wait (up to `patience` s) until the machine's CPUs are less than `busy_below` percent
    busy over 3 s, so other work on a shared machine does not take the runs' cores; returns
    the busy percent it saw last."""
    deadline = time.monotonic() + patience
    while True:
        busy = psutil.cpu_percent(interval=3.0)
        if busy < busy_below or time.monotonic() > deadline:
            return busy


def run_mode(template: Path, tmp: Path, name: str, warm: bool, runs: int,
             budget: float) -> list[tuple[int, float, str]]:
    root = tmp / name
    shutil.copytree(template, root, symlinks=True)
    ws = layout.Workspace(root)
    config = ws.config()
    config.experiment.warm_start = warm
    config.experiment.budget_seconds = budget
    config.loop.baseline_seeds = runs
    configmod.save(root, config)
    repo = git.Repo(root)
    repo.index.add(["ratchet.toml"])
    repo.index.commit(f"warm_start = {warm}")
    done = subprocess.run([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                           "--max-experiments", "0", "--tag", name], cwd=root,
                          capture_output=True, text=True, timeout=120 + runs * (budget + 60))
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
    return session_steps(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="baseline runs per session")
    parser.add_argument("--budget", type=float, default=4.0, help="training seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="sessions per mode, alternating")
    parser.add_argument("--modes", default="warm,cold", help="warm, cold or both, in order")
    parser.add_argument("--idle", type=float, default=0.0,
                        help="before each session, wait until the CPUs are less than this "
                             "percent busy (a shared machine); 0: do not wait")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    steps: dict[str, list[int]] = {m: [] for m in modes}
    print(f"cpus {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
          f"budget {args.budget:g} s, {args.runs} runs per session", flush=True)
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        template = Path(tmp) / "template"
        layout.init(template, device="cpu", echo=lambda *_: None)
        for round_ in range(args.rounds):
            for mode in modes:
                busy = wait_idle(args.idle) if args.idle else psutil.cpu_percent(interval=1.0)
                load = os.getloadavg()[0]
                found = run_mode(template, Path(tmp), f"{mode}{round_}", mode == "warm",
                                 args.runs, args.budget)
                steps[mode] += [s for s, _, status in found if status == "ok"]
                failed = [status for _, _, status in found if status != "ok"]
                print(f"{mode:<4} round {round_}: steps per run "
                      f"{[s for s, _, _ in found]}  training s "
                      f"{[round(t, 1) for _, t, _ in found]}  busy before {busy:.0f}%, "
                      f"load {load:.1f} -> "
                      f"{os.getloadavg()[0]:.1f}{'  ' + '; '.join(failed) if failed else ''}",
                      flush=True)
    for mode in modes:
        later = steps[mode]
        if later:
            print(f"{mode:<4} mean steps per run {statistics.mean(later):.1f} "
                  f"(median {statistics.median(later):.0f}, n={len(later)})")
    if {"warm", "cold"} <= set(modes) and steps["warm"] and steps["cold"]:
        ratio = statistics.mean(steps["warm"]) / statistics.mean(steps["cold"])
        print(f"warm / cold steps: {ratio:.2f}")


if __name__ == "__main__":
    main()
