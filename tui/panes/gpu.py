"""GPU readings (NVML) with utilization sparklines, or CPU and RAM where there is no GPU."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Sparkline, Static

from ratchet.tui.view_state import DashboardState


def _num(value: object, fmt: str, unit: str) -> str:
    return f"{value:{fmt}}{unit}" if isinstance(value, (int, float)) else "-"


def _gpu_line(gpu: dict, running: str = "") -> str:
    used, total = gpu.get("mem_used_mb"), gpu.get("mem_total_mb")
    mem = (f"{used / 1024:.1f}/{total / 1024:.0f} GiB" if isinstance(used, (int, float))
           and isinstance(total, (int, float)) else "-")
    return (f"GPU{gpu.get('index', 0)} {gpu.get('name', '')}{running}\n"
            f" util {_num(gpu.get('util'), '.0f', '%')}  mem {mem}  "
            f"{_num(gpu.get('temp_c'), '.0f', '°C')}  {_num(gpu.get('power_w'), '.0f', ' W')}")


class GpuPane(VerticalScroll):
    """One label and one sparkline per series; rebuilt only when the set of series changes."""

    BORDER_TITLE = "3 GPU"
    can_focus = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._keys: list[str] = []
        self._samples: tuple = (0, -1, {})

    def show(self, state: DashboardState) -> None:
        res = state.resources
        # what each worker runs: on its GPU's line, or beside CPU without a GPU
        busy = {r.worker: r.n for r in state.running_experiments() if r.worker}
        if (id(state), res.samples, busy) == self._samples:
            return
        self._samples = (id(state), res.samples, busy)
        series: list[tuple[str, str, list[float]]] = []
        if res.gpus:
            self.border_title = "3 GPU"
            for gpu in res.gpus:
                index = gpu.get("index", 0)
                running = f" · #{busy[str(index)]}" if str(index) in busy else ""
                series.append((f"gpu{index}", _gpu_line(gpu, running),
                               list(res.gpu_util.get(index, ()))))
        else:
            self.border_title = "3 CPU (no GPU)"
            cpu = res.cpu[-1] if res.cpu else None
            ram = res.ram[-1] if res.ram else None
            workers = "  " + " ".join(f"w{w} #{n}" for w, n in sorted(busy.items())) \
                if state.several_workers and busy else ""
            series.append(("cpu", f"CPU {_num(cpu, '.0f', '%')}\n (psutil){workers}",
                           list(res.cpu)))
            series.append(("ram", f"RAM {_num(ram, '.0f', '%')}\n "
                                  f"{_num(res.ram_used_gb, '.1f', ' GiB')} used", list(res.ram)))
        keys = [key for key, _, _ in series]
        if keys != self._keys:
            self._keys = keys
            self.remove_children()
            for key, _, _ in series:
                self.mount(Static(id=f"{key}-label", classes="gauge-label"),
                           Sparkline([], id=f"{key}-spark", classes="gauge-spark"))
        for key, label, history in series:
            # labels have a fixed height, so an update needs no new layout of the screen
            self.query_one(f"#{key}-label", Static).update(label, layout=False)
            self.query_one(f"#{key}-spark", Sparkline).data = history
