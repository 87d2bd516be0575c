"""Child processes under supervision: own process group, output drained and capped, deadline.

Nothing a child does can block or fail the engine: its output is always read (a flood is counted,
not stored), a deadline or a kill request stops its whole process group, and a failure to start
is a status like any other.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from ratchet.engine.protocol import schema
from ratchet.engine.runner import cgroup
from ratchet.engine.runner.cpu_clock import TreeCpu

if TYPE_CHECKING:
    from ratchet.engine.runner.result import Result

LIMITS_EVERY_S = 0.25  # how often a child's processes are measured against their limits
CPU_EVERY_S = 0.1  # and their CPU time, against a CPU-clocked allowance, from the process tree
POLL_S = 0.01  # how often a hand-off is looked for (and a cgroup's CPU time read): its latency
LOG_CAP_BYTES = 8 * 2**20  # stdout kept on disk per child; the rest is counted, not stored
TAIL_BYTES = 16 * 2**10  # output tail kept in the result
MAX_LOG_LINE = 4096  # longer lines are never parsed as training logs


class OutputPump(threading.Thread):
    """Drains the child's output so it can never block: log file (capped), tail, log lines."""

    def __init__(self, stream, log_path: Path, on_line: Callable[[dict], None] | None):
        super().__init__(daemon=True)
        self.stream, self.log_path, self.on_line = stream, log_path, on_line
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0
        self.records: list[dict] = []
        self._partial = b""

    def run(self) -> None:
        with open(self.log_path, "wb") as log:
            while chunk := self.stream.read1(65536):
                self.total += len(chunk)
                room = LOG_CAP_BYTES - log.tell()
                if room > 0:
                    log.write(chunk[:room])
                    if len(chunk) > room:
                        log.write(b"\n[ratchet: output beyond this point not stored]\n")
                self._keep_tail(chunk)
                self._parse(chunk)

    def _keep_tail(self, chunk: bytes) -> None:
        self.tail.append(chunk[-TAIL_BYTES:])
        self.tail_size += len(self.tail[-1])
        while self.tail_size - len(self.tail[0]) >= TAIL_BYTES:
            self.tail_size -= len(self.tail.popleft())

    def _parse(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LOG_LINE:
            self._partial = b""
        for line in lines:
            if not line.startswith(b"{") or len(line) > MAX_LOG_LINE:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                record = {k: v for k, v in record.items() if k in
                          ("step", "loss", "lr", "tok_s", "elapsed")
                          and isinstance(v, (int, float))}
                self.records.append(record)
                if self.on_line:
                    self.on_line(record)

    def record_into(self, result: Result) -> None:
        """Hand the training run's log records, output size and output tail to its result."""
        result.train_log = self.records
        result.output_bytes = self.total
        result.tail = self.tail_text()

    def tail_text(self) -> str:
        text = b"".join(self.tail)[-TAIL_BYTES:].decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-60:])


@dataclass(frozen=True)
class Limits:
    """What a child's whole process tree may hold, measured by the engine."""

    max_processes: int = 256
    max_memory_mb: float = 0.0  # resident memory, summed over the tree; 0: no limit

    def breach(self, tree: list[psutil.Process]) -> str:
        """Why these processes (a child's) are over their limits, or ''."""
        if len(tree) > self.max_processes:
            return f"started {len(tree)} processes (limit max_processes = {self.max_processes})"
        if self.max_memory_mb:
            rss = 0
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            if rss / 2**20 > self.max_memory_mb:
                return (f"used {rss / 2**30:.1f} GiB of memory (limit "
                        f"{self.max_memory_mb / 1024:.1f} GiB, memory_limit_gb)")
        return ""


def tree(pid: int) -> list[psutil.Process]:
    """The process `pid` and its descendants; empty once it has ended."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_group(proc: subprocess.Popen, group: cgroup.RunGroup | None = None) -> None:
    """SIGKILL the child, its process group, every descendant and its cgroup, and wait until
    they are gone: a child gets no second past the moment it is stopped (a SIGTERM it ignores
    would be time to go on writing its output)."""
    procs = tree(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for other in procs:
        with contextlib.suppress(psutil.Error):
            other.kill()
    if group is not None:
        group.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    psutil.wait_procs(procs, timeout=5.0)


class Child:
    """A started child process and the pump that drains its output.

    With `stdin=True` the child gets a pipe it can wait on, so it can be started ahead of need
    (imports done) and told to go later with `send`.
    """

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path,
                 on_line: Callable[[dict], None] | None = None, *, stdin: bool = False,
                 pump_class: type[OutputPump] = OutputPump, limits: Limits | None = None):
        self.start_error = ""
        self.limits = limits
        self.handoff_seconds: float | None = None
        self.cpu_seconds: float | None = None  # its CPU time, where it was on that clock
        self.group = cgroup.RunGroup.create()  # None where cgroups are not available
        if self.group is not None:
            argv = self.group.argv(argv)
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                argv, cwd=cwd, env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self.proc, self.start_error = None, str(exc)
            self.pump = pump_class(None, log_path, None)
            if self.group is not None:
                self.group.remove()
            return
        self.pump = pump_class(self.proc.stdout, log_path, on_line)
        self.pump.start()

    def meter(self) -> TreeCpu | cgroup.GroupCpu:
        """Its CPU time from now on: from its cgroup (every process it ever started), or where
        there is none, from its process tree (see cpu_clock's limits)."""
        if self.group is not None:
            return cgroup.GroupCpu(self.group)
        return TreeCpu(self.proc.pid if self.proc else -1)

    def processes(self) -> list[psutil.Process]:
        """Every process of the child: its cgroup's, or its tree's."""
        if self.group is None:
            return tree(self.proc.pid) if self.proc else []
        found = []
        for pid in self.group.pids():
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        return found

    def send(self, line: str, data: bytes = b"") -> bool:
        """Write one line (and then `data`) to the child's stdin and close it; False if the
        child is gone. Data goes from a thread of its own, so a child that stops reading can
        never block the caller (its `stop` closes the pipe)."""
        if self.proc is None or self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            if not data:
                self.proc.stdin.close()
                return True
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            return False
        threading.Thread(target=self._feed, args=(data,), daemon=True).start()
        return True

    def _feed(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self.proc.stdin.write(data)
            self.proc.stdin.close()

    def watch(self, deadline: float, should_kill: Callable[[], bool] | None = None,
              name: str = "train.py", limit: str = "its budget", *,
              handed_over: Callable[[], bool] | None = None,
              late: str = schema.TIMEOUT, cpu: TreeCpu | cgroup.GroupCpu | None = None,
              cpu_allowance: float = 0.0) -> tuple[str, str]:
        """Wait for the child to end (at most `deadline` s from now); returns (status, error).

        `name` and `limit` word the errors: "train.py exited with 1", "... exceeded its budget".
        With `handed_over`, the child's work is done the moment it returns true: the child is
        stopped then, and `handoff_seconds` says when, on the engine's clock; a hand-off after
        the deadline (or past `cpu_allowance`) gets the status `late`, as does a child still
        running at the deadline. With `cpu`, the child may also use at most `cpu_allowance` CPU
        seconds (`cpu_seconds` says how many it used).
        """
        if self.proc is None:
            return schema.CRASHED, f"cannot start {name}: {self.start_error}"
        started = time.monotonic()
        end, measured, timed = started + deadline, 0.0, 0.0
        every = POLL_S if self.group is not None else CPU_EVERY_S  # a cgroup is cheap to read
        status, error = schema.OK, ""
        while True:
            running = self.proc.poll() is None
            if handed_over is not None and handed_over():
                return self._handed_over(started, deadline, cpu, cpu_allowance, name, limit, late)
            if not running:
                break
            now = time.monotonic()
            if cpu is not None and now - timed >= every:
                timed = now
                self.cpu_seconds = round(cpu.used(), 3)
                if self.cpu_seconds > cpu_allowance:
                    status, error = late, (f"{name} exceeded {limit} ({cpu_allowance:g} CPU "
                                           f"seconds); killed")
                    break
            if self.limits is not None and now - measured > LIMITS_EVERY_S:
                measured = now
                breach = self.limits.breach(self.processes())
                if breach:
                    status, error = schema.OVER_LIMIT, f"{name} {breach}; killed"
                    break
            if now > end:
                status, error = late, f"{name} exceeded {limit} ({deadline:g} s); killed"
                break
            if should_kill and should_kill():
                status, error = schema.KILLED, "killed on request"
                break
            time.sleep(POLL_S)
        self.stop()
        if status == schema.OK and self.proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
            # not our kill: the kernel's out-of-memory killer is the usual sender
            return schema.CRASHED, f"{name} was killed by SIGKILL from outside (out of memory?)"
        if status == schema.OK and self.proc.returncode != 0:
            status = schema.CRASHED
            line = last_error_line(self.pump.tail_text())
            # the child's own words, marked as its own: it cannot pass for the engine's
            error = f"{name} exited with {self.proc.returncode}" + \
                (f"; its last line: {line}" if line else "")
        return status, error

    def _handed_over(self, started: float, deadline: float, cpu, cpu_allowance: float,
                     name: str, limit: str, late: str) -> tuple[str, str]:
        """The child has handed over: the instant is measured, then it is stopped at once
        (nothing it does from now on can reach the result). Its exit status does not matter;
        the instant does: after the allowance, the hand-off is `late`."""
        self.handoff_seconds = time.monotonic() - started
        if cpu is not None:
            self.cpu_seconds = round(cpu.used(), 3)
        self.stop()
        if self.handoff_seconds > deadline:
            return late, (f"{name} handed over after {limit} ({self.handoff_seconds:.1f} of "
                          f"{deadline:g} s); not scored")
        if cpu is not None and self.cpu_seconds > cpu_allowance:
            return late, (f"{name} handed over after {limit} ({self.cpu_seconds:g} of "
                          f"{cpu_allowance:g} CPU seconds); not scored")
        return schema.OK, ""

    def stop(self) -> None:
        """Stop the child's process group (if still running) and finish reading its output."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        stop_group(self.proc, self.group)  # everything it started, wherever it went
        self.pump.join(timeout=5.0)
        self.proc.stdout.close()
        if self.group is not None:
            self.group.remove()
            self.group = None


def model_handed_over(model_dir: Path) -> Callable[[], bool]:
    """Whether the trainer has handed over its model: the harness writes the summary last."""
    def check() -> bool:
        return regular_file(model_dir / "model.pt2") and \
            read_json(model_dir / "summary.json") is not None
    return check


def regular_file(path: Path) -> bool:
    """A plain file, not a link: what a child leaves is never followed out of its folder."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_json(path: Path, limit: int = 65536) -> dict | None:
    """A small JSON object a child handed back, or None if missing, a link, too large or not
    an object."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            text = f.read(limit + 1)
        if len(text) > limit:
            return None
        data = json.loads(text)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def number(data: dict, name: str, kind=float, default=0):
    """A finite number from a child's JSON, as `kind`; `default` for anything else."""
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return kind(value)


def last_error_line(tail: str) -> str:
    for line in reversed(tail.splitlines()):
        line = line.strip()
        if line and not line.startswith("{"):
            return line[:300]
    return ""
