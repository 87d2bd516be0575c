"""The `j` screen: the agent's research journal, every note with the experiment it was written
for, newest last (the view scrolls to it)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ratchet.engine.protocol.history import JournalNote


def journal_text(notes: Sequence[JournalNote]) -> Text:
    if not notes:
        return Text("The agent has written no notes yet (the Claude agents keep a journal; "
                    "the offline agent does not).", style="dim")
    text = Text()
    for i, note in enumerate(notes):
        if i:
            text.append("\n\n")
        text.append(f"#{note.exp} ", style="bold cyan")
        text.append(note.text)
    return text


class JournalScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,j", "close", "Close")]

    def __init__(self, notes: Sequence[JournalNote]) -> None:
        super().__init__()
        self.notes = list(notes)

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(f"Research journal ({len(self.notes)} notes)", classes="question")
            yield Static(journal_text(self.notes), id="journal-body")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
