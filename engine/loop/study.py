"""A study's run (`ratchet validate`, `ratchet ablate`): the planned runs through the same engine
path as a research session, recorded in a session folder of its own.

The runs go to the workers backend the studied session's settings ask for (`pool.create`: one
worker per device, or Ray), each trained in the sandbox and scored by the frozen harness, exactly
as the loop's experiments are. Runs at the same budget are handed to every free worker; the
budgets follow each other, the smallest first. Every start and end is appended to the study's
events.jsonl and put on disk before the next step, a group's reading (`study_result`) once its
runs are in, and nothing else is kept: a study killed at any point (kill -9 included) resumes
from its log, recording what was in flight as interrupted and running only the runs the log has
not finished (`study_plan.remaining`). The study holds the workspace's engine lock while it runs,
so no research session trains beside it. It never touches the person's checkout; `--prune` only
adds a branch.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import statistics
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ratchet.engine.loop import curve, gitops, lock, resume
from ratchet.engine.loop import study_plan as sp
from ratchet.engine.protocol import control, events, paths, schema, study_log
from ratchet.engine.protocol import study_stats as st
from ratchet.engine.runner.result import Result
from ratchet.engine.workers import pool, telemetry
from ratchet.engine.workers.backend import Backend, Job, Outcome
from ratchet.engine.workspace.layout import Workspace

POLL_S = 0.5
FAILED = (schema.CRASHED, schema.TIMEOUT, schema.OVER_BUDGET, schema.OVER_LIMIT, schema.KILLED)
_FOLDER = re.compile(r"exp-(\d+)")


def study_tag(study: str, tag: str) -> str:
    """The study's own tag: never the studied session's, so `ratchet run --resume --tag` does
    not take it for one."""
    return f"{study}-{tag}" if tag else study


class Study:
    def __init__(self, ws: Workspace, plan: sp.Plan, session: str, *, resume: bool = False,
                 on_event: Callable[[dict], None] | None = None):
        self.ws, self.plan, self.session, self.resume = ws, plan, session, resume
        self.folder = ws.runs_dir() / session
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / paths.EVENTS
        self.state = study_log.fold(events.read_log(path)) if resume else study_log.StudyLog()
        self.log = events.EventLog(path)
        self.on_event = on_event or (lambda _event: None)
        self.repo = gitops.open_repo(ws.root)
        self.run_config = copy.deepcopy(plan.config)  # its budget follows the runs' budgets
        self.stop_reason = ""
        self.error = ""
        folders = [int(m.group(1)) for p in self.folder.glob("exp-*")
                   if (m := _FOLDER.fullmatch(p.name))]
        self.next_exp = max([self.state.top_exp, *folders]) + 1

    # --- records ---------------------------------------------------------------------------

    def emit(self, event_type: str, exp: int | None = None, **fields) -> dict:
        event = self.log.append(event_type, exp=exp, **fields)
        study_log.apply(self.state, event)
        with contextlib.suppress(Exception):  # a printer gone (a closed terminal) stops nothing
            self.on_event(event)
        return event

    def stream(self, event_type: str, exp: int | None = None, **fields) -> None:
        """Progress from the workers' threads: appended, never folded."""
        with contextlib.suppress(OSError, ValueError):
            self.log.append(event_type, exp=exp, **fields)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def _handle(self, request: dict) -> dict:
        """The control socket: `ping` and `stop` (a study has no agent to pause or steer)."""
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True, "session": self.session, "phase": schema.PHASE_TRAINING}
        if cmd != "stop":
            return {"ok": False, "error": f"a {self.plan.study} study takes only stop"}
        self.stream(schema.CONTROL, cmd=cmd)
        self.request_stop(schema.STOP_STOPPED)
        return {"ok": True}

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> str:
        """Run what the plan has left; returns why it ended (complete, signal, stopped, error).
        Raises lock.Busy where another engine holds the workspace."""
        held = lock.acquire(self.ws.runs_dir(), self.session)
        handlers = self._install_signals()
        server, sampler = None, None
        try:
            lock.remove_leftovers(self.ws.runs_dir())
            paths.write_pid(self.folder, os.getpid())
            plan = self.plan
            self.emit(schema.SESSION_START, session=self.session,
                      tag=study_tag(plan.study, plan.tag), branch="",
                      base_commit=plan.base_commit, config=plan.config.to_dict(),
                      hardware=telemetry.hardware(), agent=plan.study, resumed=self.resume,
                      pid=os.getpid(), options=resume.current(plan.config, None),
                      **plan.start_fields())
            self._close_running()
            server = control.ControlServer(self.folder / paths.SOCKET, self._handle)
            server.start()
            sampler = telemetry.ResourceSampler(
                lambda sample: self.stream(schema.RESOURCES, **sample))
            sampler.start()
            try:
                self._stages()
            except Exception as exc:  # the study's own failure: recorded, then raised
                self.error = f"{type(exc).__name__}: {exc}"
                self._end(schema.STOP_ERROR)
                raise
            reason = self.stop_reason or schema.STOP_COMPLETE
            self._end(reason)
            return reason
        finally:
            if sampler is not None:
                sampler.stop()
            if server is not None:
                server.close()
            self._restore_signals(handlers)
            self.log.close()
            lock.release(held)

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        found = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            found[sig] = signal.signal(sig, lambda *_: self.request_stop(schema.STOP_SIGNAL))
        return found

    @staticmethod
    def _restore_signals(handlers: dict) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    def _close_running(self) -> None:
        """What a killed study had in flight: recorded as interrupted (it runs again)."""
        for n, start in sorted(self.state.running.items()):
            result = Result(status=schema.INTERRUPTED, seed=int(start.get("seed") or 0),
                            error="the study stopped during the run")
            self._record_end(n, start, result)

    def _end(self, reason: str) -> None:
        best, base = self._means()
        self.emit(schema.SESSION_END, reason=reason, experiments=self.state.top_exp, kept=0,
                  best_bpb=best, baseline_bpb=base, best_commit=self.plan.best_commit,
                  **({"error": self.error} if self.error else {}))
        self.log.sync()

    def _means(self) -> tuple[float | None, float | None]:
        """The best's and the base's mean val_bpb at the first budget (the session's own)."""
        m = min(self.plan.multiples) if self.plan.multiples else None
        best = self.state.values(schema.STUDY_BEST, m)
        base = self.state.values(schema.STUDY_BASE, m)
        return (statistics.fmean(best.values()) if best else None,
                statistics.fmean(base.values()) if base else None)

    # --- stages ------------------------------------------------------------------------------

    def _stages(self) -> None:
        backend: Backend | None = None
        try:
            todo = sp.remaining(self.plan.specs, self.state)
            if todo:
                backend = self._backend()
                self._run_specs(backend, todo)
            self._record_results()
            if self.stop_reason or self.plan.study != schema.STUDY_ABLATE or not self.plan.prune:
                return
            if any(r.get("pruned") is not None for r in self.state.results):
                return  # pruned already, before a kill
            specs = self._prune_specs()
            if specs is None:
                return
            todo = sp.remaining(specs, self.state)
            if todo:
                backend = backend or self._backend()
                self._run_specs(backend, todo)
            if not self.stop_reason:
                self._pruned_result(specs[0].commit)
        finally:
            if backend is not None:
                backend.close()

    def _backend(self) -> Backend:
        return pool.create(self.ws, self.run_config, self.repo, self.folder, pool.Hooks(
            on_log=lambda job, record: self.stream(schema.TRAIN_LOG, exp=job.exp,
                                                   worker=job.worker, **record),
            on_phase=lambda job, name: self.stream(schema.PHASE, exp=job.exp, phase=name,
                                                   worker=job.worker)))

    def _run_specs(self, backend: Backend, specs: list[sp.Spec]) -> None:
        """Run the specs, one budget after another, on every free worker; stop early when
        asked (what runs then is recorded as interrupted)."""
        phases: list[tuple[float, list[sp.Spec]]] = []
        for spec in specs:
            budget = self.plan.budget(spec)
            if phases and phases[-1][0] == budget:
                phases[-1][1].append(spec)
            else:
                phases.append((budget, [spec]))
        for budget, group in phases:
            if self.stop_reason:
                return
            self.run_config.experiment.budget_seconds = budget  # nothing runs at this moment
            self._run_phase(backend, deque(group), budget)
            self._record_results()

    def _run_phase(self, backend: Backend, queue: deque[sp.Spec], budget: float) -> None:
        running: dict[int, tuple[Job, sp.Spec]] = {}
        free = list(backend.workers)
        retried: set = set()
        killed = False
        while (queue and not self.stop_reason) or running:
            while free and queue and not self.stop_reason:
                spec = queue.popleft()
                job = Job(self.next_exp, spec.kind, spec.commit, spec.seed, spec.description)
                self.next_exp += 1
                job.worker = free.pop(0)
                self.emit(schema.EXP_START, exp=job.exp, kind=spec.kind, commit=spec.commit,
                          seed=spec.seed, budget=budget, description=spec.description,
                          worker=job.worker, **spec.fields())
                self.log.sync()
                running[job.exp] = (job, spec)
                backend.start(job, job.worker)
            if self.stop_reason and running and not killed:
                backend.kill()
                killed = True
            for outcome in backend.wait(POLL_S):
                job, spec = running.pop(outcome.job.exp)
                free.append(job.worker)
                free.sort(key=backend.workers.index)
                self._finished(job, spec, outcome, queue, retried)

    def _finished(self, job: Job, spec: sp.Spec, outcome: Outcome, queue: deque[sp.Spec],
                  retried: set) -> None:
        result = outcome.result
        if self.stop_reason and (outcome.lost or result.status != schema.OK):
            # cut short by the stop (a Ctrl-C reaches the trainers too): no result, runs again
            result.status = schema.INTERRUPTED
            result.error = f"study stopping ({self.stop_reason})"
        elif outcome.lost:
            result.status = schema.LOST
            if spec.key not in retried:  # the worker died under it: once more, first
                retried.add(spec.key)
                queue.appendleft(spec)
        start = {"kind": spec.kind, "commit": spec.commit, "description": spec.description,
                 "worker": job.worker, **spec.fields()}
        self._record_end(job.exp, start, result)

    def _record_end(self, n: int, start: dict, result: Result) -> None:
        status = result.status
        decision = {schema.OK: schema.MEASURED, schema.INTERRUPTED: schema.INTERRUPTED,
                    schema.LOST: schema.RETRY}.get(status, schema.CRASH)
        summary = result.to_json()
        summary["tail"] = summary["tail"][-4000:]
        summary["curve"] = curve.thin(result.train_log, result.budget_seconds)
        extra = {k: start[k] for k in ("multiple", "ablates", "worker") if k in start}
        self.emit(schema.EXP_END, exp=n, kind=start.get("kind", ""), status=status,
                  decision=decision, val_bpb=result.val_bpb if status == schema.OK else None,
                  best_before=None, delta=None, margin=None, commit=start.get("commit", ""),
                  description=start.get("description", ""), changes={}, result=summary,
                  **extra)
        self.log.sync()

    # --- readings ------------------------------------------------------------------------------

    def _group_done(self, match: Callable[[sp.Spec], bool]) -> bool:
        return all(s.key in self.state.done for s in self.plan.specs if match(s))

    def _record_results(self) -> None:
        """A study_result for each group whose runs are all in and that has none yet."""
        if self.plan.study == schema.STUDY_VALIDATE:
            for row in study_log.budget_rows(self.state):
                if self._group_done(lambda s, m=row.multiple: s.multiple == m) and \
                        study_log.result_of(self.state, multiple=row.multiple) is None:
                    self.emit(schema.STUDY_RESULT, **row.fields())
            return
        if not self._group_done(lambda s: True):
            return
        for change in study_log.change_rows(self.state):
            if study_log.result_of(self.state, change=change.exp) is None:
                self.emit(schema.STUDY_RESULT, **change.fields())

    def _prune_specs(self) -> list[sp.Spec] | None:
        """The pruned stack's runs; None (and its study_result) where there is none to run."""
        targets = study_log.to_prune(study_log.change_rows(self.state))
        tip, done, notes = sp.prune_stack(self.repo, self.plan.best_commit, targets) \
            if targets else (self.plan.best_commit, [], [])
        if not done:
            why = "; ".join(notes) if notes else "every change helps: nothing to prune"
            self.emit(schema.STUDY_RESULT, study=schema.STUDY_ABLATE, pruned=[], effect=None,
                      se=None, runs=0, diffs=[], no_worse=None, branch=None, why=why)
            return None
        tip = self.state.pruned_commit() or tip  # a resume runs the commit it began with
        self._pruned = (done, notes)
        label = ", ".join(f"#{n}" for n in done)
        return [sp.Spec(schema.STUDY_PRUNED, seed, tip, f"without {label}, seed {seed}")
                for seed in self.plan.seeds]

    def _pruned_result(self, commit: str) -> None:
        done, notes = self._pruned
        e = study_log.pruned_effect(self.state)
        tolerance = self.plan.config.experiment.min_improvement
        ok = e is not None and st.no_worse(e, tolerance)
        branch = sp.prune_branch(self.repo, self.plan.tag, commit) if ok else None
        if e is None:
            notes = [*notes, "the pruned stack has no ok runs to compare"]
        elif not ok:
            why = ("the change left out helps after all: its own ablation could not tell it "
                   "from noise" if len(done) == 1 else
                   "the changes left out help together: one covers for another, or each helps "
                   "by less than its own ablation could tell from noise")
            notes = [*notes, f"the pruned stack is worse than the best ({e.text()}, tolerance "
                             f"{tolerance:g}): {why} (more seeds would tell); no branch made"]
        self.emit(schema.STUDY_RESULT, study=schema.STUDY_ABLATE, pruned=done,
                  effect=e.mean if e else None, se=e.se if e else None,
                  runs=e.runs if e else 0, diffs=list(e.diffs) if e else [], no_worse=ok,
                  branch=branch, commit=commit, **({"why": "; ".join(notes)} if notes else {}))


def newest(runs: Path, study: str) -> Path | None:
    """The newest session folder of this study under `runs/`."""
    found = [p for p in paths.sessions(runs) if study_of(p) == study]
    return found[-1] if found else None


def study_of(folder: Path) -> str:
    """The study a session folder holds ('' for a research session)."""
    first = next(events.iter_events(folder / paths.EVENTS), {})
    return str(first.get("study") or "") if first.get("type") == schema.SESSION_START else ""
