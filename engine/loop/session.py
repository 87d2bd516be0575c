"""The loop: propose -> apply -> commit -> experiment -> keep or revert, recorded as events.

One Session runs in the engine process. It owns git, the event log and results.tsv; every
decision it takes is appended (and flushed) before the next step starts, so a killed engine
resumes from its log and the branch. It moves only its own branch, only from where it last put
it, and never over the person's uncommitted work (`branch`); results.tsv rows follow the log
(`ledger`).

A full disk is the engine's error, never a candidate's: a run that failed while the disk had no
room is recorded as interrupted, streamed events are dropped, the workspace's reserve
(`lock.reserve`) is freed for the last records, and the session ends with the reason.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from ratchet.engine.agents import kinds
from ratchet.engine.agents.base import Agent, Context, Proposal
from ratchet.engine.loop import (
    branch,
    curve,
    gitops,
    keep_rule,
    ledger,
    lock,
    proposal_check,
    results_tsv,
    resume,
    scheduler,
)
from ratchet.engine.protocol import control, events, noise, paths, schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.runner import experiment
from ratchet.engine.workers import pool, telemetry
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import PROGRAM, Workspace


@dataclass
class RunOptions:
    session: str
    tag: str
    agent: str = kinds.DEFAULT
    max_experiments: int | None = None  # proposals to try; None runs until stopped
    resume: bool = False
    budget: float | None = None  # overrides ratchet.toml's budget_seconds for this session
    gpus: list[int] | None = None  # overrides [loop] gpus: one worker per device
    backend: str | None = None  # overrides [loop] backend: local or ray
    address: str | None = None  # overrides [loop] ray_address
    lock_fd: int | None = None  # the workspace's engine lock, taken by `ratchet run`


# events a full disk may cost: the session's own records do not depend on them
DROPPABLE = (*schema.STREAMS, schema.PHASE)


def session_dir(ws: Workspace, session: str) -> Path:
    return ws.runs_dir() / session


class Session:
    def __init__(self, ws: Workspace, config: Config, options: RunOptions, agent: Agent):
        self.ws, self.config, self.options, self.agent = ws, config, options, agent
        self.dir = session_dir(ws, options.session)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.dir / "events.jsonl"
        # on resume: the log read back, and the settings not given are the session's own
        self.recorded = resume.read(self.events_path) if options.resume else resume.Recorded()
        resume.fill(options, self.recorded.settings)
        if options.budget:
            config.experiment.budget_seconds = options.budget
        if options.gpus is not None:
            config.loop.gpus = list(options.gpus)
        if options.backend:
            config.loop.backend = options.backend
        if options.address is not None:
            config.loop.ray_address = options.address
        self.state = self.recorded.state
        self.last_exp = max(self.state.last_exp, self.recorded.top_exp)  # numbers given out
        self.full = ""  # why the session stops: the disk is full
        self.log = events.EventLog(self.events_path, on_full=self._make_room)
        self.repo = gitops.open_repo(ws.root)
        # where the engine left its branch (`tip`), and why it no longer touches git (`problem`)
        self.branch = branch.Branch(self.repo, gitops.branch_name(options.tag),
                                    on_problem=lambda _why: self.request_stop("error"))
        self.results_path = ws.root / "results.tsv"
        self.rows = list(self.recorded.rows)  # every results.tsv row the log backs, in order
        self.rows_written: int | None = None if options.resume else 0  # None: not repaired yet
        self.steer: queue.Queue[str] = queue.Queue()
        self.paused = threading.Event()
        self.resume_wakeup = threading.Event()
        self.kill_current = threading.Event()
        self.stop_reason = ""
        self._lock = threading.RLock()  # the event log and the state change together
        self.server: control.ControlServer | None = None
        self.sampler: telemetry.ResourceSampler | None = None

    # --- recording -----------------------------------------------------------------------

    def emit(self, event_type: str, exp: int | None = None, **fields) -> dict:
        """Append an event and fold it into the state; any thread may call it. On a full
        disk, one of the DROPPABLE types is left out."""
        with self._lock:
            try:
                event = self.log.append(event_type, exp=exp, **fields)
            except OSError as exc:
                if event_type not in DROPPABLE or not lock.is_full(exc):
                    raise
                return {"type": event_type, "exp": exp, **fields}
            self.rows += ledger.rows_for(event, self.state.pending_confirms,
                                         self.state.pending_runs)
            statemod.apply(self.state, event)
            return event

    def stream(self, event_type: str, exp: int | None = None, **fields) -> None:
        """Append a streamed event (training log, resources): dropped once the disk is full."""
        if self.full:
            return
        try:
            self.log.append(event_type, exp=exp, **fields)
        except OSError as exc:
            if not lock.is_full(exc):
                raise
            self.disk_full()

    def disk_full(self) -> None:
        """The disk has no room: the session stops, with the reason."""
        self.full = self.full or lock.full_message(self.ws.runs_dir())
        self.request_stop("error")

    def _full_now(self, exc: Exception) -> bool:
        """Whether the engine's own failure is the disk's: it says so (a git command in its
        words), or the disk has no room now."""
        return bool(self.full) or lock.is_full(exc) or not lock.has_room(self.dir)

    def _make_room(self, event: dict) -> bool:
        """The log found the disk full (on the writing thread, under the log's lock): the
        reserve goes for the session's own records, once."""
        self.disk_full()
        return event.get("type") not in DROPPABLE and lock.release_reserve(self.ws.runs_dir())

    # --- control ---------------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        """Called on the control server's thread; only sets flags the loop reads."""
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True, "session": self.options.session, "phase": self.state.phase}
        self.emit(schema.CONTROL, cmd=cmd, **({"text": request["text"]} if cmd == "steer" else {}))
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
        held = lock.acquire(self.ws.runs_dir(), self.options.session, self.options.lock_fd)
        try:
            return self._run()
        finally:
            lock.release(held)

    def _run(self) -> int:
        ex = self.config.experiment
        tips = self.recorded.tips() if self.options.resume else ()
        try:  # refused before it starts: a full disk is said in one line (`DiskFull`)
            lock.remove_leftovers(self.ws.runs_dir())
            if not ex.compat:  # data it cannot train on: refused before the branch is made
                self.ws.tokens(self.config)
            branch.clear_stale(self.repo)
            name = gitops.checkout_branch(self.repo, self.options.tag, self.options.resume,
                                          tuple(ex.editable), tips)
            branch.settle(self.repo, tips, tuple(ex.editable))
            paths.write_pid(self.dir, os.getpid())
        except Exception as exc:
            if self._full_now(exc):
                raise lock.DiskFull(lock.full_message(self.ws.runs_dir())) from None
            raise
        base = self.state.base_commit or gitops.head_sha(self.repo)
        self.branch.tip = gitops.head_sha(self.repo)
        self.server = control.ControlServer(self.dir / "control.sock", self.handle)
        self.server.start()
        try:
            self.emit(schema.SESSION_START, session=self.options.session, tag=self.options.tag,
                      branch=name, base_commit=base, config=self.config.to_dict(),
                      hardware=telemetry.hardware(), agent=self.agent.name,
                      resumed=self.options.resume, pid=os.getpid(),
                      options=resume.current(self.config, self.options.max_experiments),
                      **({"compat": ex.compat} if ex.compat else {}))
            self.sampler = telemetry.ResourceSampler(
                lambda sample: self.stream(schema.RESOURCES, **sample))
            self.sampler.start()
            self.branch.watch()
            self._recover()
            # an error of the loop's, or why the engine stopped without touching its branch
            error = self.branch.problem or self.full or self._loop()
            error = self.full or error
            return 1 if self._finish("error" if error else self.stop_reason, error=error) else 0
        except Exception as exc:  # the engine's own failure: recorded, never silent
            if not self._full_now(exc):
                self._finish("error", error=f"{type(exc).__name__}: {exc}")
                raise
            self.disk_full()
            self._finish("error", error=self.full)
            return 1
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            self.branch.unwatch()
            self.server.close()
            self.log.close()

    def _loop(self) -> str:
        for entry in self.state.history:  # a resumed agent relearns what the log knows
            self.agent.observe(Proposal(entry.description, {}, changes=entry.changes), entry)
        backend = pool.create(self.ws, self.config, self.repo, self.dir, pool.Hooks(
            on_log=lambda job, record: self.stream(
                schema.TRAIN_LOG, exp=job.exp, worker=job.worker, **record),
            on_phase=lambda job, name: self.emit(
                "phase", exp=job.exp, phase=name, worker=job.worker)))
        return scheduler.Scheduler(self, backend).run()

    def _finish(self, reason: str, error: str = "") -> str:
        """Leave the branch at the best commit (moved only where it is not) and record the end;
        returns its error: a branch taken meanwhile is one, and stays as it is. On a full disk
        the reserve makes room; what still finds none is left to the resume."""
        if self.state.ended:
            return error
        if self.full:
            lock.release_reserve(self.ws.runs_dir())
        with self._unless_full():
            self.branch.move(self.state.best_commit, "putting the branch at the best commit")
        if self.branch.problem:
            reason, error = "error", self.branch.problem
        with self._unless_full():
            self._close_running(f"engine stopping ({error or reason})")
            self.write_rows()
        self.emit(schema.SESSION_END, reason=reason, experiments=self.state.last_exp,
                  kept=self.state.kept, best_bpb=self.state.best_bpb,
                  baseline_bpb=self.state.baseline_bpb, best_commit=self.state.best_commit,
                  **({"error": error} if error else {}))
        with self._unless_full():
            self.log.sync()
        return error

    @contextlib.contextmanager
    def _unless_full(self):
        """Go on past a write that found the disk full, once the session knows it is."""
        try:
            yield
        except Exception as exc:
            if not (self.full and lock.is_full(exc)):
                raise

    def _recover(self) -> None:
        """After a crash of the engine: the branch at the best commit (a keep the log has
        completed), results.tsv as the log says, and what was in flight closed."""
        if not self.branch.move(self.state.best_commit, "putting the branch at the best commit",
                                self.recorded.tips()):
            return
        self.write_rows()
        for n in self.recorded.unreadable_ends:  # recorded already, only unreadable now
            self.state.running.pop(n, None)
        self._close_running("engine stopped during the experiment")
        for n, pending in sorted(self.state.pending_confirms.items()):
            self.emit(schema.PROPOSAL_DROPPED, exp=n, reason="the engine stopped before its "
                      "confirmation", description=pending.get("description", ""),
                      stage="confirm", changes=pending.get("changes") or {})
        self.log.sync()
        self.write_rows()

    def _close_running(self, why: str) -> None:
        """Record what the log has in flight as interrupted: a session never ends with it."""
        for start in sorted(self.state.running.values(), key=lambda e: e.get("exp", 0)):
            self.record_end(start["exp"], start.get("kind", "candidate"), start.get("commit", ""),
                            experiment.Result(status="interrupted", error=why),
                            start.get("description", ""), decision=keep_rule.INTERRUPTED,
                            **({"worker": start["worker"]} if "worker" in start else {}))

    def write_rows(self) -> None:
        """Append the results.tsv rows of what the log holds (once those events are on disk);
        the first call of a resume repairs the file."""
        with self._lock:
            if self.rows_written is None:
                theirs = set(self.recorded.unreadable_ends.values())
                ledger.repair(self.results_path, self.rows, self.recorded.ours - theirs)
            else:
                for row in self.rows[self.rows_written:]:
                    results_tsv.append(self.results_path, *row)
            self.rows_written = len(self.rows)

    def context_for(self, files: dict[str, str], based_on: str,
                 in_flight: list[str] | None = None) -> Context:
        """What the agent sees: the files at `based_on`, the history, and what is running."""
        notes = []
        while not self.steer.empty():
            notes.append(self.steer.get_nowait())
        program = (self.ws.root / PROGRAM).read_text() if (self.ws.root / PROGRAM).is_file() \
            else ""
        with self._lock:
            history, best = list(self.state.history), self.state.best_bpb
            journal, best_result = list(self.state.journal), dict(self.state.best_result)
        return Context(files=files, program=program, history=history,
                       best_bpb=best, margin=self.margin(), steer=notes,
                       journal=journal, best_result=best_result,
                       last_crash_tail=self.state.last_crash_tail[-4000:],
                       in_flight=in_flight or [],
                       check=lambda candidate: self.check_files(candidate, files),
                       based_on=based_on)

    def margin(self) -> float:
        """What a change must beat the best by: under the paired rule the gain it keeps four
        times in five at the session's noise so far, under the margin rule its margin."""
        measured = noise.of(self.state).detectable
        return self.config.experiment.min_improvement if measured is None else measured

    def noise(self) -> tuple[float, int]:
        """The noise of one paired difference and its degrees of freedom, pooled so far."""
        return keep_rule.paired_noise(self.state.baseline, self.state.paired)

    def check(self, proposal: Proposal, context: Context) -> str:
        """Why the proposal cannot be applied, or '' (then it keeps only the changed files)."""
        error = self.check_files(proposal.files, context.files)
        if not error:
            proposal.files = proposal_check.changed_files(proposal.files, context.files)
        return error

    def check_files(self, files: dict[str, str], current: dict[str, str]) -> str:
        """Why these new file contents cannot be a candidate, or '' if they can."""
        return proposal_check.refusal(files, current, self.config.experiment.editable)

    def record_end(self, n: int, kind: str, commit: str, result: experiment.Result,
                   description: str, decision: str, changes: dict | None = None,
                   **extra) -> dict:
        """Log an experiment's end and put it on disk, then its results.tsv rows. A keep is
        logged under the branch's move to it (`Branch.move`); one the branch cannot take (taken
        from the engine, or the person's work in the way) is recorded as interrupted."""
        self._blame_disk(result)
        self.branch.look()  # a branch taken under the engine stops it by this result at latest
        if result.status == "interrupted":  # cut short: says nothing of the change
            decision = keep_rule.INTERRUPTED
        args, kept = (n, kind, commit, result, description, changes), []
        # refused after its record only in a race with an editor's write: the resume ends it
        if decision == keep_rule.KEEP and not self.branch.move(
                commit, f"keeping exp {n}",
                before=lambda: kept.append(self._log_end(*args, decision, **extra))) and not kept:
            decision, result.error = keep_rule.INTERRUPTED, f"not kept: {self.branch.problem}"
        event = kept[0] if kept else self._log_end(*args, decision, **extra)
        self.write_rows()
        return event

    def _log_end(self, n: int, kind: str, commit: str, result: experiment.Result,
                 description: str, changes: dict | None, decision: str, **extra) -> dict:
        best = self.state.best_bpb
        delta = (result.val_bpb - best) if (result.val_bpb is not None and best is not None
                                            and kind != "baseline") else None
        summary = result.to_json()
        summary["tail"] = summary["tail"][-4000:]
        summary["curve"] = curve.thin(result.train_log, result.budget_seconds)
        event = self.emit(schema.EXP_END, exp=n, kind=kind, status=result.status, decision=decision,
                          val_bpb=result.val_bpb, best_before=best, delta=delta,
                          margin=self.margin(), commit=commit, description=description,
                          changes=changes or {}, result=summary, **extra)
        self.log.sync()
        return event

    def _blame_disk(self, result: experiment.Result) -> None:
        """A run that failed while the disk was full is interrupted, not the candidate's
        crash: the engine's own write said so, or the disk has no room now."""
        if result.status != "ok" and (self.full or lock.failed_for_room(result.error, self.dir)):
            self.disk_full()
            result.status, result.error = "interrupted", f"stopped by a full disk: {result.error}"
