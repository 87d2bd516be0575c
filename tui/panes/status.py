"""The status line: session, phase, a red UNSANDBOXED where train.py ran without the sandbox,
experiment, budget bar, best, kept/total, agent cost, and the session's noise (one paired
difference) with the gain it can detect."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ratchet.engine.protocol import noise, schema
from ratchet.tui import format as fmt
from ratchet.tui.view_state import DashboardState


class StatusLine(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._facts: dict = {}

    def show(self, state: DashboardState, read_only: bool) -> None:
        loop = state.loop
        done, budget = state.progress()
        facts = {
            "session": loop.session or "(waiting for the engine)",
            "phase": state.phase,
            "exp": state.running if state.running is not None else loop.last_exp,
            "done": done,
            "budget": budget,
            "best": loop.best_bpb,
            "kept": loop.kept,
            "stopped": loop.stopped_early,
            "total": loop.proposals,
            "cost": loop.cost_usd,
            "noise": noise.of(loop),
            "unsandboxed": loop.unsandboxed > 0,
            "read_only": read_only,
            # with several workers: (experiment, worker, seconds done, budget) for each one busy
            "runs": [(r.n, r.worker, *state.progress(r)) for r in state.running_experiments()]
            if state.several_workers else [],
        }
        if facts != self._facts:
            self._facts = facts
            self.refresh()

    def render(self) -> Text:
        f = self._facts
        if not f:
            return Text("waiting for events…")
        wide = self.size.width >= 120
        phase_style = {schema.PHASE_PAUSED: "bold yellow", schema.PHASE_TRAINING: "bold cyan",
                       schema.PHASE_ENDED: "bold red",
                       schema.PHASE_EVALUATING: "bold magenta"}.get(f["phase"], "bold")
        text = Text()
        if wide:
            text.append(f"{f['session']}  ", style="bold")
        text.append(f" {f['phase']} ", style=f"reverse {phase_style}")
        if f["unsandboxed"]:  # early in the line, so a narrow terminal never cuts it off
            text.append("  UNSANDBOXED", style="bold red")
        text.append(f"  exp {f['exp']}  ")
        if len(f["runs"]) > 1:  # one short bar per busy worker
            for n, worker, done, budget in f["runs"]:
                text.append(f"w{worker} #{n} " if wide else f"#{n}")
                text.append(fmt.bar(done, budget, 8 if wide else 4), style="cyan")
                text.append(f" {done:.0f}/{budget:.0f}s  " if wide else " ")
        elif f["budget"] and not wide and f["unsandboxed"]:  # a short bar, as for several runs
            text.append(fmt.bar(f["done"], f["budget"], 4), style="cyan")
            text.append("  ")
        elif f["budget"]:
            width = 20 if wide else 10
            text.append(fmt.bar(f["done"], f["budget"], width), style="cyan")
            text.append(f" {f['done']:.0f}/{f['budget']:.0f}s  ")
        text.append("best ")
        text.append(fmt.bpb(f["best"]), style="bold green")
        text.append(f"  kept {f['kept']}/{f['total']}")
        if f["stopped"]:  # runs stopped early: what they saved shows in `ratchet report`
            text.append(f" stop {f['stopped']}" if wide else f"/{f['stopped']}s", style="yellow")
        text.append(f"  ${f['cost']:.2f}")
        measured = f["noise"]
        if measured.sigma is not None:  # last, so a narrow terminal crops it first
            text.append(f"  ±{measured.sigma:.3f} detects {measured.detectable:.3f}" if wide
                        else f"  ±{measured.sigma:.3f}", style="dim")
        if f["read_only"]:
            text.append("  read-only", style="dim")
        return text
