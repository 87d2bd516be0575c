"""A control group per child: every CPU second and every process of a run, whatever it does.

The process tree misses what leaves it: a child reaped by the kernel (SIGCHLD ignored) hands its
CPU time to no parent's `children_*` counter, and a daemon (double fork, new session) is no
longer anyone's child. A cgroup holds every process started in it, wherever it moves in the
tree, and its `cpu.stat` counts every CPU second they used, exited ones included; `cgroup.kill`
ends them all at once. So where the engine may create cgroups (cgroup v2, as root or with a
delegated subtree) each trainer and evaluator runs in one of its own, created below the
engine's own cgroup; elsewhere the engine falls back to measuring the process tree, and the
sandbox's verdict says which (`sandbox.hardening`).

A child enters its group before it runs anything: it is started through `/bin/sh`, which writes
its own pid into `cgroup.procs` and then executes the real command.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import time
from pathlib import Path

from ratchet.engine.protocol import paths

_COUNTER = itertools.count()
ENTER = 'echo $$ > "$0/cgroup.procs" && exec "$@"'  # run by /bin/sh: the group, then the command


def _v2_mount() -> Path | None:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or .../unified (hybrid)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if "-" in fields and fields[fields.index("-") + 1] == "cgroup2":
                    return Path(fields[4])
    except OSError:
        pass
    return None


def _own_path() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def base() -> Path | None:
    """The cgroup the engine creates its runs' groups in (its own), or None where it cannot."""
    if os.environ.get("RATCHET_NO_CGROUP") == "1":
        return None
    mount, own = _v2_mount(), _own_path()
    if mount is None or own is None:
        return None
    folder = mount / own.lstrip("/")
    probe = folder / f"ratchet-probe-{os.getpid()}"
    try:
        probe.mkdir()
        ok = (probe / "cpu.stat").is_file() and os.access(probe / "cgroup.procs", os.W_OK)
        probe.rmdir()
    except OSError:
        return None
    return folder if ok else None


def unavailable_reason() -> str:
    if os.environ.get("RATCHET_NO_CGROUP") == "1":
        return "RATCHET_NO_CGROUP=1 is set"
    if _v2_mount() is None:
        return "no cgroup v2 hierarchy is mounted"
    return "the engine may not create cgroups below its own (run as root, or delegate one)"


class RunGroup:
    """One child's cgroup: created empty, entered by the child, killed and removed at the end."""

    def __init__(self, folder: Path):
        self.path = folder
        self.start_usec = 0

    @classmethod
    def create(cls) -> RunGroup | None:
        """A new group, or None where cgroups are not available."""
        root = base()
        if root is None:
            return None
        path = root / f"ratchet-{os.getpid()}-{next(_COUNTER)}"
        try:
            path.mkdir()
        except OSError:
            return None
        return cls(path)

    def argv(self, command: list[str]) -> list[str]:
        """The command, started inside this group."""
        return ["/bin/sh", "-c", ENTER, str(self.path), *command]

    def cpu_seconds(self) -> float:
        """CPU seconds every process of the group has used, those that exited included."""
        try:
            with open(self.path / "cpu.stat") as f:
                for line in f:
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            pass
        return 0.0

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def populated(self) -> bool:
        try:
            return "populated 1" in (self.path / "cgroup.events").read_text()
        except OSError:
            return False

    def kill(self, wait: float = 5.0) -> None:
        """SIGKILL every process of the group and wait until none is left."""
        end = time.monotonic() + wait
        while self.populated() and time.monotonic() < end:
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:  # kernels before 5.14: one by one
                for pid in self.pids():
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # the last process is still being torn down


def remove_orphans() -> int:
    """Kill and remove the groups that engines no longer running left (a killed engine's);
    returns how many."""
    root, removed = base(), 0
    if root is None:
        return 0
    for folder in root.glob("ratchet-*-*"):
        owner = folder.name.split("-")[1]
        if owner.isdigit() and not paths.pid_alive(int(owner)):
            RunGroup(folder).remove()
            removed += 1
    return removed


class GroupCpu:
    """The CPU clock of a run measured from its cgroup (the same interface as `TreeCpu`)."""

    def __init__(self, group: RunGroup):
        self.group = group
        self.start = group.cpu_seconds()

    def mark(self) -> None:
        self.start = self.group.cpu_seconds()

    def used(self) -> float:
        return max(0.0, self.group.cpu_seconds() - self.start)
