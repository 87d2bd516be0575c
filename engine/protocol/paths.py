"""Where a session's files live and whether its engine is alive: the folder half of the protocol.

A session folder `runs/<id>/` holds `events.jsonl` (the log), `control.sock` (the engine's
socket), `engine.pid` and `engine.log`. Everything here reads the folder only, so the dashboard
and other clients can use it without importing the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def engine_pid(folder: Path) -> int:
    try:
        return int((folder / PID).read_text().strip())
    except (OSError, ValueError):
        return 0


def is_running(folder: Path) -> bool:
    return pid_alive(engine_pid(folder))


def sessions(runs: Path) -> list[Path]:
    """Session folders under a `runs/` folder, oldest first."""
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if (p / EVENTS).exists()]
    return sorted(found, key=lambda p: (p / EVENTS).stat().st_mtime)


def session_tag(folder: Path) -> str:
    """The tag the session started with, from its first event."""
    first = next(events.iter_events(folder / EVENTS), {})
    return first.get("tag", "") if first.get("type") == schema.SESSION_START else ""
