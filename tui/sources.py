"""Where the dashboard's events come from.

A source has `poll() -> list[dict]`: the events that are new since the last call, in order, at
most `batch` of them. The app folds them into its `DashboardState`, so a replay source (a clock
over a finished log) plugs in beside `LiveSource` without touching the panes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ratchet.engine.protocol import events, paths

BATCH = 500  # events per poll at most: a backlog is read in slices small enough to keep keys live


class EventSource(Protocol):
    folder: Path | None
    """The session folder, when there is one (for the control socket and the session's pid)."""

    def poll(self) -> list[dict]: ...

    @property
    def live(self) -> bool:
        """Whether an engine may still append events (the dashboard may then control it)."""
        ...


class LogFileSource:
    """A finished (or recorded) log, with no engine behind it: always read-only."""

    folder: Path | None = None

    def __init__(self, path: Path, batch: int = BATCH,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.batch = batch
        self.tail = events.LogTail(self.path, on_warning=on_warning or (lambda _message: None))

    def poll(self) -> list[dict]:
        return self.tail.poll(self.batch)

    @property
    def offset(self) -> int:
        return self.tail.offset

    @property
    def live(self) -> bool:
        return False


class LiveSource(LogFileSource):
    """Follows a session's `events.jsonl` from the start (or a given offset) as it grows."""

    def __init__(self, folder: Path, batch: int = BATCH,
                 on_warning: Callable[[str], None] | None = None) -> None:
        super().__init__(Path(folder) / paths.EVENTS, batch, on_warning)
        self.folder = Path(folder)

    @property
    def live(self) -> bool:
        return paths.is_running(self.folder)
