"""The CPU clock: a training budget counted in the CPU time of every process the trainer starts.

On a CPU workspace the wall clock turns machine load into noise: another job on one core takes
a share of every step, so three runs of the same code differ by how busy the machine was. CPU
time counts only the work the trainer's own processes got done, so a budget of CPU seconds
buys about the same number of steps idle or busy. The budget the user writes stays in seconds:
it is scaled by the cores the engine may use (`cores`), so that a budget of 20 s buys on an
idle machine what 20 s of wall clock did.

The engine measures it itself; what train.py reports is never used. Where it can, from the
run's own cgroup (`cgroup.GroupCpu`), which counts every process ever in it, exited or
daemonised; elsewhere from the process tree (`TreeCpu`): a process that exits hands its time to
its parent once reaped (`children_*`), so work done by short-lived children is counted too, and
the sandbox refuses the SIGCHLD handlers that would have the kernel reap them unseen. The wall
clock stays as a backstop (`WALL_FACTOR`), so a trainer that sleeps or waits still ends.
"""

from __future__ import annotations

import contextlib
import os

import psutil

CPU, WALL = "cpu", "wall"
WALL_FACTOR = 8.0  # a CPU-clocked run may take this many times its allowance in wall time:
# a machine with each core shared four ways still finishes an honest run
# The trainer's threads sleep while they wait instead of spinning: spinning burns CPU time,
# and so budget, on a core another process holds, with nothing done.
QUIET_THREADS = {"OMP_WAIT_POLICY": "PASSIVE"}


def cores() -> int:
    """The cores this engine (and so its trainers) may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(clock: str, device: str) -> str:
    """The clock a run uses: `auto` is CPU time on a CPU device and the wall clock on a GPU,
    where faster code should win more steps."""
    if clock == "auto":
        return CPU if device == "cpu" else WALL
    return clock


def allowance(clock: str, seconds: float) -> tuple[float, float]:
    """A run's allowance of `seconds` as (wall-clock deadline, CPU seconds): on the CPU clock
    the CPU time binds and the wall clock is the backstop; on the wall clock there is no CPU
    limit (0)."""
    if clock == CPU:
        return seconds * WALL_FACTOR, seconds * cores()
    return seconds, 0.0


def trainer_env(clock: str) -> dict[str, str]:
    """What a trainer started for this clock needs in its environment before torch loads."""
    return {"RATCHET_CLOCK": clock, "RATCHET_CORES": str(cores()),
            **(QUIET_THREADS if clock == CPU else {})}


class TreeCpu:
    """CPU seconds used by the process tree under `pid` since `mark` (or since creation)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.start = self.top = 0.0  # top never goes back, even while a child awaits reaping
        self.start = self._total()

    def _total(self) -> float:
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return self.start + self.top  # it ended: what it used stays as last measured
        total = 0.0
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def mark(self) -> None:
        """Start counting from now (a warm trainer's imports are not its run's)."""
        self.start, self.top = self._total(), 0.0

    def used(self) -> float:
        self.top = max(self.top, self._total() - self.start)
        return self.top
