"""SVG snapshots of the dashboard on a recorded session, small and large terminals.

Update after an intended change of the look: `pytest tests/test_tui_snapshots.py
--snapshot-update`, then review the SVGs under tests/__snapshots__/.
"""

from __future__ import annotations

from pathlib import Path

from dashboard_helpers import caught_up, recorded_app

from ratchet.tui.app import RatchetDashboard
from ratchet.tui.sources import LogFileSource


async def settled(pilot) -> None:
    await caught_up(pilot)
    await pilot.pause(0.3)


def test_small_terminal_experiments_tab(snap_compare):
    async def run_before(pilot):
        await settled(pilot)
        await pilot.press("5")
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=(80, 24), run_before=run_before)


def test_small_terminal_agent_tab(snap_compare):
    assert snap_compare(recorded_app(), terminal_size=(80, 24), run_before=settled)


def test_large_terminal_all_panes(snap_compare):
    assert snap_compare(recorded_app(), terminal_size=(160, 48), run_before=settled)


def test_large_terminal_val_bpb_view_and_help(snap_compare):
    async def run_before(pilot):
        await settled(pilot)
        await pilot.press("4", "v", "question_mark")
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=(160, 48), run_before=run_before)


def test_small_terminal_experiments_with_memory(snap_compare):
    """A compat session (tests/data/compat_session.jsonl): each run's peak memory in the table,
    which leaves the commit out at 80 columns."""
    async def run_before(pilot):
        await settled(pilot)
        await pilot.press("5")
        await pilot.pause()

    app = RatchetDashboard(LogFileSource(Path(__file__).parent / "data" / "compat_session.jsonl"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
