"""One engine per workspace: an exclusive flock on runs/engine.lock, held for the engine's life.

`ratchet run` takes it before it spawns the engine and hands the locked descriptor down, so two
`ratchet run` started at the same instant cannot both get one; an engine started without one
(`Session.run` in a test, say) takes it itself. The kernel lets go of it when the engine dies,
even by kill -9. The file names the holder (session and pid) for the one that is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

NAME = "engine.lock"


class Busy(Exception):
    """Another engine holds the workspace; one line for the user."""


def acquire(runs: Path, session: str, fd: int | None = None) -> int:
    """Take the workspace's lock (or adopt `fd`, taken already and handed down) for `session`;
    returns the descriptor that holds it. Raises Busy when another engine has it."""
    if fd is None:
        runs.mkdir(parents=True, exist_ok=True)
        fd = os.open(runs / NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Busy(f"an engine is already running in this workspace ({holder})") from None
    os.set_inheritable(fd, False)  # training processes must not keep the workspace locked
    record(fd, session, os.getpid())
    return fd


def record(fd: int, session: str, pid: int) -> None:
    """Name the holder in the lock file."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"session": session, "pid": pid}).encode(), 0)


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)


def _holder(fd: int) -> str:
    """'session X, pid N' of the lock's holder, which may be a moment from writing it."""
    for _ in range(20):
        try:
            found = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            found = None
        if isinstance(found, dict):
            return f"session {found.get('session')}, pid {found.get('pid')}"
        time.sleep(0.025)
    return "its session is starting"
