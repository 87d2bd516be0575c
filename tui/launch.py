"""Opening the dashboard: in this terminal, or served to a browser on 127.0.0.1."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ratchet.tui.app import RatchetDashboard
from ratchet.tui.replay_log import ReplayLog
from ratchet.tui.sources import EventSource, LiveSource, LogFileSource

FAST_START_BYTES = 4 << 20  # logs longer than this start from the replay index's fold


def source_for(path: Path) -> EventSource:
    """A session folder is followed live; a bare events.jsonl is read as a recording."""
    path = Path(path)
    if path.is_dir():
        return LiveSource(path)
    return LogFileSource(path)


def dashboard(path: Path, read_only: bool = False) -> RatchetDashboard:
    """The dashboard on a session folder (live) or a recorded log.

    A live log longer than FAST_START_BYTES is not folded event by event from its start (a
    night of a million events would keep the person waiting a minute): the replay index folds
    it to its current end in about a second, to the same state, and the dashboard follows on
    from there."""
    source = source_for(path)
    app = RatchetDashboard(source, read_only=read_only)
    log_path = getattr(source, "path", None)
    if isinstance(source, LiveSource) and log_path.is_file() \
            and log_path.stat().st_size > FAST_START_BYTES:
        log = ReplayLog(log_path)
        try:
            app.state = log.state_at(log.size)
            source.tail.offset = log.size
            source.tail.bad_lines = log.bad_lines  # the app says so once, as for a live read
        finally:
            log.close()
    return app


def run_dashboard(path: Path, read_only: bool = False) -> str | None:
    """Run the dashboard in this terminal until `q`; returns how it closed ("detached")."""
    return dashboard(path, read_only).run()


def serve_web(folder: Path, port: int, allow_control: bool) -> None:
    """Serve the dashboard to browsers on 127.0.0.1:port (textual-serve has no login)."""
    from textual_serve.server import Server

    command = [sys.executable, "-m", "ratchet.tui", str(folder)]
    if not allow_control:
        command.append("--read-only")
    server = Server(shlex.join(command), host="127.0.0.1", port=port,
                    title=f"Ratchet {Path(folder).name}")
    server.serve()
