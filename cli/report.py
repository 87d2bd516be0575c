"""A session's progress report: figures as a pure function of its events, then text, markdown,
a terminal chart (plotext) and a PNG (matplotlib, the optional `report` extra)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.cli import phases
from ratchet.engine.protocol import noise, schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.protocol.history import JournalNote, memory_gb, memory_text

PHASES = (schema.PHASE_PROPOSING, schema.PHASE_TRAINING, schema.PHASE_EVALUATING)


class ReportError(Exception):
    """The report cannot be made as asked; one line."""


@dataclass
class KeptChange:
    exp: int
    description: str
    val_bpb: float | None  # the best from this change on
    delta: float | None  # against the best before it (negative is better)
    commit: str
    memory_gb: float | None = None  # its run's peak memory


@dataclass
class Figures:
    session: str = ""
    agent: str = ""
    imported: bool = False
    source: str = ""
    compat: str = ""
    metric_source: str = "harness"
    started: float = 0.0
    ended: float = 0.0
    end_reason: str = ""
    baseline_bpb: float | None = None
    best_bpb: float | None = None
    best_commit: str = ""
    kept: list[KeptChange] = field(default_factory=list)
    proposals: int = 0  # proposals made, failed ones included
    failed_proposals: int = 0
    candidates: int = 0  # candidate runs finished
    crashed: int = 0  # candidate runs that did not finish ok (interrupted ones aside)
    interrupted: int = 0  # candidates whose run (or verdict) the engine's stop cut short
    discarded: int = 0  # candidates that ran ok but were not kept
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds
    timed_by: str = "phases"  # phases | experiments | none
    cost_usd: float = 0.0
    unsandboxed: int = 0  # runs whose train.py ran outside the sandbox (LoopState.unsandboxed)
    runs: list[tuple[int, str, float]] = field(default_factory=list)  # (exp, kind, val_bpb)
    frontier: list[tuple[int, float]] = field(default_factory=list)  # (exp, best after it)
    noise: str = ""  # the session's noise and the gain it detects (`noise.Noise.line`)
    trials: int = 0  # candidate and further runs: the runs spent judging candidates
    journal: list[JournalNote] = field(default_factory=list)  # the agent's notes, oldest first
    baseline_memory_gb: float | None = None  # the first baseline run's peak memory
    best_memory_gb: float | None = None  # the best run's
    most_memory: tuple[int, float] | None = None  # (exp, GB): the run that took the most
    stopped_early: int = 0  # runs stopped early (a discard each)
    saved_seconds: float = 0.0  # the training budget they did not spend
    tried_before: int = 0  # proposals the agent recognised as tried in an earlier session

    @property
    def improvement(self) -> float | None:
        if self.best_bpb is None or self.baseline_bpb is None:
            return None
        return self.best_bpb - self.baseline_bpb

    def rate(self, count: int) -> float | None:
        return count / self.candidates if self.candidates else None


def figures(log: Iterable[dict]) -> Figures:
    """Everything the report shows, from the events alone (live, imported or replayed alike)."""
    fig = Figures()
    state = statemod.LoopState()
    clock, last_t = phases.PhaseClock(), 0.0
    spans: list[float] = []  # exp_start to exp_end, for logs without phase events
    starts: dict[int, float] = {}
    for event in log:
        kind = event.get("type")
        t = event.get("t") or last_t
        clock.feed(event, t)
        statemod.apply(state, event)
        if kind == schema.SESSION_START:
            fig.imported = fig.imported or bool(event.get("imported"))
            fig.source = event.get("source") or fig.source
            fig.compat = event.get("compat") or fig.compat
            if event.get("timing") == "none":
                fig.timed_by = "none"
        elif kind == schema.SESSION_END:
            fig.ended = t
        elif kind == schema.PROPOSAL_FAILED:
            fig.failed_proposals += 1
        elif kind == schema.PROPOSAL and event.get("tried_before"):
            fig.tried_before += 1
        elif kind == schema.EXP_START:
            starts[event.get("exp", 0)] = t
        elif kind == schema.EXP_END:
            _count_end(fig, state, event)
            if event.get("exp", 0) in starts:
                spans.append(max(0.0, t - starts.pop(event.get("exp", 0))))
        last_t = t
    fig.seconds = dict(clock.seconds)  # still running, or killed: up to the last event
    if not any(fig.seconds.get(p) for p in PHASES) and fig.timed_by != "none":
        fig.seconds = {"experiments": sum(spans)} if spans else {}
        fig.timed_by = "experiments" if spans else "none"
    fig.session, fig.agent, fig.started = state.session, state.agent, state.started
    fig.ended = fig.ended or last_t
    fig.end_reason, fig.cost_usd = state.end_reason, state.cost_usd
    fig.baseline_bpb, fig.best_bpb, fig.best_commit = (state.baseline_bpb, state.best_bpb,
                                                       state.best_commit)
    fig.proposals, fig.unsandboxed = state.proposals, state.unsandboxed
    fig.stopped_early, fig.saved_seconds = state.stopped_early, state.saved_seconds
    fig.noise = noise.of(state).line()
    fig.journal = list(state.journal)
    fig.best_memory_gb = memory_gb(state.best_result)
    return fig


def _count_end(fig: Figures, state: statemod.LoopState, event: dict) -> None:
    kind, decision, val = event.get("kind"), event.get("decision"), event.get("val_bpb")
    memory = memory_gb(event.get("result"))
    if memory is not None:
        if kind == schema.BASELINE and fig.baseline_memory_gb is None:
            fig.baseline_memory_gb = memory
        if fig.most_memory is None or memory > fig.most_memory[1]:
            fig.most_memory = (event.get("exp", 0), memory)
    source = (event.get("result") or {}).get("metric_source")
    if source:
        fig.metric_source = source
    if decision == schema.INTERRUPTED and kind in (schema.CANDIDATE, schema.CONFIRM):
        fig.interrupted += 1  # says nothing of the change: neither kept, discarded nor crashed
    if kind == schema.CANDIDATE:
        fig.candidates += 1
        if event.get("status") not in (schema.OK, schema.STOPPED_EARLY) \
                and decision != schema.INTERRUPTED:
            fig.crashed += 1
        elif decision in (schema.DISCARD, schema.NEAR_MISS):
            fig.discarded += 1
    elif kind == schema.CONFIRM and decision in (schema.DISCARD, schema.NEAR_MISS, schema.CRASH):
        fig.discarded += 1  # the candidate ran ok, but its further runs did not confirm it
    if kind in (schema.CANDIDATE, schema.CONFIRM) and decision != schema.RETRY:
        fig.trials += 1
    if decision == schema.KEEP:
        best = event.get("new_best", val)
        before = event.get("best_before")
        delta = best - before if best is not None and before is not None else event.get("delta")
        fig.kept.append(KeptChange(event.get("exp", 0), event.get("description", ""), best,
                                   delta, event.get("commit", ""), memory))
    if val is not None:
        fig.runs.append((event.get("exp", 0), kind or "", val))
    if state.best_bpb is not None and (val is not None or decision == schema.KEEP):
        fig.frontier.append((event.get("exp", 0), state.best_bpb))


# --- rendering --------------------------------------------------------------------------------


def _num(value: float | None, spec: str = ".6f") -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _headline(fig: Figures) -> list[tuple[str, str]]:
    gain = fig.improvement
    gain_text = "-" if gain is None else f"{gain:+.6f}" + (
        f" ({gain / fig.baseline_bpb * 100:+.2f}%)" if fig.baseline_bpb else "")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(fig.started)) if fig.started else "-"
    origin = "imported from " + fig.source if fig.imported else (
        f"{fig.compat} checkout" if fig.compat else "")
    metric = "self-reported by train.py" if fig.metric_source == "self_reported" else (
        "frozen harness" if not fig.imported else "as logged in results.tsv")
    ran = f"{when}, ran {_duration(max(0.0, fig.ended - fig.started))}" \
        if fig.timed_by != "none" else "unknown"
    rows = [("session", fig.session + (f" ({origin})" if origin else "")),
            ("started", ran + (f", ended: {fig.end_reason}" if fig.end_reason else "")),
            ("agent", f"{fig.agent or '-'}, cost ${fig.cost_usd:.2f}" if not fig.imported
             else f"{fig.agent or '-'}, cost unknown"),
            ("metric", f"val_bpb, {metric}"),
            *([("sandbox", sandbox_text(fig.unsandboxed))] if fig.unsandboxed else []),
            ("baseline", _num(fig.baseline_bpb)),
            ("best", f"{_num(fig.best_bpb)}  {gain_text} vs baseline"
             + (f"  at {fig.best_commit[:7]}" if fig.best_commit else "")),
            ("memory", _memory_text(fig)),
            ("proposals", f"{fig.proposals} ({fig.failed_proposals} failed before running), "
             f"{fig.candidates} run"),
            ("outcomes", f"kept {len(fig.kept)} ({_pct(fig.rate(len(fig.kept)))}), "
             f"discarded {fig.discarded} ({_pct(fig.rate(fig.discarded))}), "
             f"crashed {fig.crashed} ({_pct(fig.rate(fig.crashed))})"
             + (f", interrupted {fig.interrupted} ({_pct(fig.rate(fig.interrupted))})"
                if fig.interrupted else "")),
            ("noise", fig.noise + (f"; {fig.trials / fig.candidates:.2f} runs per candidate"
                                   if fig.candidates else "")),
            *([("early stop", f"{fig.stopped_early} run{'s' * (fig.stopped_early != 1)} "
                f"stopped early, {fig.saved_seconds / 60:.1f} min of training saved")]
              if fig.stopped_early else []),
            *([("tried before", f"{fig.tried_before} proposal{'s' * (fig.tried_before != 1)} "
                "repeated a change tried in an earlier session")] if fig.tried_before else []),
            ("time", _time_text(fig))]
    return rows


def sandbox_text(unsandboxed: int) -> str:
    """The warning `report` and `status` give a session whose train.py ran outside the sandbox."""
    runs = f"{unsandboxed} run{'s' if unsandboxed != 1 else ''}"
    return f"UNSANDBOXED: {runs} trained outside the sandbox (val data readable)"


def _time_text(fig: Figures) -> str:
    if fig.timed_by == "none" or not fig.seconds:
        return "unknown (no timings in the log)"
    if fig.timed_by == "experiments":
        return (f"experiments {_duration(fig.seconds['experiments'])} "
                f"(no phase events: proposing, training and evaluating together)")
    total = sum(fig.seconds.get(p, 0.0) for p in PHASES) or 1.0
    parts = [f"{p} {_duration(fig.seconds.get(p, 0.0))} ({fig.seconds.get(p, 0.0) / total:.0%})"
             for p in PHASES]
    paused = fig.seconds.get("paused")
    return ", ".join(parts) + (f", paused {_duration(paused)}" if paused else "")


def _memory_text(fig: Figures) -> str:
    """Peak memory (autoresearch's memory_gb): the best run's, and the most any run took."""
    if fig.most_memory is None:
        return "not reported by the runs"
    exp, most = fig.most_memory
    best = f"{fig.best_memory_gb:.1f} GB peak (best run)" if fig.best_memory_gb is not None \
        else "best run: not reported"
    return f"{best}, {most:.1f} GB at most (#{exp})"


def _kept_rows(fig: Figures) -> list[tuple[str, str, str, str, str]]:
    rows = [("base", _num(fig.baseline_bpb), "", memory_text(fig.baseline_memory_gb),
             "baseline")]
    rows += [(f"#{k.exp}", _num(k.val_bpb), _num(k.delta, "+.6f"), memory_text(k.memory_gb),
              k.description) for k in fig.kept]
    return rows


def fit(line: str, width: int) -> str:
    """The line cut to `width` with an ellipsis where it is cut: a description cut short must
    not read as another value ("-> 0.04572" as "-> 0")."""
    return line if len(line) <= width else line[: width - 1] + "…"


def text(fig: Figures, chart: bool = True, width: int = 80) -> str:
    headline = _headline(fig)
    longest = max(len(name) for name, _ in headline)  # "tried before": two words, two spaces
    pad = 10 if longest <= 9 else longest + 2
    lines = [f"{name:<{pad}}{value}" for name, value in headline]
    lines += ["", "kept changes (each one's gain over the best before it; peak memory)"]
    for exp, val, delta, memory, description in _kept_rows(fig):
        lines.append(fit(f"  {exp:<6}{val:>9}  {delta:>10}  {memory:>5}  {description}", width))
    if fig.journal:
        lines += ["", "research journal (the agent's notes)"]
        for note in fig.journal:
            lines += textwrap.wrap(" ".join(note.text.split()), width=max(24, width),
                                   initial_indent=f"  #{note.exp:<5}",
                                   subsequent_indent=" " * 8)
    if chart and fig.runs:
        lines += ["", terminal_chart(fig, width=width)]
    return "\n".join(lines)


def markdown(fig: Figures, png: str | None = None) -> str:
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731
    lines = [f"# Ratchet report: {cell(fig.session)}", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {cell(value)} |" for name, value in _headline(fig)]
    lines += ["", "## Kept changes", "", "| exp | val_bpb | delta | mem | change |",
              "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {exp} | {val} | {delta} | {memory} | {cell(description)} |"
              for exp, val, delta, memory, description in _kept_rows(fig)]
    if fig.journal:
        lines += ["", "## Research journal", ""]
        lines += [f"- **#{note.exp}** {' '.join(note.text.split())}" for note in fig.journal]
    if png:
        lines += ["", f"![val_bpb per experiment]({png})"]
    return "\n".join(lines) + "\n"


def terminal_chart(fig: Figures, width: int = 80, height: int = 18, color: bool = False) -> str:
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    if not color:
        plt.theme("clear")
    plt.title("val_bpb per experiment (lower is better)")
    xs, ys = [r[0] for r in fig.runs], [r[2] for r in fig.runs]
    plt.scatter(xs, ys, marker="dot", label="run")
    if fig.frontier:
        plt.plot([f[0] for f in fig.frontier], [f[1] for f in fig.frontier], marker="braille",
                 label="best so far")
    plt.xlabel("experiment")
    out = plt.build()
    plt.clear_figure()
    return out if color else plt.uncolorize(out)


def write_png(fig: Figures, path: Path) -> None:
    """The chart as a PNG; needs matplotlib (`pip install 'ratchet[report]'`)."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--png needs matplotlib: pip install 'ratchet[report]'") from None
    matplotlib.use("Agg")  # no display on a GPU box over SSH
    import matplotlib.pyplot as pyplot

    figure, ax = pyplot.subplots(figsize=(9, 5), dpi=120)
    try:
        colors = {schema.BASELINE: "tab:gray", schema.CANDIDATE: "tab:blue",
                  schema.CONFIRM: "tab:purple"}
        for kind, color in colors.items():
            points = [(r[0], r[2]) for r in fig.runs if r[1] == kind]
            if points:
                ax.scatter(*zip(*points, strict=True), s=18, color=color, label=kind, zorder=3)
        if fig.frontier:
            ax.step([f[0] for f in fig.frontier], [f[1] for f in fig.frontier], where="post",
                    color="tab:green", linewidth=2, label="best so far")
        kept = [(k.exp, k.val_bpb) for k in fig.kept if k.val_bpb is not None]
        if kept:
            ax.scatter(*zip(*kept, strict=True), s=60, facecolors="none",
                       edgecolors="tab:green", label="kept", zorder=4)
        ax.set_xlabel("experiment")
        ax.set_ylabel("val_bpb (lower is better)")
        ax.set_title(f"{fig.session}: {_num(fig.baseline_bpb)} -> {_num(fig.best_bpb)}")
        ax.grid(alpha=0.3)
        if fig.runs:
            ax.legend()
        path = Path(path)
        try:
            figure.savefig(path, format="png", bbox_inches="tight")
        except OSError as exc:
            raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        pyplot.close(figure)
