"""The dashboard at 80x24: descriptions stay distinct, agent lines wrap, and the footer follows
the session's state (no control keys once it ended)."""

from __future__ import annotations

import os

import pytest
from dashboard_helpers import RECORDED, caught_up, live_app, recorded_app, until
from textual.widgets import DataTable
from textual.widgets._footer import FooterKey

from ratchet.engine.protocol import paths
from ratchet.tui import format as fmt
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.panes.agent import AgentPane, wrap_stream
from ratchet.tui.sources import LogFileSource

CONTROL = {"p", "s", "k", "x"}


def footer_keys(app) -> set[str]:
    return {key.key for key in app.screen.query(FooterKey) if key.display}


def test_abbreviate_keeps_the_new_value():
    rows = ["WARMUP_RATIO 0.0 -> 0.06028", "WARMUP_RATIO 0.0 -> 0.07917",
            "WARMUP_RATIO 0.0 -> 0.07782"]
    for width in (12, 16, 20, 24):
        short = [fmt.abbreviate(row, width) for row in rows]
        assert len(set(short)) == 3, short
        assert all(len(s) <= width for s in short)
        assert all(s.endswith(row.split()[-1]) for s, row in zip(short, rows, strict=True))
    assert fmt.abbreviate("STEPS 24 -> 48", 30) == "STEPS 24 -> 48"
    assert fmt.abbreviate("a long note about nothing in particular", 12).endswith("rticular")


@pytest.mark.asyncio
async def test_three_changes_of_one_constant_stay_distinct_at_80_columns(tmp_path):
    log = RECORDED.read_text()
    for old, new in (("SMOOTHING 1.0 -> 28.9", "WARMUP_RATIO 0.0 -> 0.06028"),
                     ("SMOOTHING 1.0 -> 39.72", "WARMUP_RATIO 0.0 -> 0.07917"),
                     ("STEPS 24 -> 48", "WARMUP_RATIO 0.0 -> 0.07782")):
        log = log.replace(old, new)
    copy = tmp_path / "events.jsonl"
    copy.write_text(log)
    app = RatchetDashboard(LogFileSource(copy))
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        await pilot.press("5")
        await pilot.pause()
        table = app.screen.query_one("#experiments", DataTable)
        others = sum(column.get_render_width(table) for key, column in table.columns.items()
                     if key.value != "desc")
        room = table.scrollable_content_region.width - others
        assert table.columns["desc"].get_render_width(table) <= room  # nothing cut off
        shown = [str(table.get_row(key)[-1]) for key in table.rows]
        warm = [s for s in shown if s.endswith(("0.06028", "0.07917", "0.07782"))]
        assert len(warm) == 3 and len(set(warm)) == 3, shown


@pytest.mark.asyncio
async def test_agent_lines_wrap_instead_of_being_cut():
    app = recorded_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        pane = app.screen.query_one(AgentPane)
        assert pane.max_scroll_x == 0  # nothing runs off to the right
        long = max("".join(app.state.agent_chunks).splitlines(), key=len)
        assert len(long) > pane.size.width
        texts = [getattr(line, "text", line) for line in pane.lines]
        assert all(len(text.rstrip()) <= pane.scrollable_content_region.width for text in texts)
        assert long.split()[-1] in "\n".join(texts)


@pytest.mark.asyncio
async def test_the_footer_drops_the_control_keys_when_the_session_ends(tmp_path):
    folder = tmp_path / "session"
    folder.mkdir()
    lines = RECORDED.read_text().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if '"type":"session_end"' in line)
    (folder / "events.jsonl").write_text("".join(lines[:end]))
    paths.write_pid(folder, os.getpid())  # an engine that looks alive
    app = live_app(folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        await pilot.pause()
        assert footer_keys(app) >= CONTROL
        with open(folder / "events.jsonl", "a") as f:
            f.write("".join(lines[end:]))
        await until(pilot, lambda: app.state.loop.ended, what="the session's end")
        await pilot.pause(0.3)
        assert not CONTROL & footer_keys(app)
        assert {"q", "question_mark"} <= footer_keys(app)


def test_wrap_stream_keeps_words_and_indentation():
    text, column = wrap_stream("Proposing WARMUP_RATIO 0.0 -> 0.05: because\n  - indented",
                               0, 20)
    assert text == "Proposing\nWARMUP_RATIO 0.0 ->\n0.05: because\n  - indented"
    assert column == len("  - indented")
    assert wrap_stream(" more", 18, 20) == ("\nmore", 4)  # continues the line it was on
    assert wrap_stream("x" * 25, 0, 10)[0] == "x" * 10 + "\n" + "x" * 10 + "\n" + "x" * 5
