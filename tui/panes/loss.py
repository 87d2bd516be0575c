"""Training loss of the running experiment beside the best one's, or val_bpb across experiments.

`v` switches the view. The chart is redrawn only when its data changed.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual_plotext import PlotextPlot

from ratchet.tui.model import DashboardState

VIEWS = ("loss", "val_bpb")


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
        running, best = state.running_experiment(), state.best_experiment()
        if running is None:  # between runs, show the latest one that has a curve
            running = next((r for r in reversed(state.experiments.values()) if len(r.curve)),
                           None)
        key = (self.view, id(state), running and running.n, running and len(running.curve),
               running and running.curve.stride, best and best.n, len(state.val_points))
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
            if best is not None and len(best.curve) and (running is None or best.n != running.n):
                plt.plot(list(best.curve.steps), list(best.curve.values), color="green",
                         label=f"best #{best.n}", marker="braille")
            if running is not None and len(running.curve):
                plt.plot(list(running.curve.steps), list(running.curve.values), color="cyan",
                         label=f"#{running.n}", marker="braille")
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
