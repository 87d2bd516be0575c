"""The dashboard screen: five panes, a status line, and the keys that move between them.

On a wide terminal the panes sit in a grid; on a small one (80x24) one pane shows at a time
under a strip of their names, and tab or 1-5 switch. Control keys (p, s, k, x) go through the
app, which hides them when the session cannot be controlled.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.events import Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from ratchet.tui.panes.agent import AgentPane
from ratchet.tui.panes.diff import DiffPane
from ratchet.tui.panes.experiments import ExperimentsPane
from ratchet.tui.panes.gpu import GpuPane
from ratchet.tui.panes.loss import LossPane
from ratchet.tui.panes.status import StatusLine
from ratchet.tui.view_state import DashboardState

PANES = (("agent", "Agent"), ("diff", "Diff"), ("gpu", "GPU"), ("loss", "Loss"),
         ("experiments", "Experiments"))
WIDE = (120, 32)  # columns and rows from which all panes show at once


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("p", "app.pause", "Pause/resume"),
        Binding("s", "app.steer", "Steer"),
        Binding("k", "app.kill", "Kill exp"),
        Binding("x", "app.stop", "Stop engine"),
        Binding("tab", "next_pane(1)", "Next pane", show=False),
        Binding("shift+tab", "next_pane(-1)", "Previous pane", show=False),
        *(Binding(str(i + 1), f"pane('{key}')", name, show=False)
          for i, (key, name) in enumerate(PANES)),
        Binding("z", "zoom", "Zoom"),
        Binding("escape", "unselect", "Current diff", show=False),
        Binding("j", "app.journal", "Journal", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.active = "agent"  # the pane shown on a small terminal
        self.selected: int | None = None  # experiment chosen in the table

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Static(id="tabstrip")
        with Container(id="panes"):
            yield AgentPane(id="agent", classes="pane")
            yield DiffPane(id="diff", classes="pane")
            yield LossPane(id="loss", classes="pane")
            yield GpuPane(id="gpu", classes="pane")
            yield ExperimentsPane(id="experiments", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self._layout(self.size.width, self.size.height)
        self.query_one("#agent").focus()

    def on_resize(self, event: Resize) -> None:
        self._layout(event.size.width, event.size.height)

    def _layout(self, width: int, height: int) -> None:
        wide = width >= WIDE[0] and height >= WIDE[1]
        self.set_class(wide, "wide")
        self.set_class(not wide, "narrow")
        self._show_active()

    def _show_active(self) -> None:
        for key, _ in PANES:
            self.query_one(f"#{key}").set_class(key == self.active, "active")
        strip = Text()
        for i, (key, name) in enumerate(PANES):
            strip.append(f" {i + 1} {name} ", style="reverse bold" if key == self.active else "")
            strip.append(" ")
        self.query_one("#tabstrip", Static).update(strip)

    # --- drawing ---------------------------------------------------------------------------

    def show(self, state: DashboardState, read_only: bool) -> None:
        if not self.is_mounted:
            return
        try:
            self.query_one(StatusLine).show(state, read_only)
            self.query_one(AgentPane).show(state)
            self.query_one(DiffPane).show(state, self.selected)
            self.query_one(GpuPane).show(state)
            self.query_one(LossPane).show(state)
            self.query_one(ExperimentsPane).show(state)
        except NoMatches:
            # the app's redraw timer outlives the panes while the app shuts down
            return

    # --- keys ------------------------------------------------------------------------------

    def pane(self, key: str) -> Widget:
        return self.query_one(f"#{key}")

    def action_pane(self, key: str) -> None:
        if self.maximized is not None:
            self.minimize()
        self.active = key
        self._show_active()
        self.pane(key).focus()

    def action_next_pane(self, step: int) -> None:
        keys = [key for key, _ in PANES]
        focused = self.focused
        current = next((a.id for a in ([focused] + list(focused.ancestors) if focused else [])
                        if getattr(a, "id", None) in keys), self.active)
        self.action_pane(keys[(keys.index(current) + step) % len(keys)])

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
            return
        focused = self.focused
        target = next((w for w in ([focused] + list(focused.ancestors) if focused else [])
                       if isinstance(w, Widget) and w.has_class("pane")), None)
        if target is not None:
            self.maximize(target, container=False)

    def action_unselect(self) -> None:
        if self.maximized is not None:
            self.minimize()
        self.selected = None
        self.app.refresh_dashboard()

    def select(self, exp: int | None) -> None:
        self.selected = exp
        if self.has_class("narrow") and exp is not None:
            self.active = "diff"  # on a small screen, go where the answer is
            self._show_active()
