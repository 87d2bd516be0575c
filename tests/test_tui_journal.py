"""The dashboard's journal view (`j`): the agent's notes as the log recorded them."""

from __future__ import annotations

import json

import pytest
from dashboard_helpers import caught_up

from ratchet.tui.app import RatchetDashboard
from ratchet.tui.screens.journal import JournalScreen
from ratchet.tui.sources import LogFileSource

pytestmark = pytest.mark.asyncio


async def test_j_opens_the_research_journal_and_escape_closes_it(tmp_path):
    log = tmp_path / "events.jsonl"
    events = [{"t": 1.0, "type": "session_start", "session": "s", "tag": "t", "branch": "b",
               "base_commit": "c0", "config": {}, "hardware": {}, "agent": "claude",
               "resumed": False, "pid": 1},
              {"t": 2.0, "type": "journal", "exp": 2, "text": "Hypothesis: warmup is too short."},
              {"t": 3.0, "type": "journal", "exp": 5, "text": "Longer warmup helped; try 0.05."}]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    app = RatchetDashboard(LogFileSource(log))
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        await pilot.press("j")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, JournalScreen)
        body = str(screen.query_one("#journal-body").render())
        assert "#2 Hypothesis: warmup is too short." in body
        assert body.index("#2 ") < body.index("#5 Longer warmup helped; try 0.05.")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, JournalScreen)
