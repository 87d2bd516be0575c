"""Every dashboard key against a recorded session (read-only: no engine behind it)."""

from __future__ import annotations

import os

import pytest
from dashboard_helpers import RECORDED, caught_up, live_app, recorded_app, until
from textual.widgets import DataTable

from ratchet.engine.protocol import events, paths
from ratchet.tui.panes.diff import DiffPane
from ratchet.tui.screens.dashboard import DashboardScreen
from ratchet.tui.screens.help import HelpScreen
from ratchet.tui.view_state import fold

pytestmark = pytest.mark.asyncio


def pane_of(app) -> str:
    focused = app.screen.focused
    for widget in [focused, *focused.ancestors]:
        if widget.has_class("pane"):
            return widget.id
    return ""


def shown_text(diff: DiffPane) -> str:
    """The plain text of what the diff pane holds (diff, error, reasoning)."""
    parts = []
    for part in diff.query_one("#diff-body").content.renderables:
        parts.append(getattr(part, "code", None) or getattr(part, "plain", ""))
    return "\n".join(parts)


async def test_tab_and_number_keys_move_between_panes_on_a_small_terminal():
    app = recorded_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen) and screen.has_class("narrow")
        assert pane_of(app) == "agent"
        order = []
        for _ in range(5):
            await pilot.press("tab")
            order.append(pane_of(app))
            # on a small terminal only the focused pane shows
            assert [p.id for p in screen.query(".pane") if p.display] == [order[-1]]
        assert order == ["diff", "gpu", "loss", "experiments", "agent"]
        await pilot.press("shift+tab")
        assert pane_of(app) == "experiments"
        for key, pane in zip("12345", ("agent", "diff", "gpu", "loss", "experiments"),
                             strict=True):
            await pilot.press(key)
            assert pane_of(app) == pane and screen.active == pane


async def test_all_panes_show_at_once_on_a_large_terminal_and_z_zooms_one():
    app = recorded_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        screen = app.screen
        assert screen.has_class("wide")
        assert all(p.display and p.size.height > 5 for p in screen.query(".pane"))
        await pilot.press("4", "z")
        assert screen.maximized is screen.query_one("#loss")
        assert screen.query_one("#loss").size.width > 150
        await pilot.press("z")
        assert screen.maximized is None
        assert screen.query_one("#loss").size.width < 100
        # v: val_bpb across experiments, and back
        loss = screen.query_one("#loss")
        await pilot.press("v")
        assert loss.view == "val_bpb" and loss.border_title.startswith("4 val_bpb")
        await pilot.press("v")
        assert loss.view == "loss" and loss.border_title.startswith("4 Loss")


async def test_question_mark_opens_the_help_and_escape_closes_it():
    app = recorded_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.read_only  # a recording cannot be controlled
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_selecting_a_row_shows_that_experiments_diff_and_reasoning():
    app = recorded_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        screen = app.screen
        state = app.state
        crash = next(r for r in state.experiments.values() if r.label == "crash")
        table = screen.query_one("#experiments", DataTable)
        await pilot.press("5")
        table.move_cursor(row=table.get_row_index(str(crash.n)))
        await pilot.press("enter")
        await pilot.pause()
        diff = screen.query_one(DiffPane)
        assert screen.selected == crash.n
        assert diff.border_title.startswith(f"2 Diff · #{crash.n} ")
        text = shown_text(diff)
        assert crash.diff.splitlines()[0] in text  # its own diff,
        assert "SMOOTHING must be positive" in text  # its error,
        assert "Proposing SMOOTHING 50.0 -> -1.0" in text  # and the agent's reasoning for it
        await pilot.press("escape")
        await pilot.pause()
        assert screen.selected is None
        assert diff.border_title == f"2 Diff · proposal #{state.current_exp}"


async def test_control_keys_are_hidden_and_refused_without_an_engine():
    app = recorded_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        assert app.read_only
        footer_keys = {b.binding.key for b in app.screen.active_bindings.values()
                       if b.enabled and b.binding.show}
        assert not footer_keys & {"p", "s", "k", "x"}
        assert {"q", "z", "question_mark"} <= footer_keys
        for key in "pskx":
            await pilot.press(key)
        assert isinstance(app.screen, DashboardScreen)  # no steer box, no confirmation
        await pilot.press("q")
    assert app.return_value == "detached"


async def test_a_control_failure_is_a_notification_and_a_bad_line_a_warning(tmp_path):
    folder = tmp_path / "session"
    folder.mkdir()
    lines = RECORDED.read_text().splitlines(keepends=True)
    # an engine that looks alive (this process) but has no control socket, and one bad line
    (folder / "events.jsonl").write_text("".join(lines[:40]) + "{torn\n" + "".join(lines[40:]))
    paths.write_pid(folder, os.getpid())
    state = fold(events.iter_events(RECORDED))
    state.loop.ended = False  # the recorded session ended; pretend it did not, to allow keys
    app = live_app(folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        app.reset(state)
        await pilot.pause()
        assert not app.read_only
        await pilot.press("p")
        await until(pilot, lambda: any("pause: no engine is listening" in n.message
                                       for n in app._notifications), what="the notification")
        assert any("not valid events" in n.message for n in app._notifications)
        assert isinstance(app.screen, DashboardScreen)  # still running, nothing crashed
        await pilot.press("q")
    assert app.return_value == "detached"


async def test_a_refolded_prefix_redraws_every_pane_from_scratch():
    log = list(events.iter_events(RECORDED))
    app = recorded_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        table = app.screen.query_one("#experiments", DataTable)
        full = table.row_count
        cut = next(i for i, e in enumerate(log) if e["type"] == "exp_start" and e["exp"] == 4)
        app.reset(fold(log[:cut + 1]))  # as replay's seek to experiment 4 would
        await pilot.pause(0.4)
        assert table.row_count == 4 < full
        assert app.screen.query_one("#status").render().plain.count("exp 4") == 1


async def test_a_session_whose_engine_died_says_so(tmp_path):
    folder = tmp_path / "crashed"
    folder.mkdir()
    lines = RECORDED.read_text().splitlines(keepends=True)
    (folder / "events.jsonl").write_text("".join(lines[: len(lines) // 2]))  # no session_end
    app = live_app(folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await caught_up(pilot)
        await until(pilot, lambda: any("the engine is not running" in n.message
                                       for n in app._notifications), what="the notification",
                    timeout=10)
        assert app.read_only  # nothing to control
