"""An input line for a steer note: it reaches the agent with its next proposal."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class SteerScreen(ModalScreen["str | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Steer the agent (enter sends, escape cancels):", classes="question")
            yield Input(placeholder="e.g. try a bigger N_LAYER, or LEARNING_RATE=0.02",
                        id="note")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        note = event.value.strip()
        self.dismiss(note or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
