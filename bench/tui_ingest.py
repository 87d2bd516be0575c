"""How fast the dashboard ingests events, what one million cost in memory, and whether keys stay
responsive while a busy engine writes.

    .venv/bin/python bench/tui_ingest.py [--events 1000000] [--live-seconds 10]

1. Writes a synthetic log with a realistic mix (mostly train_log, agent_delta and resources;
   experiment boundaries, proposals with diffs, phases) and folds it through the dashboard's own
   source and state (`LiveSource.poll` -> `DashboardState.extend`): events/s, RSS after it.
2. Runs the app headless (`App.run_test`) on a log that a writer thread appends to at a fixed
   rate, presses tab repeatedly and times how long each press takes to move the focus, and
   checks the app kept up with the writer.

Targets: at least 5,000 events/s while responsive, under 300 MB after one million events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from textual.events import Key

from ratchet.tui.app import RatchetDashboard
from ratchet.tui.sources import LiveSource

DIFF = "".join(
    f"@@ -{i},3 +{i},3 @@\n-LEARNING_RATE = 0.0{i}\n+LEARNING_RATE = 0.0{i + 1}\n context\n"
    for i in range(1, 30))
WORDS = ("the", "loss", "plateaus", "after", "warmup", "so", "a", "higher", "learning", "rate",
         "may", "help", "while", "N_LAYER", "stays", "at", "eight", "because", "memory")


def experiment_events(n: int, t: float, rng: random.Random) -> list[dict]:
    """One experiment's events, about a thousand, in the proportions a real night shows."""
    out: list[dict] = [{"t": t, "type": "phase", "exp": n, "phase": "proposing"}]
    for _ in range(120):
        text = " ".join(rng.choice(WORDS) for _ in range(12)) + ("\n" if rng.random() < .3 else " ")
        out.append({"t": t, "type": "agent_delta", "exp": n, "text": text})
    out.append({"t": t, "type": "proposal", "exp": n, "description": f"change {n}",
                "rationale": "because", "diff": DIFF, "files": ["train.py"], "changes": {}})
    out.append({"t": t, "type": "exp_start", "exp": n, "kind": "candidate", "commit": f"{n:07x}",
                "seed": 1, "budget": 300, "description": f"change {n}"})
    out.append({"t": t, "type": "phase", "exp": n, "phase": "training"})
    for step in range(1, 701):
        out.append({"t": t + step * 0.4, "type": "train_log", "exp": n, "step": step * 10,
                    "loss": 3.0 / step ** 0.3 + rng.random() * 0.01, "lr": 6e-4,
                    "tok_s": 410000.0, "elapsed": step * 0.4})
        if step % 4 == 0:
            out.append({"t": t + step * 0.4, "type": "resources", "cpu_percent": 12.0,
                        "memory_percent": 31.0, "memory_used_gb": 40.1, "source": "nvml",
                        "gpus": [{"index": i, "name": "NVIDIA H100", "util": 97,
                                  "mem_used_mb": 61000, "mem_total_mb": 81559, "temp_c": 70,
                                  "power_w": 612.0} for i in range(2)]})
    val = 1.0 - n * 1e-5
    out.append({"t": t + 300, "type": "exp_end", "exp": n, "kind": "candidate", "status": "ok",
                "decision": rng.choice(("keep", "discard", "discard", "near_miss")),
                "val_bpb": val, "delta": -1e-4, "commit": f"{n:07x}", "description": f"change {n}",
                "result": {"tail": "x" * 500}})
    return out


def write_log(path: Path, total: int) -> int:
    rng = random.Random(0)
    written, n, t = 0, 0, 1.7e9
    with open(path, "w") as f:
        f.write(json.dumps({"t": t, "type": "session_start", "session": "bench", "tag": "b",
                            "config": {}, "pid": 0}) + "\n")
        written += 1
        while written < total:
            n += 1
            for event in experiment_events(n, t, rng)[: total - written]:
                f.write(json.dumps(event, separators=(",", ":")) + "\n")
                written += 1
            t += 320
    return written


def ingest(folder: Path) -> tuple[int, float, object]:
    source = LiveSource(folder)
    from ratchet.tui.view_state import DashboardState

    state = DashboardState()
    start = time.perf_counter()
    while batch := source.poll():
        state.extend(batch)
    return state.events, time.perf_counter() - start, state


def append_events(path: Path, rate: int, seconds: float) -> None:
    """The engine's part, in its own process: append experiments' events at `rate` per second."""
    rng = random.Random(1)
    n, t, written = 100_000, 1.8e9, 0
    begin = time.perf_counter()
    with open(path, "a") as f:
        while time.perf_counter() - begin < seconds:
            n += 1
            for event in experiment_events(n, t, rng):
                f.write(json.dumps(event, separators=(",", ":")) + "\n")
                written += 1
                if written % 50 == 0:
                    f.flush()
                    ahead = written / rate - (time.perf_counter() - begin)
                    if ahead > 0:
                        time.sleep(ahead)
                if time.perf_counter() - begin >= seconds:
                    break
            t += 320


async def press_times(app: RatchetDashboard, until) -> list[float]:
    """Post tab key events as a terminal would, and time each until the focus has moved."""
    times = []
    while not until():
        before = app.screen.focused
        t0 = time.perf_counter()
        app.post_message(Key("tab", None))
        while app.screen.focused is before and time.perf_counter() - t0 < 10:
            await asyncio.sleep(0.001)
        times.append(time.perf_counter() - t0)
        await asyncio.sleep(0.2)
    return times


def summary(times: list[float]) -> str:
    return (f"{len(times)} tab presses, focus moved in {statistics.median(times) * 1000:.0f} ms "
            f"median, {max(times) * 1000:.0f} ms worst")


async def run_app(folder: Path, rate: int, seconds: float) -> dict:
    """The app on the big log: keys while it catches up, then keys while an engine writes."""
    path = folder / "events.jsonl"
    app = RatchetDashboard(LiveSource(folder))
    async with app.run_test(size=(160, 48)):
        t0 = time.perf_counter()
        backlog_keys = await press_times(app, lambda: app.caught_up)
        backlog = app.state.events, time.perf_counter() - t0
        base_lines = app.state.events
        writer = multiprocessing.Process(target=append_events, args=(path, rate, seconds))
        writer.start()
        t1 = time.perf_counter()
        live_keys = await press_times(app, lambda: not writer.is_alive())
        writer.join()
        elapsed = time.perf_counter() - t1
        with open(path, "rb") as f:
            appended = sum(1 for _ in f) - base_lines
        deadline = time.monotonic() + 30
        while app.state.events - base_lines < appended and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        lag = time.perf_counter() - t1 - elapsed
        ingested = app.state.events - base_lines
    return {"backlog": backlog, "backlog_keys": backlog_keys, "appended": appended,
            "ingested": ingested, "rate": appended / elapsed, "live_keys": live_keys, "lag": lag}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--live-rate", type=int, default=5_000, help="writer events/s")
    parser.add_argument("--live-seconds", type=float, default=10.0)
    args = parser.parse_args()
    proc = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        written = write_log(folder / "events.jsonl", args.events)
        size = (folder / "events.jsonl").stat().st_size
        print(f"log: {written:,} events, {size / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        rss_before = proc.memory_info().rss
        count, seconds, state = ingest(folder)
        rss = proc.memory_info().rss
        print(f"ingest: {count:,} events in {seconds:.1f} s = {count / seconds:,.0f} events/s "
              f"(LiveSource + DashboardState)")
        print(f"memory: RSS {rss / 2**20:.0f} MiB after {count:,} events "
              f"({(rss - rss_before) / 2**20:+.0f} MiB for the state; "
              f"{len(state.experiments)} experiments)")
        del state
        live = asyncio.run(run_app(folder, args.live_rate, args.live_seconds))
        n, secs = live["backlog"]
        print(f"app: caught up with the {n:,}-event log in {secs:.1f} s = {n / secs:,.0f} "
              f"events/s while drawing at 4 Hz; keys meanwhile: {summary(live['backlog_keys'])}")
        print(f"live: an engine process appended {live['appended']:,} events at "
              f"{live['rate']:,.0f}/s; the app ingested {live['ingested']:,} "
              f"({live['lag']:.1f} s behind at the end); keys: {summary(live['live_keys'])}")
        rss = proc.memory_info().rss
        print(f"memory: RSS {rss / 2**20:.0f} MiB with the app running over "
              f"{written + live['appended']:,} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
