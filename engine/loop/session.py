"""The loop: propose -> apply -> commit -> experiment -> keep or revert, recorded as events.

One Session runs in the engine process: it starts the session (its branch, its log, the
control socket), recovers what a killed engine left, runs the scheduler and records the end.
Every decision is appended (and flushed) before the next step starts (`recorder`), so a killed
engine resumes from its log and the branch. It moves only its own branch, only from where it
last put it, and never over the person's uncommitted work (`branch`); results.tsv rows follow
the log (`ledger`). A full disk is the engine's error, never a candidate's (`recorder`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import signal
from dataclasses import dataclass
from pathlib import Path

from ratchet.engine.agents.base import Agent, Context, Proposal
from ratchet.engine.loop import branch, gitops, lock, proposal_check, resume, rules
from ratchet.engine.loop.controls import Controls
from ratchet.engine.loop.handoff import Handoff
from ratchet.engine.loop.jobs import Numbers
from ratchet.engine.loop.moves import Moves
from ratchet.engine.loop.proposer import Proposer
from ratchet.engine.loop.recorder import Recorder
from ratchet.engine.loop.scheduler import Scheduler
from ratchet.engine.loop.stopper import Stopper
from ratchet.engine.protocol import control, paths, schema
from ratchet.engine.runner import experiment
from ratchet.engine.workers import pool, telemetry
from ratchet.engine.workers.backend import Job
from ratchet.engine.workspace import agent_kinds as kinds
from ratchet.engine.workspace import earlier
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


def session_dir(ws: Workspace, session: str) -> Path:
    return ws.runs_dir() / session


class Session:
    def __init__(self, ws: Workspace, config: Config, options: RunOptions, agent: Agent):
        self.ws, self.config, self.options, self.agent = ws, config, options, agent
        self.dir = session_dir(ws, options.session)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.dir / paths.EVENTS
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
        self.rule = rules.create(config)
        self.state = self.recorded.state
        self.last_exp = max(self.state.last_exp, self.recorded.top_exp)  # numbers given out
        self.recorder = Recorder(self.dir, self.recorded, ws.root / "results.tsv",
                                 ws.runs_dir(), resuming=options.resume,
                                 on_full=lambda: self.request_stop(schema.STOP_ERROR))
        self.recorder.margin = lambda: self.rule.margin(self.state)
        self.log, self.emit = self.recorder.log, self.recorder.emit
        self.write_rows, self.record_end = self.recorder.write_rows, self.recorder.end
        self.repo = gitops.open_repo(ws.root)
        # where the engine left its branch (`tip`), and why it no longer touches git (`problem`)
        self.branch = branch.Branch(self.repo, gitops.branch_name(options.tag),
                                    on_problem=lambda _why: self.request_stop(schema.STOP_ERROR))
        self.recorder.branch = self.branch
        self.steer: queue.Queue[str] = queue.Queue()
        self.controls = Controls()
        self.server: control.ControlServer | None = None
        self.sampler: telemetry.ResourceSampler | None = None

    # --- control ---------------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        """Called on the control server's thread; only sets flags the loop reads."""
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True, "session": self.options.session, "phase": self.state.phase}
        self.emit(schema.CONTROL, cmd=cmd, **({"text": request["text"]} if cmd == "steer" else {}))
        if cmd == "pause":
            self.controls.paused.set()
        elif cmd == "resume":
            self.controls.paused.clear()
            self.controls.resume_wakeup.set()
        elif cmd == "steer":
            self.steer.put(request["text"])
        elif cmd == "kill":
            self.controls.kill_current.set()
        elif cmd == "stop":
            self.request_stop(schema.STOP_STOPPED)
        return {"ok": True}

    def request_stop(self, reason: str) -> None:
        self.controls.request_stop(reason)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an SSH hang-up must not stop the loop
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop(schema.STOP_SIGNAL))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop(schema.STOP_SIGNAL))

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
            if self.recorder.full_now(exc):
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
                lambda sample: self.recorder.stream(schema.RESOURCES, **sample))
            self.sampler.start()
            self.branch.watch()
            self._recover()
            # an error of the loop's, or why the engine stopped without touching its branch
            error = self.branch.problem or self.recorder.full or self._loop()
            error = self.recorder.full or error
            reason = schema.STOP_ERROR if error else self.controls.stop_reason
            return 1 if self._finish(reason, error=error) else 0
        except Exception as exc:  # the engine's own failure: recorded, never silent
            if not self.recorder.full_now(exc):
                self._finish(schema.STOP_ERROR, error=f"{type(exc).__name__}: {exc}")
                raise
            self.recorder.disk_full()
            self._finish(schema.STOP_ERROR, error=self.recorder.full)
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
        stopper = Stopper() if self.config.loop.early_stop and self.rule.stops_early else None

        def on_log(job: Job, record: dict) -> None:
            self.recorder.stream(schema.TRAIN_LOG, exp=job.exp, worker=job.worker, **record)
            if stopper is not None:
                stopper.observe(job.exp, record)

        backend = pool.create(self.ws, self.config, self.repo, self.dir, pool.Hooks(
            on_log=on_log,
            on_phase=lambda job, name: self.emit(
                schema.PHASE, exp=job.exp, phase=name, worker=job.worker)))
        moves = Moves(self.repo, self.config.experiment.editable, self.recorder)
        best = self.state.best_commit
        handoff = Handoff((best, moves.files_at(best)), self.state.proposals,
                          len(backend.workers), self.options.max_experiments)
        numbers = Numbers(self.last_exp)
        if stopper is not None:
            stopper.backend = backend
        return Scheduler(self.controls, self.recorder, self.rule, moves, backend, self.config,
                         handoff, numbers, Proposer(self, numbers, handoff), stopper).run()

    def _finish(self, reason: str, error: str = "") -> str:
        """Leave the branch at the best commit (moved only where it is not) and record the end;
        returns its error: a branch taken meanwhile is one, and stays as it is. On a full disk
        the reserve makes room; what still finds none is left to the resume."""
        if self.state.ended:
            return error
        if self.recorder.full:
            lock.release_reserve(self.ws.runs_dir())
        with self._unless_full():
            self.branch.move(self.state.best_commit, "putting the branch at the best commit")
        if self.branch.problem:
            reason, error = schema.STOP_ERROR, self.branch.problem
        with self._unless_full():
            self._close_running(f"engine stopping ({error or reason})")
            self.write_rows()
        if self.sampler is not None:  # no resources sample may follow the session's end
            self.sampler.stop()
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
            if not (self.recorder.full and lock.is_full(exc)):
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
                      stage=schema.STAGE_CONFIRM, changes=pending.get("changes") or {})
        self.log.sync()
        self.write_rows()

    def _close_running(self, why: str) -> None:
        """Record what the log has in flight as interrupted: a session never ends with it."""
        for start in sorted(self.state.running.values(), key=lambda e: e.get("exp", 0)):
            self.record_end(start["exp"], start.get("kind", schema.CANDIDATE),
                            start.get("commit", ""),
                            experiment.Result(status=schema.INTERRUPTED, error=why),
                            start.get("description", ""), decision=schema.INTERRUPTED,
                            **({"worker": start["worker"]} if "worker" in start else {}))

    @functools.cached_property
    def earlier_sessions(self) -> earlier.Earlier:
        """The workspace's earlier sessions (memory across sessions), read once."""
        return earlier.read(self.ws.runs_dir(), self.options.session, self.ws.root)

    def context_for(self, files: dict[str, str], based_on: str,
                 in_flight: list[str] | None = None) -> Context:
        """What the agent sees: the files at `based_on`, the history, and what is running."""
        notes = []
        while not self.steer.empty():
            notes.append(self.steer.get_nowait())
        program = (self.ws.root / PROGRAM).read_text() if (self.ws.root / PROGRAM).is_file() \
            else ""
        with self.recorder.lock:
            history, best = list(self.state.history), self.state.best_bpb
            journal, best_result = list(self.state.journal), dict(self.state.best_result)
        return Context(files=files, program=program, history=history,
                       best_bpb=best, margin=self.rule.margin(self.state), steer=notes,
                       journal=journal, best_result=best_result,
                       last_crash_tail=self.state.last_crash_tail[-4000:],
                       in_flight=in_flight or [],
                       check=lambda candidate: self.check_files(candidate, files),
                       based_on=based_on, earlier=self.earlier_sessions.entries,
                       earlier_journal=self.earlier_sessions.journal,
                       earlier_files=self.earlier_sessions.files_at,
                       earlier_studies=self.earlier_sessions.studies)

    def check(self, proposal: Proposal, context: Context) -> str:
        """Why the proposal cannot be applied, or '' (then it keeps only the changed files)."""
        error = self.check_files(proposal.files, context.files)
        if not error:
            proposal.files = proposal_check.changed_files(proposal.files, context.files)
        return error

    def check_files(self, files: dict[str, str], current: dict[str, str]) -> str:
        """Why these new file contents cannot be a candidate, or '' if they can."""
        return proposal_check.refusal(files, current, self.config.experiment.editable)
