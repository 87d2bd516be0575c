"""Peak memory (autoresearch's memory_gb) in every view of a session: the dashboard's table,
`ratchet status`, `report` and `ls`, on a recorded compat session (tests/data/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_helpers import caught_up

from ratchet.cli import headless, main, report
from ratchet.engine.protocol import events
from ratchet.engine.workspace import config as configmod
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.panes.experiments import COLUMNS, ExperimentsPane, _cells
from ratchet.tui.sources import LogFileSource
from ratchet.tui.view_state import DashboardState

# tests/data/record_compat_session.py: a baseline and three candidates of the checkout's
# train.py, each printing peak_vram_mb 45060.2 (44.0 GB)
RECORDED = Path(__file__).parent / "data" / "compat_session.jsonl"
SESSION = "20261126-090000-compat-0001"


def recorded() -> list[dict]:
    return list(events.iter_events(RECORDED))


@pytest.fixture
def ws(tmp_path) -> Path:
    configmod.save(tmp_path, configmod.Config())
    folder = tmp_path / "runs" / SESSION
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_bytes(RECORDED.read_bytes())
    return tmp_path


def test_status_report_and_ls_show_peak_memory(ws, capsys):
    status = headless.status_text(ws / "runs" / SESSION)
    recent = status.split("recent\n", 1)[1].splitlines()[:4]
    assert all("44.0G" in line for line in recent), status

    fig = report.figures(recorded())
    text = report.text(fig, chart=False)
    kept = text.split("kept changes", 1)[1].splitlines()[1:3]
    assert all("44.0G" in line for line in kept), text  # the baseline and the kept change
    (line,) = [s for s in text.splitlines() if s.startswith("memory")]
    assert "44.0 GB" in line, line
    md = report.markdown(fig)
    assert "| exp | val_bpb | delta | mem | change |" in md and "| 44.0G |" in md

    assert main.main(["ls", "-C", str(ws)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert "mem" in header.split() and "44.0G" in row.split()


def test_the_dashboard_table_has_a_memory_column():
    board = DashboardState()
    for event in recorded():
        board.apply(event)
    labels = [label for label, *_ in COLUMNS]
    assert labels.index("mem") == 6  # after time, before the description
    assert [_cells(board.experiments[n])[6] for n in (1, 2, 3, 4)] == ["44.0G"] * 4


@pytest.mark.asyncio
@pytest.mark.parametrize("size, commit", [((80, 24), False), ((160, 48), True)])
async def test_at_80_columns_memory_takes_the_commit_s_place(size, commit):
    app = RatchetDashboard(LogFileSource(RECORDED))
    async with app.run_test(size=size) as pilot:
        await caught_up(pilot)
        await pilot.press("5")
        await pilot.pause()
        table = app.query_one(ExperimentsPane)
        labels = [str(column.label) for column in table.columns.values()]
        assert "mem" in labels and ("commit" in labels) == commit
        assert "44.0G" in [str(cell) for cell in table.get_row("2")]
        # the description keeps at least the room it had before memory came
        used = sum(c.get_render_width(table) for c in table.columns.values()
                   if str(c.label) != "description")
        assert table.size.width - used >= 20
