"""The agent's reasoning stream: a bounded log that follows the tail until scrolled up.

Long lines wrap at word boundaries to the pane's width (rewrapped when it changes): a cut line
hid the end of a rationale on an 80-column terminal."""

from __future__ import annotations

import re

from textual.events import Resize
from textual.widgets import Log

from ratchet.tui.view_state import DashboardState

MAX_LINES = 2_000
_TOKENS = re.compile(r"\n|[^\S\n]+|\S+")


def wrap_stream(text: str, column: int, width: int) -> tuple[str, int]:
    """`text` with line breaks added so no line passes `width`, written from `column` of the
    current line; and the column it ends at. Words move to the next line whole (a word longer
    than the width is split); the spaces where a line breaks are dropped."""
    if width <= 0:
        return text, column
    out: list[str] = []
    soft = False  # the current line began at a break added here: its leading spaces go
    for token in _TOKENS.findall(text):
        if token == "\n":
            out.append(token)
            column, soft = 0, False
        elif token.isspace():
            if column + len(token) > width:
                out.append("\n")
                column, soft = 0, True
            elif column or not soft:
                out.append(token)
                column += len(token)
        else:
            if column and column + len(token) > width:
                if out and out[-1].isspace() and out[-1] != "\n":
                    out.pop()  # no trailing space before the break (this chunk's own only)
                out.append("\n")
                column, soft = 0, True
            while len(token) > width - column:
                cut = width - column
                out.append(token[:cut] + "\n")
                token, column, soft = token[cut:], 0, True
            out.append(token)
            column += len(token)
    return "".join(out), column


class AgentPane(Log):
    """Writes only the text chunks it has not seen yet (the state counts them all)."""

    BORDER_TITLE = "1 Agent"

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=False, **kwargs)
        self._seen = 0
        self._state_id = 0
        self._state: DashboardState | None = None
        self._column = 0  # where the last line written ends
        self._width = 0  # the width the text was wrapped to

    def on_resize(self, event: Resize) -> None:
        width = self.scrollable_content_region.width
        if width != self._width and self._state is not None:
            self._state_id = 0  # wrap it all again at the new width
            self.show(self._state)

    def show(self, state: DashboardState) -> None:
        self._state = state
        if id(state) != self._state_id:  # a rebuilt state (replay seek): start over
            self._state_id, self._seen = id(state), 0
            self._restart()
        new = state.agent_total - self._seen
        if new <= 0:
            return
        chunks = list(state.agent_chunks)
        if new > len(chunks):  # more arrived than the state keeps: redraw what it has
            self._restart()
            new = len(chunks)
        follow = self.is_vertical_scroll_end or self.max_scroll_y == 0
        # written at once, never held back: a word a chunk cuts may, rarely, break unevenly
        wrapped, self._column = wrap_stream("".join(chunks[-new:]), self._column, self._width)
        self.write(wrapped, scroll_end=follow)
        self._seen = state.agent_total
        self.border_subtitle = "" if follow else "scrolled up · End to follow"

    def _restart(self) -> None:
        self.clear()
        self._column = 0
        self._width = self.scrollable_content_region.width
