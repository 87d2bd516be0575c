"""The experiment table: one row per experiment, updated cell by cell as results arrive."""

from __future__ import annotations

from rich.text import Text
from textual.events import Resize
from textual.widgets import DataTable

from ratchet.engine.protocol import schema
from ratchet.engine.protocol.history import memory_text
from ratchet.tui import format as fmt
from ratchet.tui.messages import ExperimentSelected
from ratchet.tui.view_state import DashboardState, Experiment

# (label, key, width): fixed widths, so a later, longer value is never cut short
# Δ best is a run's difference from the best; where the paired rule judged the run, the
# estimated effect over the candidate's runs and its standard error (status says how many runs);
# mem is the run's peak memory (autoresearch's memory_gb)
COLUMNS = (("#", "n", 3), ("commit", "commit", 7), ("val_bpb", "val", 7), ("Δ best", "delta", 10),
           ("status", "status", 11), ("time", "time", 6), ("mem", "mem", 5),
           ("description", "desc", None))
# Below this width (80 columns) the commit is left out, so the description keeps its room;
# enter on a row shows the experiment, its commit among the rest.
NARROW = 100
WITHOUT_COMMIT = tuple(i for i, column in enumerate(COLUMNS) if column[1] != "commit")


def _cells(record: Experiment, workers: bool = False, room: int = 0) -> tuple:
    label = record.label
    shown = f"{label} w{record.worker}" if workers and record.worker and label == schema.RUNNING \
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
        memory_text(record.memory_gb, ""),
        # cut to the room left, keeping the end: "WARMUP_RATIO 0.0 -> 0" thrice said nothing
        fmt.abbreviate(record.description, room) if room else record.description,
    )


def _key(record: Experiment) -> tuple:
    """What the row depends on, cheap to compare (the running row's time changes each event)."""
    return (record.label, record.commit, record.val_bpb, record.delta,
            record.paired.get("effect"), record.description, record.memory_gb,
            record.started, record.ended, record.last_t if record.ended is None else None)


class ExperimentsPane(DataTable):
    BORDER_TITLE = "5 Experiments"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._rows: dict[int, tuple] = {}
        self._keys: dict[int, tuple] = {}
        self._state_id = 0
        self._state: DashboardState | None = None
        self._shown: tuple[int, ...] = ()  # the COLUMNS shown, by index
        self._room = 0  # characters the description has before the table's right edge

    def on_mount(self) -> None:
        self._columns()

    def on_resize(self, event: Resize) -> None:
        self._relayout()  # the rows again, in the new columns

    def _columns(self) -> bool:
        """Lay the columns out for the table's width; True when they (or the description's
        room) changed, so the rows must be drawn again."""
        shown = WITHOUT_COMMIT if self.size.width < NARROW else tuple(range(len(COLUMNS)))
        pad = 2 * self.cell_padding
        fixed = sum((COLUMNS[i][2] or 0) + pad for i in shown)  # the description's pad too
        # inside the scrollbar, once rows need one (each redraw looks again)
        room = max(len(COLUMNS[-1][0]), self.scrollable_content_region.width - fixed)
        if shown == self._shown and room == self._room:
            return False
        self._room = room
        if shown == self._shown:
            self.clear()
            self._rows.clear()
            self._keys.clear()
            return True
        self._shown = shown
        self.clear(columns=True)
        self._rows.clear()
        self._keys.clear()
        for i in shown:
            label, key, width = COLUMNS[i]
            self.add_column(label, key=key, width=width)
        return True

    def show(self, state: DashboardState) -> None:
        self._state = state
        self._columns()  # the room may have changed (a scrollbar came) without a resize
        if id(state) != self._state_id:
            self._state_id = id(state)
            self._rows.clear()
            self._keys.clear()
            self.clear()
        following = self.cursor_row >= self.row_count - 1  # on the newest row: stay there
        added = False
        for n, record in state.experiments.items():
            if record.started is None and record.status != schema.FAILED:
                continue  # still being proposed: the agent pane shows it
            key = _key(record)
            if self._keys.get(n) == key:
                continue  # unchanged since the last redraw: most rows, most of the time
            self._keys[n] = key
            every = _cells(record, state.several_workers, self._room)
            cells = tuple(every[i] for i in self._shown)
            old = self._rows.get(n)
            if old is None:
                self.add_row(*cells, key=str(n))
                added = True
            elif old != cells:
                for i, value, before in zip(self._shown, cells, old, strict=True):
                    _, column, width = COLUMNS[i]
                    if value != before:
                        self.update_cell(str(n), column, value, update_width=width is None)
            self._rows[n] = cells
        if added and following:
            self.move_cursor(row=self.row_count - 1, animate=False)
        kept = state.loop.kept
        self.border_subtitle = f"kept {kept} of {state.loop.proposals}"
        # a scrollbar that comes or goes changes the room without a resize: look once laid out
        self.call_after_refresh(self._relayout)

    def _relayout(self) -> None:
        if self._columns() and self._state is not None:
            self.show(self._state)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(ExperimentSelected(int(event.row_key.value)))
