"""Messages the dashboard's widgets post to the app."""

from __future__ import annotations

from textual.message import Message


class ExperimentSelected(Message):
    """A row of the experiment table was chosen: show that experiment's diff and reasoning."""

    def __init__(self, exp: int | None) -> None:
        super().__init__()
        self.exp = exp


class CommandAnswered(Message):
    """The engine answered a control command (or could not be reached: `error` says why)."""

    def __init__(self, cmd: str, error: str = "") -> None:
        super().__init__()
        self.cmd = cmd
        self.error = error
