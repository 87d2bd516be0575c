"""Helpers for the dashboard tests: the recorded session, and waiting for the app to catch up."""

from __future__ import annotations

import time
from pathlib import Path

from ratchet.tui.app import RatchetDashboard
from ratchet.tui.sources import LiveSource, LogFileSource

RECORDED = Path(__file__).parent / "data" / "session_events.jsonl"


def recorded_app() -> RatchetDashboard:
    return RatchetDashboard(LogFileSource(RECORDED))


def live_app(folder: Path) -> RatchetDashboard:
    return RatchetDashboard(LiveSource(folder))


async def caught_up(pilot, timeout: float = 30.0) -> None:
    """Wait until the app has read everything in its log so far, then redraw."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    while not app.caught_up:
        assert time.monotonic() < deadline, "the dashboard did not catch up with its log"
        await pilot.pause(0.05)
    app.refresh_dashboard()
    await pilot.pause()


async def until(pilot, predicate, timeout: float = 60.0, what: str = "") -> None:
    """Let the app run until predicate() holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await pilot.pause(0.1)
