"""Training loss of the running experiments beside the best one's, or val_bpb across the
experiments.

`v` switches the view. The chart is redrawn only when its data changed.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual_plotext import PlotextPlot

from ratchet.tui.view_state import DashboardState

VIEWS = ("loss", "val_bpb")
RUN_COLORS = ("cyan", "magenta", "yellow", "blue", "red", "white")


class LossPane(Vertical):
    BORDER_TITLE = "4 Loss"
    can_focus = True
    BINDINGS = [Binding("v", "switch_view", "Loss/val_bpb")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = "loss"
        self._key: tuple | None = None
        self._state: DashboardState | None = None

    def compose(self):
        yield PlotextPlot()

    def action_switch_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self._key = None
        if self._state is not None:
            self.show(self._state)

    def show(self, state: DashboardState) -> None:
        self._state = state
        runs, best = state.running_experiments(), state.best_experiment()
        if not runs:  # between runs, show the latest one that has a curve
            latest = next((r for r in reversed(state.experiments.values()) if len(r.curve)),
                          None)
            runs = [latest] if latest is not None else []
        key = (self.view, id(state), tuple((r.n, len(r.curve), r.curve.stride) for r in runs),
               best and best.n, len(state.val_points))
        if key == self._key:
            return
        self._key = key
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if self.view == "loss":
            self.border_title = "4 Loss · v: val_bpb"
            plt.xlabel("step")
            if best is not None and len(best.curve) and all(best.n != r.n for r in runs):
                plt.plot(list(best.curve.steps), list(best.curve.values), color="green",
                         label=f"best #{best.n}", marker="braille")
            for i, run in enumerate(runs):  # one curve per busy worker
                color = RUN_COLORS[i % len(RUN_COLORS)]
                if len(run.curve):
                    worker = f" w{run.worker}" if state.several_workers else ""
                    plt.plot(list(run.curve.steps), list(run.curve.values), color=color,
                             label=f"#{run.n}{worker}", marker="braille")
        else:
            self.border_title = "4 val_bpb · v: loss"
            plt.xlabel("experiment")
            if state.val_points:
                plt.scatter([x for x, _ in state.val_points], [y for _, y in state.val_points],
                            color="cyan", label="val_bpb", marker="dot")
            if state.best_line:
                xs, ys = _steps(state.best_line)
                plt.plot(xs, ys, color="green", label="best", marker="braille")
        plot.refresh()


def _steps(points: list[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """A step line through the points: the best holds until the experiment that improves it."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y in points:
        if ys:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys
