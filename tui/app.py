"""The Ratchet dashboard app: folds events from a source into state and redraws on a timer.

Events are ingested on the UI thread in short time slices (a long backlog never blocks keys for
more than a few tens of milliseconds); the panes redraw from the state a few times a second,
never per event. Control commands go to the engine's socket on worker threads.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from ratchet.engine.protocol import control
from ratchet.tui.messages import CommandAnswered, ExperimentSelected
from ratchet.tui.screens.confirm import ConfirmScreen
from ratchet.tui.screens.dashboard import DashboardScreen
from ratchet.tui.screens.help import HelpScreen
from ratchet.tui.screens.journal import JournalScreen
from ratchet.tui.screens.steer import SteerScreen
from ratchet.tui.sources import EventSource
from ratchet.tui.view_state import DashboardState

INGEST_EVERY = 0.05  # seconds between ingest ticks
INGEST_SLICE = 0.04  # seconds of folding per tick at most, so keys stay responsive
POLL_IDLE = 0.25  # seconds between polls once caught up with the log
REDRAW_EVERY = 0.25  # seconds between redraws (4 Hz)
LIVENESS_EVERY = 1.0  # seconds between checks that the engine still runs
CONTROL_KEYS = ("pause", "steer", "kill", "stop")


class RatchetDashboard(App[str]):
    """The dashboard over one event source. `read_only` hides the control keys."""

    CSS_PATH = "app.tcss"
    TITLE = "Ratchet"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, source: EventSource, read_only: bool = False) -> None:
        super().__init__()
        self.source = source
        self.state = DashboardState()
        self.force_read_only = read_only
        self.live = False
        self._dirty = True
        self._caught_up = False
        self._next_poll = 0.0
        self._next_liveness = 0.0
        self._bad_lines = 0
        self._warned_dead = False

    @property
    def control_path(self) -> Path | None:
        folder = getattr(self.source, "folder", None)
        return Path(folder) / "control.sock" if folder is not None else None

    @property
    def read_only(self) -> bool:
        return self.force_read_only or not self.live or self.state.loop.ended

    @property
    def caught_up(self) -> bool:
        """Whether the last poll found nothing new (tests wait for this)."""
        return self._caught_up

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

    def on_mount(self) -> None:
        self._check_liveness()
        self.set_interval(INGEST_EVERY, self._ingest)
        self.set_interval(REDRAW_EVERY, self._redraw)

    # --- events in ------------------------------------------------------------------------

    def _ingest(self) -> None:
        now = time.monotonic()
        if self._caught_up and now < self._next_poll:
            return
        deadline = time.perf_counter() + INGEST_SLICE
        while True:
            batch = self.source.poll()
            if not batch:
                self._caught_up = True
                self._next_poll = now + POLL_IDLE
                break
            self._caught_up = False
            was = self.read_only
            self.state.extend(batch)
            self._dirty = True
            if was != self.read_only:  # the session ended: the footer drops the control keys
                self.refresh_bindings()
            if time.perf_counter() >= deadline:
                break
        if now >= self._next_liveness:
            self._check_liveness()
        tail = getattr(self.source, "tail", None)
        bad = getattr(tail, "bad_lines", 0)
        if bad > self._bad_lines:
            if not self._bad_lines:
                self.notify(f"skipped {bad} line(s) of the event log that are not valid events",
                            severity="warning", timeout=8)
            self._bad_lines = bad

    def _check_liveness(self) -> None:
        self._next_liveness = time.monotonic() + LIVENESS_EVERY
        was = self.read_only
        self.live = bool(self.source.live)
        if was != self.read_only:
            self.refresh_bindings()
            self._dirty = True
        folder = getattr(self.source, "folder", None)
        if (folder is not None and not self.live and self.state.events and self._caught_up
                and not self.state.loop.ended and not self._warned_dead):
            self._warned_dead = True
            self.notify(f"the engine is not running and the session did not end (see "
                        f"{Path(folder) / 'engine.log'}); `ratchet run --resume` continues it",
                        severity="error", timeout=30)

    def reset(self, state: DashboardState) -> None:
        """Show another state, e.g. one refolded from a prefix of the log (replay's seek)."""
        self.state = state
        self._dirty = True
        self.refresh_bindings()

    def _redraw(self) -> None:
        if self._dirty:
            self._dirty = False
            self.refresh_dashboard()

    def refresh_dashboard(self) -> None:
        screen = self._dashboard()
        if screen is not None:
            screen.show(self.state, self.read_only)

    def _dashboard(self) -> DashboardScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                return screen
        return None

    def on_experiment_selected(self, message: ExperimentSelected) -> None:
        screen = self._dashboard()
        if screen is not None:
            screen.select(message.exp)
            self.refresh_dashboard()

    # --- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in CONTROL_KEYS and self.read_only)

    def action_pause(self) -> None:
        self.send("resume" if self.state.pause_requested else "pause")

    def action_steer(self) -> None:
        def sent(note: str | None) -> None:
            if note:
                self.send("steer", text=note)

        self.push_screen(SteerScreen(), sent)

    def action_kill(self) -> None:
        runs = self.state.running_experiments()
        if not runs:
            self.notify("no experiment is running", severity="warning")
            return
        running = runs[-1]

        def answered(yes: bool | None) -> None:
            if yes:
                self.send("kill")

        question = f"Kill experiment #{running.n} ({running.description})?" if len(runs) == 1 \
            else f"Kill the {len(runs)} running experiments ({', '.join(f'#{r.n}' for r in runs)})?"
        self.push_screen(ConfirmScreen(question), answered)

    def action_stop(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop")

        self.push_screen(ConfirmScreen("Stop the engine? The running experiment is recorded as "
                                       "interrupted; `ratchet run --resume` continues."),
                         answered)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def action_journal(self) -> None:
        self.push_screen(JournalScreen(self.state.loop.journal))

    async def action_quit(self) -> None:
        self.exit("detached")

    # --- control --------------------------------------------------------------------------

    @work(thread=True, group="control", exit_on_error=False)
    def send(self, cmd: str, **args: str) -> None:
        """Send one command to the engine; the answer comes back as CommandAnswered."""
        path = self.control_path
        if path is None:
            self.post_message(CommandAnswered(cmd, "this session has no engine to control"))
            return
        try:
            reply = control.send(path, cmd, **args)
        except control.ControlError as exc:
            self.post_message(CommandAnswered(cmd, str(exc)))
            return
        error = "" if reply.get("ok") else str(reply.get("error", "refused"))
        self.post_message(CommandAnswered(cmd, error))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed unexpectedly shows its error; the dashboard carries on."""
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.name}: {event.worker.error}", severity="error",
                        timeout=8)

    def on_command_answered(self, message: CommandAnswered) -> None:
        if message.error:
            self.notify(f"{message.cmd}: {message.error}", severity="error", timeout=8)
        else:
            self.notify(f"{message.cmd}: sent", timeout=3)
