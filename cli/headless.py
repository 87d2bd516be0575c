"""Headless output: one line per experiment, a live budget bar, and `ratchet status`."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from ratchet.cli import report, study_report
from ratchet.engine.protocol import events, noise, paths, schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.protocol.history import memory_gb, memory_text
from ratchet.engine.workspace import catalog

# Events printed as one line (`type: error, reason or command`) when they happen.
NOTED = (schema.PROPOSAL_FAILED, schema.AGENT_RETRY, schema.PAUSED, schema.RESUMED, schema.CONTROL,
         schema.PROPOSAL_DROPPED, schema.JOURNAL)

def experiment_line(event: dict) -> str:
    """`#  n  status  val_bpb  delta  memory  description`, as printed for every finished
    experiment (memory: the run's peak, autoresearch's memory_gb)."""
    val = event.get("val_bpb")
    delta = event.get("delta")
    decision = event.get("decision", "")
    label = decision if decision not in ("", schema.CRASH) else event.get("status", "")
    if event.get("status") == schema.STOPPED_EARLY:
        label = "stopped early"
    memory = memory_text(memory_gb(event.get("result")), "")
    return (f"#{event.get('exp', 0):<4} {label:<15} "
            f"{f'{val:.6f}' if val is not None else '-':>9} "
            f"{f'{delta:+.6f}' if delta is not None else '':>10} {memory:>5}  "
            f"{event.get('description', '')}")


def _bar(elapsed: float, budget: float, width: int = 24) -> str:
    frac = max(0.0, min(1.0, elapsed / budget)) if budget > 0 else 0.0
    filled = int(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {elapsed:5.1f}/{budget:g} s"


def follow(folder: Path, out=None, pid: int = 0, since: int = 0,
           state: statemod.LoopState | None = None, end_note: str = "") -> int:
    """Print the session as it happens until it ends; Ctrl-C detaches, the engine goes on.

    A resume follows its own run: from byte `since` of the log (where it stood when the engine
    was started), on `state` folded from what came before, so the previous run's lines and its
    end are not printed again, and it returns when the resumed run ends."""
    out = out or sys.stdout
    tty = out.isatty()
    # damage is said once, in the documented line, never as a Python warning
    tail = events.LogTail(folder / paths.EVENTS, offset=since, on_warning=catalog.warn_stderr)
    state = state or statemod.LoopState()
    running: dict[int, dict] = {}  # exp -> exp_start; several with more than one worker
    pid = pid or paths.engine_alive(folder)
    quiet_since = time.monotonic()
    try:
        while True:
            batch = tail.poll()
            for event in batch:
                statemod.apply(state, event)
                kind = event.get("type")
                if kind == schema.EXP_START:
                    running[event.get("exp", 0)] = event
                elif kind == schema.EXP_END:
                    running.pop(event.get("exp", 0), None)
                    _clear(out, tty)
                    print(experiment_line(event), file=out, flush=True)
                elif kind == schema.TRAIN_LOG and event.get("exp") in running and tty:
                    budget = running[event["exp"]].get("budget", 0)
                    print(f"\r  #{event['exp']} {_bar(event.get('elapsed', 0), budget)} "
                          f"loss {event.get('loss', 0):.4f}", end="", file=out, flush=True)
                elif kind in NOTED:
                    _clear(out, tty)
                    print(f"      {kind}: "
                          f"{event.get('error') or event.get('reason') or event.get('cmd') or ''} "
                          f"{event.get('text', '')}".rstrip(), file=out, flush=True)
                elif kind == schema.SESSION_END:
                    _clear(out, tty)
                    note = f"; {end_note}" if end_note else ""  # e.g. the branch left out
                    print(_end_line(state, event) + note, file=out, flush=True)
                    _wait_exit(folder, pid)
                    return 0 if event.get("reason") != "error" else 1
            if batch:
                quiet_since = time.monotonic()
            elif (not pid or paths.engine_alive(folder) != pid) \
                    and time.monotonic() - quiet_since > 1.0:
                print(f"ratchet: error: the engine exited without ending the session; see "
                      f"{folder / 'engine.log'}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        _clear(out, tty)
        print(f"detached: the engine keeps running (session {folder.name}); "
              f"`ratchet status` or `ratchet stop`", file=out)
        return 0


def _wait_exit(folder: Path, pid: int, timeout: float = 30.0) -> None:
    """Give the engine the moment it takes to exit after its last event, so that the next
    command (a resume, say) does not find it still running."""
    deadline = time.monotonic() + timeout
    while pid and paths.engine_alive(folder) == pid and time.monotonic() < deadline:
        time.sleep(0.05)


def _clear(out, tty: bool) -> None:
    if tty:
        print("\r\033[K", end="", file=out)


def _end_line(state: statemod.LoopState, event: dict) -> str:
    best, base = event.get("best_bpb"), event.get("baseline_bpb")
    gain = f" ({best - base:+.6f} vs baseline {base:.6f})" if best is not None and base else ""
    error = f": {event['error']}" if event.get("error") else ""
    best_text = f"{best:.6f}" if best is not None else "-"
    return (f"session ended ({event.get('reason', '')}{error}): {state.kept} kept, "
            f"best val_bpb {best_text}{gain}")


def cost_line(state: statemod.LoopState) -> str:
    """The agent's spending: dollars at the configured prices and the tokens behind them."""
    tokens = state.tokens
    line = f"cost      ${state.cost_usd:.4f}"
    if tokens:
        line += (f"  tokens in {_count(tokens.get('input_tokens', 0))}"
                 f"  out {_count(tokens.get('output_tokens', 0))}"
                 f"  cache read {_count(tokens.get('cache_read_tokens', 0))}"
                 f"  write {_count(tokens.get('cache_write_tokens', 0))}")
    return line


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _spread(state: statemod.LoopState) -> str:
    spread = noise.of(state).spread
    runs = f"{len(state.baseline)} baseline run{'s' * (len(state.baseline) != 1)}"
    return f"{spread:.4f} over {runs}" if spread is not None else f"- ({runs})"


def status_text(folder: Path, on_warning: Callable[[str], None] | None = None) -> str:
    log = catalog.load(folder, on_warning)
    state = statemod.fold(log)
    running = paths.is_running(folder) and not state.ended
    if study_report.is_study(log):  # validate, ablate: their plan and readings so far
        return study_report.text(log, running=running)
    where = "running" if running else ("finished" if state.ended else "not running (crashed?)")
    best = f"{state.best_bpb:.6f}" if state.best_bpb is not None else "-"
    base = state.baseline_bpb
    gain = f"  ({state.best_bpb - base:+.6f} vs baseline {base:.6f})" \
        if base is not None and state.best_bpb is not None else ""
    lines = [
        f"session   {state.session}  [{where}{', paused' if state.paused else ''}]",
        f"branch    {state.branch or '-'}   agent {state.agent}   " + (
            f"imported from {log[0].get('source', '')}" if log and log[0].get("imported")
            else f"pid {state.pid}"),
        f"phase     {state.phase}   experiments {state.last_exp}   proposals {state.proposals}"
        f"   kept {state.kept}",
        f"best      {best}{gain}",
        f"noise     {noise.of(state).line()}; baseline spread {_spread(state)}",
        cost_line(state),
    ]
    if state.unsandboxed:
        lines.append(f"sandbox   {report.sandbox_text(state.unsandboxed)}")
    if state.paused and not state.ended:  # an agent that needs the person says why
        why = next((e for e in reversed(log)
                    if e.get("type") in (schema.PROPOSAL_FAILED, schema.RESUMED)), {})
        if why.get("paused"):
            lines.append(textwrap.fill(f"paused    by the agent: {why.get('error', '')}",
                                       width=80, subsequent_indent=" " * 10))
    for started in sorted(state.running.values(), key=lambda e: e.get("exp", 0)):
        worker = f" [worker {started['worker']}]" if "worker" in started else ""
        lines.append(f"running   #{started.get('exp')} {started.get('kind')}{worker}: "
                     f"{started.get('description', '')} ({time.time() - started['t']:.0f} s)")
    ends = [e for e in log if e.get("type") == schema.EXP_END]
    if ends:
        lines.append("recent")
        lines += ["  " + experiment_line(e) for e in ends[-8:]]
    if state.ended and state.end_reason:
        lines.append(f"ended     {state.end_reason}")
    return "\n".join(lines)
