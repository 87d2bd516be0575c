"""The experiment table: one row per experiment, updated cell by cell as results arrive."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ratchet.tui import format as fmt
from ratchet.tui.messages import ExperimentSelected
from ratchet.tui.model import DashboardState, Experiment

# (label, key, width): fixed widths, so a later, longer value is never cut short
# Δ best is a run's difference from the best; where the paired rule judged the run, the
# estimated effect over the candidate's runs and its standard error (status says how many runs)
COLUMNS = (("#", "n", 3), ("commit", "commit", 7), ("val_bpb", "val", 7), ("Δ best", "delta", 10),
           ("status", "status", 11), ("time", "time", 6), ("description", "desc", None))


def _cells(record: Experiment, workers: bool = False) -> tuple:
    label = record.label
    shown = f"{label} w{record.worker}" if workers and record.worker and label == "running" \
        else label
    paired = record.paired
    if isinstance(paired.get("effect"), (int, float)) and isinstance(paired.get("se"),
                                                                     (int, float)):
        change, text = paired["effect"], fmt.effect(paired["effect"], paired["se"])
    else:
        change, text = record.delta, fmt.delta(record.delta)
    return (
        str(record.n),
        record.commit[:7],
        fmt.bpb(record.val_bpb),
        Text(text, style="green" if (change or 0) < 0 else "yellow" if change else ""),
        Text(shown, style=fmt.STATUS_STYLES.get(record.base_label, "")),
        fmt.duration(record.duration),
        record.description,
    )


def _key(record: Experiment) -> tuple:
    """What the row depends on, cheap to compare (the running row's time changes each event)."""
    return (record.label, record.commit, record.val_bpb, record.delta,
            record.paired.get("effect"), record.description,
            record.started, record.ended, record.last_t if record.ended is None else None)


class ExperimentsPane(DataTable):
    BORDER_TITLE = "5 Experiments"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._rows: dict[int, tuple] = {}
        self._keys: dict[int, tuple] = {}
        self._state_id = 0

    def on_mount(self) -> None:
        for label, key, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, state: DashboardState) -> None:
        if id(state) != self._state_id:
            self._state_id = id(state)
            self._rows.clear()
            self._keys.clear()
            self.clear()
        following = self.cursor_row >= self.row_count - 1  # on the newest row: stay there
        added = False
        for n, record in state.experiments.items():
            if record.started is None and record.status != "failed":
                continue  # still being proposed: the agent pane shows it
            key = _key(record)
            if self._keys.get(n) == key:
                continue  # unchanged since the last redraw: most rows, most of the time
            self._keys[n] = key
            cells = _cells(record, state.several_workers)
            old = self._rows.get(n)
            if old is None:
                self.add_row(*cells, key=str(n))
                added = True
            elif old != cells:
                for (_, column, width), value, before in zip(COLUMNS, cells, old, strict=True):
                    if value != before:
                        self.update_cell(str(n), column, value, update_width=width is None)
            self._rows[n] = cells
        if added and following:
            self.move_cursor(row=self.row_count - 1, animate=False)
        kept = state.loop.kept
        self.border_subtitle = f"kept {kept} of {state.loop.proposals}"

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(ExperimentSelected(int(event.row_key.value)))
