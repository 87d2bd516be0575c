"""The loop: propose -> apply -> commit -> experiment -> keep or revert, recorded as events.

One Session runs in the engine process. It owns git, the event log and results.tsv; every
decision it takes is appended (and flushed) before the next step starts, so a killed engine
resumes from its log and the branch.
"""

from __future__ import annotations

import difflib
import os
import queue
import signal
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path

from ratchet.engine import control, events, experiment, gitops, resources, results_tsv
from ratchet.engine import state as statemod
from ratchet.engine.agents.base import (
    Agent,
    AgentError,
    AgentPaused,
    Context,
    HistoryEntry,
    Proposal,
)
from ratchet.engine.config import Config
from ratchet.engine.workspace import PROGRAM, Workspace

MAX_FAILED_PROPOSALS = 10


@dataclass
class RunOptions:
    session: str
    tag: str
    agent: str = "offline"
    max_experiments: int | None = None  # proposals to try; None runs until stopped
    resume: bool = False
    budget: float | None = None  # overrides ratchet.toml's budget_seconds for this session


def session_dir(ws: Workspace, session: str) -> Path:
    return ws.runs_dir() / session


class Session:
    def __init__(self, ws: Workspace, config: Config, options: RunOptions, agent: Agent):
        self.ws, self.config, self.options, self.agent = ws, config, options, agent
        if options.budget:
            config.experiment.budget_seconds = options.budget
        self.dir = session_dir(ws, options.session)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.dir / "events.jsonl"
        self.state = statemod.fold(events.iter_events(self.events_path)) \
            if options.resume and self.events_path.exists() else statemod.LoopState()
        self.log = events.EventLog(self.events_path)
        self.repo = gitops.open_repo(ws.root)
        self.results_path = ws.root / "results.tsv"
        self.steer: queue.Queue[str] = queue.Queue()
        self.paused = threading.Event()
        self.resume_wakeup = threading.Event()
        self.kill_current = threading.Event()
        self.stop_reason = ""
        self.failures = 0  # proposals that failed in a row
        self.server: control.ControlServer | None = None
        self.sampler: resources.ResourceSampler | None = None

    # --- recording -----------------------------------------------------------------------

    def emit(self, event_type: str, exp: int | None = None, **fields) -> dict:
        event = self.log.append(event_type, exp=exp, **fields)
        statemod.apply(self.state, event)
        return event

    def phase(self, name: str, exp: int | None = None) -> None:
        if self.state.phase != name:
            self.emit("phase", exp=exp, phase=name)

    # --- control ---------------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        """Called on the control server's thread; only sets flags the loop reads."""
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True, "session": self.options.session, "phase": self.state.phase}
        self.emit("control", cmd=cmd, **({"text": request["text"]} if cmd == "steer" else {}))
        if cmd == "pause":
            self.paused.set()
        elif cmd == "resume":
            self.paused.clear()
            self.resume_wakeup.set()
        elif cmd == "steer":
            self.steer.put(request["text"])
        elif cmd == "kill":
            self.kill_current.set()
        elif cmd == "stop":
            self.request_stop("stopped")
        return {"ok": True}

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.kill_current.set()
        self.resume_wakeup.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an SSH hang-up must not stop the loop
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("signal"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("signal"))

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        ex, loop = self.config.experiment, self.config.loop
        branch = gitops.checkout_branch(self.repo, self.options.tag, self.options.resume,
                                        tuple(ex.editable))
        base = self.state.base_commit or gitops.head_sha(self.repo)
        self.server = control.ControlServer(self.dir / "control.sock", self.handle)
        self.server.start()
        (self.dir / "engine.pid").write_text(str(os.getpid()))
        self.emit("session_start", session=self.options.session, tag=self.options.tag,
                  branch=branch, base_commit=base, config=self.config.to_dict(),
                  hardware=resources.hardware(), agent=self.agent.name,
                  resumed=self.options.resume, pid=os.getpid(),
                  **({"compat": ex.compat} if ex.compat else {}))
        self.sampler = resources.ResourceSampler(lambda s: self.log.append("resources", **s))
        self.sampler.start()
        try:
            self._recover()
            while self.state.baseline_runs < loop.baseline_seeds and not self.stop_reason:
                self._run_baseline(ex.seed + self.state.baseline_runs)
            if not self.state.baseline and not self.stop_reason:
                self.stop_reason = "error"
                self._finish("error", error="every baseline run failed; fix train.py first")
                return 1
            for entry in self.state.history:  # a resumed agent relearns what the log knows
                self.agent.observe(Proposal(entry.description, {}, changes=entry.changes), entry)
            while not self.stop_reason:
                if (self.options.max_experiments is not None
                        and self.state.proposals >= self.options.max_experiments):
                    self.stop_reason = "max_experiments"
                    break
                self._wait_while_paused()
                if self.stop_reason:
                    break
                self._one_proposal()
            self._finish(self.stop_reason)
            return 0
        except Exception as exc:  # the engine's own failure: recorded, never silent
            self._finish("error", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.sampler.stop()
            self.server.close()
            self.log.close()

    def _finish(self, reason: str, error: str = "") -> None:
        if self.state.ended:
            return
        gitops.reset_to(self.repo, self.state.best_commit)
        self.emit("session_end", reason=reason, experiments=self.state.last_exp,
                  kept=self.state.kept, best_bpb=self.state.best_bpb,
                  baseline_bpb=self.state.baseline_bpb, best_commit=self.state.best_commit,
                  **({"error": error} if error else {}))
        self.log.sync()

    def _recover(self) -> None:
        """After a crash of the engine: close what was in flight, back to the best commit."""
        if self.state.in_flight:
            start = self.state.in_flight
            self._record_end(start["exp"], start.get("kind", "candidate"), start.get("commit", ""),
                             experiment.Result(status="interrupted",
                                               error="engine stopped during the experiment"),
                             start.get("description", ""), decision="crash")
        if self.state.pending:
            pending = self.state.pending
            self._write_row(pending, "discard", " (confirmation interrupted)")
            self.state.pending = None
        gitops.reset_to(self.repo, self.state.best_commit)

    def _wait_while_paused(self) -> None:
        if not self.paused.is_set():
            return
        self.emit("paused")
        self.phase("paused")
        while self.paused.is_set() and not self.stop_reason:
            self.resume_wakeup.wait(0.5)
            self.resume_wakeup.clear()
        if not self.stop_reason:
            self.emit("resumed")

    def _run_baseline(self, seed: int) -> None:
        n = self.state.last_exp + 1
        commit = self.state.best_commit
        label = "baseline" if self.state.baseline_runs == 0 else f"baseline (seed {seed})"
        result = self._experiment(n, "baseline", commit, seed, label)
        self._record_end(n, "baseline", commit, result, label, decision="baseline")

    def _context(self) -> Context:
        files = {name: (self.ws.root / name).read_text()
                 for name in self.config.experiment.editable if (self.ws.root / name).is_file()}
        notes = []
        while not self.steer.empty():
            notes.append(self.steer.get_nowait())
        program = (self.ws.root / PROGRAM).read_text() if (self.ws.root / PROGRAM).is_file() \
            else ""
        return Context(files=files, program=program, history=list(self.state.history),
                       best_bpb=self.state.best_bpb, margin=self._margin(), steer=notes,
                       last_crash_tail=self.state.last_crash_tail[-4000:],
                       check=lambda candidate: self.check_files(candidate, files),
                       based_on=self.state.best_commit)

    def _margin(self) -> float:
        ex, loop = self.config.experiment, self.config.loop
        return self.state.margin(ex.min_improvement, loop.noise_k)

    def _one_proposal(self) -> None:
        n = self.state.last_exp + 1
        self.phase("proposing", n)
        context = self._context()
        context.record = lambda event_type, **fields: self.emit(event_type, exp=n, **fields)
        batcher = events.TextBatcher(self.log, n)
        try:
            proposal = self.agent.propose(context, batcher.add)
            batcher.flush()
            error = self._check(proposal, context)
        except AgentPaused as exc:
            batcher.flush()
            self.emit("proposal_failed", exp=n, error=str(exc), paused=True)
            self.paused.set()
            return
        except AgentError as exc:
            batcher.flush()
            proposal, error = None, str(exc)
        if error:
            self.emit("proposal_failed", exp=n, error=error)
            self.failures += 1
            if self.failures >= MAX_FAILED_PROPOSALS:
                self.request_stop("error")
                self.emit("agent_gave_up", error=f"{self.failures} proposals in a row failed; "
                                                 f"last: {error}")
            else:  # back off so an agent out of ideas does not spin
                self.resume_wakeup.wait(min(30.0, 0.5 * 2 ** (self.failures - 1)))
                self.resume_wakeup.clear()
            if proposal is not None:
                self.agent.observe(proposal, HistoryEntry(n, proposal.description, "crash",
                                                          "crash", None, None, proposal.changes))
            return
        self.failures = 0
        based_on = self.state.best_commit
        commit = gitops.commit_files(self.repo, proposal.files, f"exp {n}: {proposal.description}")
        self.emit("proposal", exp=n, description=proposal.description,
                  rationale=proposal.rationale, diff=gitops.diff(self.repo, based_on, commit),
                  files=sorted(proposal.files), based_on=based_on, changes=proposal.changes,
                  steer=context.steer)
        self._try_candidate(n, commit, proposal)

    def _check(self, proposal: Proposal, context: Context) -> str:
        """Why the proposal cannot be applied, or '' (then it keeps only the changed files)."""
        error = self.check_files(proposal.files, context.files)
        if not error:
            proposal.files = {k: v for k, v in proposal.files.items()
                              if context.files.get(k) != v}
        return error

    def check_files(self, files: dict[str, str], current: dict[str, str]) -> str:
        """Why these new file contents cannot be a candidate, or '' if they can."""
        allowed = set(self.config.experiment.editable)
        outside = sorted(set(files) - allowed)
        if outside:
            return f"edits files outside {sorted(allowed)}: {outside}"
        changed = {k: v for k, v in files.items() if current.get(k) != v}
        if not changed:
            return "the proposal changes nothing"
        for name, text in changed.items():
            if name.endswith(".py"):
                try:
                    compile(text, name, "exec")
                except SyntaxError as exc:
                    return f"{name} does not compile: {exc.msg} (line {exc.lineno})"
        if _only_seed_changes(current, changed):
            return "the proposal only changes a seed, which is never an improvement"
        return ""

    def _try_candidate(self, n: int, commit: str, proposal: Proposal) -> None:
        seed = self.config.experiment.seed
        result = self._experiment(n, "candidate", commit, seed, proposal.description)
        best, margin = self.state.best_bpb, self._margin()
        if result.status != "ok" or result.val_bpb is None:
            decision = "crash"
        elif result.val_bpb < best - margin:
            decision = "pending_confirm" if self.config.loop.confirm else "keep"
        elif result.val_bpb < best:
            decision = "near_miss"
        else:
            decision = "discard"
        end = self._record_end(n, "candidate", commit, result, proposal.description, decision,
                               changes=proposal.changes, write_row=decision != "pending_confirm")
        if decision == "pending_confirm" and not self.stop_reason:
            end = self._confirm(n, commit, proposal, result, best, margin)
        elif decision == "pending_confirm":  # stopped before it could be confirmed
            self._write_row(end, "discard", " (not confirmed)")
        if self.state.best_commit != commit:
            gitops.reset_to(self.repo, self.state.best_commit)
        entry = self.state.history[-1] if self.state.history else None
        if entry is not None:
            self.agent.observe(proposal, entry)

    def _confirm(self, n: int, commit: str, proposal: Proposal, first: experiment.Result,
                 best: float, margin: float) -> dict:
        pending = self.state.pending
        m = self.state.last_exp + 1
        seed = self.config.experiment.seed + 1000 + n  # a seed the change was not chosen on
        label = f"confirm exp {n}: {proposal.description}"
        second = self._experiment(m, "confirm", commit, seed, label)
        if second.status != "ok" or second.val_bpb is None:
            decision, new_best = "crash", None
        else:
            new_best = statistics.mean([first.val_bpb, second.val_bpb])
            decision = "keep" if new_best < best - margin else (
                "near_miss" if new_best < best else "discard")
        status = "keep" if decision == "keep" else "discard"
        self._write_row(pending, status, "" if decision == "keep" else " (not confirmed)")
        return self._record_end(m, "confirm", commit, second, proposal.description, decision,
                                changes=proposal.changes, new_best=new_best, confirms=n)

    def _experiment(self, n: int, kind: str, commit: str, seed: int,
                    description: str) -> experiment.Result:
        self.kill_current.clear()
        self.emit("exp_start", exp=n, kind=kind, commit=commit, seed=seed,
                  budget=self.config.experiment.budget_seconds, description=description)
        self.log.sync()
        result = experiment.run(
            self.ws, self.config, self.dir / f"exp-{n:04d}", seed=seed,
            on_log=lambda record: self.log.append("train_log", exp=n, **record),
            should_kill=self.kill_current.is_set,
            on_phase=lambda name: self.phase(name, n))
        if result.status == "killed" and self.stop_reason:
            result.status, result.error = "interrupted", f"engine stopping ({self.stop_reason})"
        return result

    def _record_end(self, n: int, kind: str, commit: str, result: experiment.Result,
                    description: str, decision: str, changes: dict | None = None,
                    write_row: bool = True, **extra) -> dict:
        best = self.state.best_bpb
        delta = (result.val_bpb - best) if (result.val_bpb is not None and best is not None
                                            and kind != "baseline") else None
        summary = result.to_json()
        summary["tail"] = summary["tail"][-4000:]
        event = self.emit("exp_end", exp=n, kind=kind, status=result.status, decision=decision,
                          val_bpb=result.val_bpb, best_before=best, delta=delta,
                          margin=self._margin(), commit=commit, description=description,
                          changes=changes or {}, result=summary, **extra)
        if write_row:
            self._write_row(event, *_row_status(decision, result.status))
        self.log.sync()
        return event

    def _write_row(self, end: dict, status: str, suffix: str = "") -> None:
        label = end.get("description", "")
        if end.get("kind") == "confirm":
            label = f"confirm: {label}"
        results_tsv.append(self.results_path, end.get("commit", ""), end.get("val_bpb"),
                           (end.get("result") or {}).get("peak_memory_mb", 0.0), status,
                           label + suffix)


def _row_status(decision: str, run_status: str) -> tuple[str, str]:
    """results.tsv status (autoresearch's keep, discard or crash) and a note for the description."""
    if run_status != "ok":
        note = f" ({run_status})" if decision == "crash" and run_status != "crash" else ""
        return "crash", note
    if decision in ("baseline", "keep"):
        return "keep", ""
    return "discard", " (near miss)" if decision == "near_miss" else ""


def _only_seed_changes(old_files: dict[str, str], changed: dict[str, str]) -> bool:
    """True when every changed line mentions a seed: reseeding is noise, not research."""
    for name, text in changed.items():
        old = old_files.get(name, "").splitlines()
        for line in difflib.unified_diff(old, text.splitlines(), lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            if line[1:].strip() and "seed" not in line.lower():
                return False
    return True

