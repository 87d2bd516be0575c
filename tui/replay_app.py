"""`ratchet replay`: the dashboard fed from a session's log by a clock the person controls.

The panes are the live dashboard's own; only the source differs. Keys: space play/pause,
left/right one step (the loop's next or previous event), shift+left/right one experiment,
[ and ] slower/faster, g go to experiment N, home/end.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ratchet.engine.protocol import paths
from ratchet.tui import format as fmt
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.panes.status import StatusLine
from ratchet.tui.replay_clock import ReplayClock
from ratchet.tui.replay_log import ReplayLog
from ratchet.tui.screens.dashboard import DashboardScreen
from ratchet.tui.screens.goto import GotoScreen
from ratchet.tui.view_state import DashboardState


class ReplaySource:
    """The app's event source during a replay: whatever the clock lets through each poll."""

    folder = None  # nothing to control
    live = False

    def __init__(self, clock: ReplayClock) -> None:
        self.clock = clock
        self._last = time.monotonic()

    def poll(self) -> list[dict]:
        now = time.monotonic()
        due = self.clock.advance(now - self._last)
        self._last = now
        return due


class ReplayBar(Static):
    """Where the replay stands: playing or paused, speed, session time, experiment."""

    def show(self, clock: ReplayClock, state: DashboardState) -> None:
        started = state.loop.started or clock.clock
        total = clock.log.moments[-1].t - started if clock.log.moments else 0.0
        text = Text()
        text.append(" ▶ playing " if clock.playing else " ❚❚ paused ",
                    style="reverse bold green" if clock.playing else "reverse bold yellow")
        text.append(f" {clock.speed:g}x  ")
        if clock.clock:
            text.append(datetime.fromtimestamp(clock.clock).strftime("%Y-%m-%d %H:%M:%S"))
            text.append(f"  +{fmt.duration(max(0.0, clock.clock - started))}"
                        f" of {fmt.duration(max(0.0, total))}")
        numbers = clock.log.experiment_numbers()
        current = clock.current_experiment()
        if numbers:
            text.append(f"  exp {current if current is not None else '-'}/{numbers[-1]}")
        if clock.at_end:
            text.append("  (end)", style="dim")
        self.update(text)


class ReplayScreen(DashboardScreen):
    BINDINGS = [
        Binding("space", "app.play", "Play/pause", priority=True),
        Binding("right", "app.step(1)", "Step", priority=True),
        Binding("left", "app.step(-1)", "Back", show=False, priority=True),
        Binding("shift+right", "app.experiment(1)", "Next exp", priority=True),
        Binding("shift+left", "app.experiment(-1)", "Prev exp", show=False, priority=True),
        Binding("left_square_bracket", "app.speed(-1)", "Slower", show=False, priority=True),
        Binding("right_square_bracket", "app.speed(1)", "Faster", show=False, priority=True),
        Binding("g", "app.goto", "Go to exp", priority=True),
        Binding("home", "app.home", "Start", show=False, priority=True),
        Binding("end", "app.end", "End", show=False, priority=True),
    ]

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            yield widget
            if isinstance(widget, StatusLine):
                yield ReplayBar(id="replaybar")


class ReplayDashboard(RatchetDashboard):
    """The dashboard over a replay clock; always read-only."""

    def __init__(self, log: ReplayLog, speed: float = 10.0, play: bool = True) -> None:
        self.clock = ReplayClock(log, speed)
        super().__init__(ReplaySource(self.clock), read_only=True)
        self.state = self.clock.start()
        self.clock.playing = play and not self.clock.at_end

    def get_default_screen(self) -> ReplayScreen:
        return ReplayScreen()

    def refresh_dashboard(self) -> None:
        super().refresh_dashboard()
        for bar in self.query(ReplayBar):
            bar.show(self.clock, self.state)

    def _moved(self, events: list[dict], state: DashboardState | None = None) -> None:
        if state is not None:
            self.reset(state)
        self.state.extend(events)
        self._dirty = True
        self.refresh_dashboard()

    # --- keys ----------------------------------------------------------------------------

    def action_play(self) -> None:
        self.source.poll()  # restart real time from now, not from the last tick
        self.clock.toggle()
        self.refresh_dashboard()

    def action_step(self, direction: int) -> None:
        self.clock.playing = False
        if direction > 0:
            self._moved(self.clock.step_forward())
        else:
            self._moved([], self.clock.step_back())

    def action_experiment(self, direction: int) -> None:
        self.clock.playing = False
        if direction > 0:
            self._moved(*self.clock.forward_to(self.clock.next_experiment_position()))
        else:
            self._moved([], self.clock.seek(self.clock.previous_experiment_position()))

    def action_speed(self, direction: int) -> None:
        self.clock.faster() if direction > 0 else self.clock.slower()
        self.refresh_dashboard()

    def action_goto(self) -> None:
        numbers = self.clock.log.experiment_numbers()
        if not numbers:
            self.notify("this log has no experiments yet", severity="warning")
            return

        def chosen(n: int | None) -> None:
            if n is not None:
                self.go_to_experiment(n)

        self.push_screen(GotoScreen(numbers[0], numbers[-1]), chosen)

    def go_to_experiment(self, n: int) -> None:
        position = self.clock.experiment_position(n)
        if position is None:
            self.notify(f"experiment {n} is not in this log", severity="warning")
            return
        self.clock.playing = False
        self._moved([], self.clock.seek(position))

    def action_home(self) -> None:
        self.clock.playing = False
        self._moved([], self.clock.start())

    def action_end(self) -> None:
        self.clock.playing = False
        self._moved([], self.clock.end())


def run_replay(path: Path, speed: float) -> None:
    """Replay a session folder's log (or an events.jsonl) in this terminal until `q`."""
    path = Path(path)
    log_path = path / paths.EVENTS if path.is_dir() else path
    warnings: list[str] = []
    log = ReplayLog(log_path, on_warning=warnings.append)
    app = ReplayDashboard(log, speed)
    try:
        if warnings:
            app.call_later(lambda: app.notify("; ".join(warnings), severity="warning",
                                              timeout=8))
        app.run()
    finally:
        log.close()
