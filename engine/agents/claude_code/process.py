"""One run of the `claude` CLI: the prompt on stdin, its output read line by line as it comes,
under a hard deadline, in its own process group so that nothing it started outlives it."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STDERR_CHARS = 4000


@dataclass
class Finished:
    returncode: int | None  # None when it was stopped at the deadline
    stderr: str  # its last STDERR_CHARS characters
    timed_out: bool = False


def run(argv: list[str], prompt: str, cwd: Path, env: dict[str, str], timeout: float,
        on_line: Callable[[str], None]) -> Finished:
    """Raises FileNotFoundError / PermissionError when argv[0] cannot be started."""
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             encoding="utf-8", errors="replace", start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def feed() -> None:  # a thread, so a child that writes before reading cannot deadlock
        try:
            child.stdin.write(prompt)
            child.stdin.close()
        except OSError:
            pass

    def read_out() -> None:
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    def read_err() -> None:
        for line in child.stderr:
            errors.append(line)
            if sum(map(len, errors)) > 4 * STDERR_CHARS:
                del errors[: len(errors) // 2]

    threads = [threading.Thread(target=f, daemon=True) for f in (feed, read_out, read_err)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if line is None:
            break
        on_line(line)
    if timed_out:
        _kill(child)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _kill(child)
        child.wait()
    _kill(child)  # whatever it left in its group
    threads[2].join(timeout=2)
    return Finished(None if timed_out else child.returncode,
                    "".join(errors)[-STDERR_CHARS:], timed_out)


def _kill(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
