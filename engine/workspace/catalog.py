"""Finding a folder's sessions and summarising each one from its event log (for `ratchet ls`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.protocol.history import memory_gb, memory_text
from ratchet.engine.workspace import layout

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    print(f"ratchet: warning: {message}", file=sys.stderr)


def locate(start: Path | None = None) -> layout.Workspace:
    """The workspace holding `start`, or a folder with a `runs/` of imported sessions.

    `ratchet import` writes into an autoresearch checkout's `runs/` when it is not a workspace;
    ls, report and replay read those sessions the same way.
    """
    try:
        return layout.find(start)
    except layout.WorkspaceError:
        here = (start or Path.cwd()).resolve()
        if (here / "runs").is_dir():
            return layout.Workspace(here)
        raise


@dataclass
class Summary:
    id: str
    folder: Path
    started: float
    state: str  # running | finished | crashed
    experiments: int  # finished experiment runs, baseline runs included
    kept: int
    best_bpb: float | None
    baseline_bpb: float | None
    agent: str
    cost_usd: float
    end_reason: str = ""
    imported: bool = False
    compat: str = ""
    timed: bool = True  # False for an import without any commit times
    unsandboxed: int = 0  # runs whose train.py ran outside the sandbox (LoopState.unsandboxed)
    memory_gb: float | None = None  # the best run's peak memory (autoresearch's memory_gb)

    @property
    def improvement(self) -> float | None:
        """best minus baseline: negative is better."""
        if self.best_bpb is None or self.baseline_bpb is None:
            return None
        return self.best_bpb - self.baseline_bpb


def run_state(folder: Path, state: statemod.LoopState) -> str:
    if state.ended:
        return "finished"
    return "running" if paths.is_running(folder) else "crashed"


def load(folder: Path, on_warning: Warn | None = None) -> list[dict]:
    """A session's events; bad lines (and a torn last line, unless the engine is still writing)
    are skipped and reported once."""
    return events.read_log(folder / paths.EVENTS, on_warning,
                           partial_ok=paths.is_running(folder))


def summarise(folder: Path, on_warning: Warn | None = None) -> Summary:
    log = load(folder, on_warning)
    state = statemod.LoopState()
    finished = 0
    imported, compat, timed = False, "", True
    for event in log:
        statemod.apply(state, event)
        kind = event.get("type")
        if kind == schema.EXP_END:
            finished += 1
        elif kind == schema.SESSION_START:
            imported = imported or bool(event.get("imported"))
            compat = event.get("compat") or compat
            timed = timed and event.get("timing") != "none"
    return Summary(id=folder.name, folder=folder, started=state.started,
                   state=run_state(folder, state), experiments=finished, kept=state.kept,
                   best_bpb=state.best_bpb, baseline_bpb=state.baseline_bpb,
                   agent=state.agent or "-", cost_usd=state.cost_usd,
                   end_reason=state.end_reason, imported=imported, compat=compat, timed=timed,
                   unsandboxed=state.unsandboxed, memory_gb=memory_gb(state.best_result))


def summarise_all(ws: layout.Workspace, on_warning: Warn | None = None) -> list[Summary]:
    return [summarise(folder, on_warning) for folder in paths.sessions(ws.runs_dir())]


def _num(value: float | None, spec: str = ".6f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[Summary]) -> str:
    """The `ratchet ls` table, oldest session first (`mem`: the best run's peak memory); a last
    column `sandbox` (UNSANDBOXED where train.py ran outside the sandbox) only when some session
    did."""
    header: tuple[str, ...] = ("session", "start", "state", "exps", "kept", "best",
                               "vs baseline", "mem", "agent", "cost")
    flagged = any(s.unsandboxed for s in rows)
    if flagged:
        header += ("sandbox",)
    lines = []
    for s in rows:
        gain = s.improvement
        gain_text = "-" if gain is None else (
            f"{gain:+.6f}" + (f" ({gain / s.baseline_bpb * 100:+.1f}%)" if s.baseline_bpb
                              else ""))
        start = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)) \
            if s.started and s.timed else "-"
        agent = s.agent + (f" ({s.compat})" if s.compat else "")
        cost = "-" if s.imported else f"${s.cost_usd:.2f}"
        row = (s.id, start, s.state, str(s.experiments), str(s.kept), _num(s.best_bpb),
               gain_text, memory_text(s.memory_gb), agent, cost)
        lines.append(row + (("UNSANDBOXED" if s.unsandboxed else "",) if flagged else ()))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    right = {3, 4, 5, 6, 7, 9}

    def fmt(row) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in lines)])
