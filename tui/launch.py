"""Opening the dashboard: in this terminal, or served to a browser on 127.0.0.1."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ratchet.tui.app import RatchetDashboard
from ratchet.tui.sources import EventSource, LiveSource, LogFileSource


def source_for(path: Path) -> EventSource:
    """A session folder is followed live; a bare events.jsonl is read as a recording."""
    path = Path(path)
    if path.is_dir():
        return LiveSource(path)
    return LogFileSource(path)


def run_dashboard(path: Path, read_only: bool = False) -> str | None:
    """Run the dashboard in this terminal until `q`; returns how it closed ("detached")."""
    app = RatchetDashboard(source_for(path), read_only=read_only)
    return app.run()


def serve_web(folder: Path, port: int, allow_control: bool) -> None:
    """Serve the dashboard to browsers on 127.0.0.1:port (textual-serve has no login)."""
    from textual_serve.server import Server

    command = [sys.executable, "-m", "ratchet.tui", str(folder)]
    if not allow_control:
        command.append("--read-only")
    server = Server(shlex.join(command), host="127.0.0.1", port=port,
                    title=f"Ratchet {Path(folder).name}")
    server.serve()
