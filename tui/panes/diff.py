"""The current proposal's diff (or a chosen experiment's diff and reasoning), highlighted."""

from __future__ import annotations

from rich.console import Group
from rich.rule import Rule
from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ratchet.tui.view_state import DashboardState


class DiffPane(VerticalScroll):
    BORDER_TITLE = "2 Diff"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: tuple | None = None

    def compose(self):
        yield Static(id="diff-body")

    def show(self, state: DashboardState, selected: int | None) -> None:
        record = state.experiments.get(selected) if selected is not None else None
        if record is not None:
            key = ("exp", selected, record.diff, len(record.reasoning), record.status)
            title = f"2 Diff · #{record.n} {record.description}"
            diff, reasoning = record.diff, record.reasoning
        else:
            current = state.current_exp
            key = ("current", current, state.current_diff)
            title = f"2 Diff · proposal #{current}" if current else "2 Diff"
            diff, reasoning = state.current_diff, ""
        if key == self._shown:
            return
        self._shown = key
        self.border_title = title
        parts = []
        if diff:
            parts.append(Syntax(diff, "diff", theme="ansi_dark", word_wrap=False,
                                background_color="default"))
        else:
            parts.append(Text("no diff: " + ("a baseline run of the unchanged script"
                                            if record is not None else "waiting for a proposal"),
                              style="dim"))
        if record is not None and record.error:
            parts += [Rule("error", style="red"), Text(record.error, style="red")]
        if reasoning:
            parts += [Rule("reasoning", style="dim"), Text(reasoning)]
        self.query_one("#diff-body", Static).update(Group(*parts))
        self.scroll_home(animate=False)
