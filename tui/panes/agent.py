"""The agent's reasoning stream: a bounded log that follows the tail until scrolled up."""

from __future__ import annotations

from textual.widgets import Log

from ratchet.tui.model import DashboardState

MAX_LINES = 2_000


class AgentPane(Log):
    """Writes only the text chunks it has not seen yet (the state counts them all)."""

    BORDER_TITLE = "1 Agent"

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=False, **kwargs)
        self._seen = 0
        self._state_id = 0

    def show(self, state: DashboardState) -> None:
        if id(state) != self._state_id:  # a rebuilt state (replay seek): start over
            self._state_id, self._seen = id(state), 0
            self.clear()
        new = state.agent_total - self._seen
        if new <= 0:
            return
        chunks = list(state.agent_chunks)
        if new > len(chunks):  # more arrived than the state keeps: redraw what it has
            self.clear()
            new = len(chunks)
        follow = self.is_vertical_scroll_end or self.max_scroll_y == 0
        self.write("".join(chunks[-new:]), scroll_end=follow)
        self._seen = state.agent_total
        self.border_subtitle = "" if follow else "scrolled up · End to follow"
