"""The `?` screen: every key and what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("p", "pause or resume the loop (pausing waits for the running experiment)"),
    ("s", "steer: send a note to the agent"),
    ("k", "kill the running experiment (asks first)"),
    ("x", "stop the engine (asks first)"),
    ("tab / shift+tab", "next / previous pane"),
    ("1-5", "Agent, Diff, GPU, Loss, Experiments"),
    ("z", "zoom the focused pane (again to restore)"),
    ("v", "in the Loss pane: training loss or val_bpb across experiments"),
    ("enter", "in the Experiments pane: show that experiment's diff and reasoning"),
    ("escape", "back to the current proposal's diff"),
    ("j", "the agent's research journal"),
    ("q", "close the dashboard; the engine keeps running"),
    ("?", "this help"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, read_only: bool) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            if self.read_only and key in ("p", "s", "k", "x"):
                continue
            table.add_row(key, what)
        with VerticalScroll(classes="dialog help"):
            yield Static("Ratchet dashboard keys" + (" (read-only)" if self.read_only else ""),
                         classes="question")
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
