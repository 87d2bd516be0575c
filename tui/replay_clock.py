"""The replay's clock: where in the log the replay stands, how fast it plays, and every move the
person can make (play, step, jump to an experiment). No Textual here: the app calls these and
shows the states they return, so the clock is tested on its own.

A position is a byte offset in the log with every event before it applied. Playing moves the
clock through the session's own event times at `speed` times real time; a quiet stretch longer
than `MAX_GAP` seconds of real time (an engine paused overnight, a slow agent) is skipped.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator

from ratchet.tui.replay_log import ReplayLog
from ratchet.tui.view_state import DashboardState

SPEEDS = (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
MAX_GAP = 1.0  # real seconds: longer quiet stretches are jumped over while playing
NEAR = 4 << 20  # bytes: a jump forward by less than this is applied event by event


class ReplayClock:
    def __init__(self, log: ReplayLog, speed: float = 10.0) -> None:
        self.log = log
        self.speed = float(speed)
        self.playing = False
        self.offset = 0
        self.clock = 0.0  # session time (Unix seconds) the replay has reached
        self._ahead: Iterator[tuple[dict, int]] = iter(())
        self._next: tuple[dict, int] | None = None
        # experiment -> position just after its first own event ("at experiment N")
        self.starts = {n: self._after(offset) for n, offset in log.experiments.items()}
        self._order = sorted(self.starts.values())

    def _after(self, offset: int) -> int:
        moment = self.log.moment_after(offset)
        return moment.end if moment is not None else offset

    # --- moving --------------------------------------------------------------------------

    def seek(self, offset: int) -> DashboardState:
        """Fold the log up to `offset` (a position) and continue from there."""
        state = self.log.state_at(offset)
        self.offset = min(max(0, offset), self.log.size)
        self.clock = state.loop.updated
        self._ahead = self.log.events_from(self.offset)
        self._next = None
        return state

    def start(self) -> DashboardState:
        return self.seek(self.log.start)

    def end(self) -> DashboardState:
        return self.seek(self.log.size)

    def _peek(self) -> tuple[dict, int] | None:
        if self._next is None:
            self._next = next(self._ahead, None)
        return self._next

    def _take(self) -> dict:
        event, self.offset = self._peek()  # type: ignore[misc]
        self._next = None
        self.clock = max(self.clock, float(event.get("t") or 0.0))
        return event

    def advance(self, real_seconds: float) -> list[dict]:
        """While playing: the events whose time the clock passes in `real_seconds`."""
        if not self.playing:
            return []
        self.clock += real_seconds * self.speed
        due: list[dict] = []
        while (ahead := self._peek()) is not None:
            t = float(ahead[0].get("t") or 0.0)
            if t > self.clock:
                if not due and t - self.clock > MAX_GAP * self.speed:
                    self.clock = t  # compress a long quiet stretch
                    continue
                break
            due.append(self._take())
            if len(due) >= 5_000:  # a burst arrives over several ticks, keys stay responsive
                break
        if self._peek() is None:
            self.playing = False  # the end of the log
        return due

    def step_forward(self) -> list[dict]:
        """The events up to and including the loop's next own event."""
        moment = self.log.moment_after(self.offset)
        target = moment.end if moment is not None else self.log.size
        return self._until(target)

    def _until(self, target: int) -> list[dict]:
        due: list[dict] = []
        while self.offset < target and self._peek() is not None:
            due.append(self._take())
        return due

    def forward_to(self, target: int) -> tuple[list[dict], DashboardState | None]:
        """Move forward to `target`: the events to apply when it is near, else a new state."""
        if self.offset <= target <= self.offset + NEAR:
            return self._until(target), None
        return [], self.seek(target)

    def step_back(self) -> DashboardState:
        """Back to just after the loop's previous own event."""
        ends = [m.end for m in self.log.moments]
        i = bisect_left(ends, self.offset) - 1
        return self.seek(ends[i] if i >= 0 else self.log.start)

    def next_experiment_position(self) -> int:
        i = bisect_right(self._order, self.offset)
        return self._order[i] if i < len(self._order) else self.log.size

    def previous_experiment_position(self) -> int:
        i = bisect_left(self._order, self.offset) - 1
        return self._order[i] if i >= 0 else self.log.start

    def experiment_position(self, n: int) -> int | None:
        return self.starts.get(n)

    # --- speed ---------------------------------------------------------------------------

    def faster(self) -> None:
        self.speed = next((s for s in SPEEDS if s > self.speed), SPEEDS[-1])

    def slower(self) -> None:
        self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0])

    def toggle(self) -> None:
        self.playing = not self.playing and self._peek() is not None

    @property
    def at_end(self) -> bool:
        return self.offset >= self.log.size

    def current_experiment(self) -> int | None:
        """The latest experiment that has begun at this position."""
        i = bisect_right(self._order, self.offset)
        if not i:
            return None
        position = self._order[i - 1]
        return next(n for n, p in self.starts.items() if p == position)
