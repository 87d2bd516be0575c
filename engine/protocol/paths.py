"""Where a session's files live and whether its engine is alive: the folder half of the protocol.

A session folder `runs/<id>/` holds `events.jsonl` (the log), `control.sock` (the engine's
socket), `engine.pid` and `engine.log`. Everything here reads the folder only, so the dashboard
and other clients can use it without importing the engine.

A pid alone proves nothing: after a crash or a reboot the number may name another process. So
`engine.pid` holds the engine's pid and its start mark (`start_mark`), and a session's engine is
alive only while a process with that pid and that mark is (`engine_alive`); a pid file without
a mark (older Ratchet) counts only where the process's command line is that session's engine.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import psutil

from ratchet.engine.protocol import events, schema

EVENTS = "events.jsonl"
SOCKET = "control.sock"
PID = "engine.pid"
ENGINE_LOG = "engine.log"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still answers kill(0); its /proc state says Z
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


def start_mark(pid: int) -> str:
    """When process `pid` started, as text that no later process with the same pid shares
    ('' when there is none, or it is a zombie). On Linux the start in clock ticks since boot,
    which no change of the wall clock moves; elsewhere psutil's create time."""
    if pid <= 0:
        return ""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(") ", 1)[-1].split()
        except OSError:
            return ""
        return fields[19] if fields[0] != "Z" and len(fields) > 19 else ""
    try:
        proc = psutil.Process(pid)
        return "" if proc.status() == psutil.STATUS_ZOMBIE else repr(proc.create_time())
    except psutil.Error:
        return ""


def write_pid(folder: Path, pid: int) -> None:
    """Record the session's engine: its pid and its start mark."""
    (folder / PID).write_text(f"{pid} {start_mark(pid)}\n")


def engine_id(folder: Path) -> tuple[int, str]:
    """The recorded engine: (pid, start mark); the mark is '' in an older pid file, and the
    pid 0 where there is no readable file."""
    try:
        parts = (folder / PID).read_text().split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (OSError, ValueError, IndexError):
        return 0, ""


def engine_pid(folder: Path) -> int:
    return engine_id(folder)[0]


def engine_alive(folder: Path) -> int:
    """The pid of the session's own engine while it runs, else 0: a process that merely has
    the recorded pid (a number reused since) does not count."""
    pid, mark = engine_id(folder)
    if not pid_alive(pid):
        return 0
    if mark:
        return pid if start_mark(pid) == mark else 0
    return pid if _runs_engine_of(pid, folder.name) else 0


def _runs_engine_of(pid: int, session: str) -> bool:
    """Whether the process's command line is the engine of `session` (`daemon.spawn`'s)."""
    with contextlib.suppress(psutil.Error):
        line = psutil.Process(pid).cmdline()
        return "ratchet.engine.loop.daemon" in line and session in line
    return False


def is_running(folder: Path) -> bool:
    return engine_alive(folder) > 0


def sessions(runs: Path) -> list[Path]:
    """Session folders under a `runs/` folder, oldest first by when each session began (its
    first event): an import of older runs written today is not the newest session."""
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if (p / EVENTS).exists()]
    return sorted(found, key=lambda p: (started(p), p.name))


def started(folder: Path) -> float:
    """When the session began: its first event's time; the log's own time while it has none."""
    first = next(events.iter_events(folder / EVENTS), {})
    t = first.get("t")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return float(t)
    try:
        return (folder / EVENTS).stat().st_mtime
    except OSError:
        return 0.0


def session_tag(folder: Path) -> str:
    """The tag the session started with, from its first event."""
    first = next(events.iter_events(folder / EVENTS), {})
    return first.get("tag", "") if first.get("type") == schema.SESSION_START else ""
