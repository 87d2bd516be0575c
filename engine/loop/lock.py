"""One engine per workspace: an exclusive flock on runs/engine.lock, held for the engine's life.

`ratchet run` takes it before it spawns the engine and hands the locked descriptor down, so two
`ratchet run` started at the same instant cannot both get one; an engine started without one
(`Session.run` in a test, say) takes it itself. The kernel lets go of it when the engine dies,
even by kill -9. The file names the holder (session and pid) for the one that is refused.

The engine that holds the workspace also keeps a little room on its disk: runs/engine.reserve,
written afresh at each claim (so a claim needs that much free space beyond it, or it is refused
in one line, `DiskFull`) and deleted when the disk fills, to make room for the engine's last
records (`release_reserve`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from ratchet.engine.protocol import paths
from ratchet.engine.runner import cgroup, evaluation
from ratchet.engine.workspace.layout import WorkspaceError

NAME = "engine.lock"
RESERVE = "engine.reserve"
RESERVE_BYTES = 1 << 20  # the engine's last events, results.tsv rows and branch move fit
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# what the processes of an engine killed mid-experiment leave in its session's folder
LEFTOVERS = ("*/warm", f"*/exp-*/{evaluation.PRIVATE}", "*/exp-*/trainer",
             "*/exp-*/compile-cache")
FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "Out of diskspace")


class Busy(Exception):
    """Another engine holds the workspace; one line for the user."""


class DiskFull(WorkspaceError):
    """The workspace's disk has no room for the engine's records; one line for the user."""


def full_message(runs: Path) -> str:
    return (f"the disk is full (no space left on the device of {runs}); free some space, then "
            f"`ratchet run --resume`")


def is_full(exc: BaseException | None) -> bool:
    """Whether an error (or one it came from) is a full disk: ENOSPC or a quota, from a write
    of the engine's own or a git command's."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in FULL_ERRNOS):
            return True
        if any(text in str(getattr(exc, "stderr", "") or "") for text in FULL_TEXTS):
            return True  # git.GitCommandError: the command's own words
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def mentions_full(text: str) -> bool:
    return any(t in text for t in FULL_TEXTS) or "[Errno 28]" in text


def failed_for_room(error: str, folder: Path) -> bool:
    """Whether a failed run's failure is a full disk's: the engine's own write said so (the
    worker's or the evaluation's error), or `folder`'s disk has no room now."""
    own = error.startswith(("worker failed:", "evaluation failed:"))
    return (own and mentions_full(error)) or not has_room(folder)


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
    try:
        record(fd, session, os.getpid())
        reserve(runs)
    except OSError as exc:
        os.close(fd)
        if is_full(exc):
            raise DiskFull(full_message(runs)) from None
        raise
    return fd


def record(fd: int, session: str, pid: int) -> None:
    """Name the holder in the lock file: its session, pid and start mark (`paths.start_mark`),
    so that a reader can tell it from a later process with the same pid."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"session": session, "pid": pid,
                              "started": paths.start_mark(pid)}).encode(), 0)


def reserve(runs: Path) -> None:
    """Write the reserve afresh (raises OSError, ENOSPC, on a disk without that much room
    beyond it); random bytes, so that no file system stores it in less."""
    spare = runs / (RESERVE + ".new")
    try:
        with open(spare, "wb") as f:
            f.write(os.urandom(RESERVE_BYTES))
            f.flush()
            os.fsync(f.fileno())
        os.replace(spare, runs / RESERVE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(spare)
        raise


def release_reserve(runs: Path) -> bool:
    """Free the reserve for the engine's last records; False if it was gone already."""
    try:
        os.unlink(runs / RESERVE)
    except OSError:
        return False
    return True


def has_room(folder: Path, size: int = 1 << 16) -> bool:
    """Whether `size` bytes can still be written in `folder` (a probe, removed again)."""
    probe = folder / ".room-probe"
    try:
        with open(probe, "wb") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return not is_full(exc)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return True


def remove_leftovers(runs: Path) -> None:
    """Remove the private folders (models among them) that the processes of engines killed
    mid-experiment left in the workspace's sessions; only while holding the workspace."""
    for pattern in LEFTOVERS:
        for folder in runs.glob(pattern):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
    cgroup.remove_orphans()  # and the cgroups of its trainers and evaluators


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
