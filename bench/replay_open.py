"""How fast `ratchet replay` shows a long session's first screen, and jumps to its end.

    .venv/bin/python bench/replay_open.py [--events 1000000]

Writes a synthetic log of about a thousand experiments (the realistic event mix of
`bench/tui_ingest.py`: mostly train_log, agent_delta and resources, about a thousand events an
experiment), then runs the replay app headless (`App.run_test`, 160x48) and times:

1. open: from creating the app (which indexes the log) to its first drawn screen;
2. the last experiment: `g` and its number, then from enter until the panes show it;
3. end: the `end` key, until the panes show the session's final state;
4. attach: `ratchet attach`'s start on the same log as a live session folder (the fold to its
   current end, before the first draw).

Targets: under 2 s each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tui_ingest import write_log  # noqa: E402 - the same synthetic night as the ingest bench

from ratchet.tui import launch  # noqa: E402
from ratchet.tui.replay_app import ReplayDashboard  # noqa: E402
from ratchet.tui.replay_log import ReplayLog  # noqa: E402


async def wait_drawn(app: ReplayDashboard, done) -> None:
    """Until `done()` holds and a redraw has shown it."""
    while not done():
        await asyncio.sleep(0.005)
    app.refresh_dashboard()
    await asyncio.sleep(0)


async def measure(path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    app = ReplayDashboard(ReplayLog(path), speed=10.0, play=False)
    figures: dict[str, float] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        figures["open"] = time.perf_counter() - t0
        last = app.clock.log.experiment_numbers()[-1]
        await pilot.press("g", *str(last))  # typing the number is not part of the jump
        t1 = time.perf_counter()
        await pilot.press("enter")
        await wait_drawn(app, lambda: app.clock.current_experiment() == last)
        await pilot.pause()
        figures["goto_last"] = time.perf_counter() - t1
        figures["last"] = last
        t2 = time.perf_counter()
        await pilot.press("end")
        await wait_drawn(app, lambda: app.clock.at_end)
        await pilot.pause()
        figures["end"] = time.perf_counter() - t2
        figures["experiments"] = len(app.state.experiments)
    app.clock.log.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-replay-") as tmp:
        path = Path(tmp) / "events.jsonl"
        written = write_log(path, args.events)
        print(f"log: {written:,} events, {path.stat().st_size / 2**20:.0f} MiB")
        figures = asyncio.run(measure(path))
        t0 = time.perf_counter()
        app = launch.dashboard(Path(tmp))
        figures["attach"] = time.perf_counter() - t0
        figures["attach_experiments"] = len(app.state.experiments)
        rss = psutil.Process().memory_info().rss
        print(f"open: first screen in {figures['open']:.2f} s (index + first fold + draw)")
        print(f"go to the last experiment (#{figures['last']:.0f}): {figures['goto_last']:.2f} s")
        print(f"end: final state of {figures['experiments']:.0f} experiments in "
              f"{figures['end']:.2f} s")
        print(f"attach: state of {figures['attach_experiments']:.0f} experiments at the live "
              f"log's end in {figures['attach']:.2f} s")
        print(f"memory: RSS {rss / 2**20:.0f} MiB")
        ok = max(figures["open"], figures["goto_last"], figures["end"]) < 2.0
        print(f"target under 2 s each: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
