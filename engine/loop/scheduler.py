"""Scheduling: the agent proposes while the workers train, and results land one at a time.

Two threads share the work. The proposer thread asks the agent for candidates ahead of time,
keeping up to one ready per worker, so a worker never waits for the agent. The engine thread
(the caller of `Scheduler.run`) commits each proposal off the branch, hands jobs to free
workers, and applies finished experiments one at a time; it alone writes git.

The ratchet stays one line that only moves forward:
- A candidate is a commit whose parent is the best commit when it was proposed (`based_on`).
- A candidate still waiting for a worker when the best moves is rebased onto the new best
  (its change re-applied with a 3-way file merge) and runs from there; if the change conflicts,
  or the new best already holds it, it is dropped (`proposal_dropped`, with the reason).
- A candidate that beats the best (the best at the moment its result arrives) is confirmed
  with a second seed before it is kept. A winner based on an older best is first rebased onto
  the current best, and the confirmation runs on the rebased commit; then only that run counts
  (the first run measured other code). If the best moves again while a confirmation runs, the
  candidate is rebased and confirmed again (`confirm_again`), at most MAX_CONFIRM_ROUNDS times.
- A keep fast-forwards the branch to a commit whose parent is the current best.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from dataclasses import dataclass, field

from ratchet.engine.agents.base import AgentError, AgentPaused, HistoryEntry, Proposal
from ratchet.engine.loop import gitops
from ratchet.engine.protocol import events
from ratchet.engine.runner import experiment
from ratchet.engine.workers import pool

MAX_FAILED_PROPOSALS = 10
MAX_CONFIRM_ROUNDS = 3  # confirmations of one candidate before a moving best drops it
POLL_S = 0.1


@dataclass
class Candidate:
    exp: int
    proposal: Proposal
    commit: str
    based_on: str
    first: experiment.Result | None = None  # its candidate run, once it won
    first_commit: str = ""  # the commit that run measured
    confirm_rounds: int = 0


@dataclass
class _Raw:
    """A proposal handed from the proposer thread to the engine thread."""

    exp: int
    proposal: Proposal
    based_on: str
    steer: list[str] = field(default_factory=list)


class Scheduler:
    def __init__(self, session, backend: pool.Backend):
        self.s = session
        self.backend = backend
        self.lock = threading.Lock()
        self.next_exp = session.state.last_exp + 1
        self.free = list(backend.workers)
        self.running: dict[int, pool.Job] = {}
        self.ready: deque[Candidate] = deque()
        self.raw: deque[_Raw] = deque()
        self.proposing = False
        self.proposals = session.state.proposals  # made, counted toward --max-experiments
        self.confirms: deque[Candidate] = deque()
        self.retries: deque[pool.Job] = deque()
        self.deferred: list[pool.Outcome] = []  # candidate results waiting for the baseline
        self.observations: deque[tuple[Proposal, HistoryEntry]] = deque()
        self.stopping = False
        self.paused_recorded = False
        self.error = ""
        self.wake = threading.Event()
        self.best = (session.state.best_commit, self._files_at(session.state.best_commit))
        self.proposer = threading.Thread(target=self._propose_loop, daemon=True,
                                         name="proposer")
        self._requeue(session.state.queued)

    # --- shared helpers ------------------------------------------------------------------

    def alloc_exp(self) -> int:
        with self.lock:
            n, self.next_exp = self.next_exp, self.next_exp + 1
            return n

    def _files_at(self, sha: str) -> dict[str, str]:
        commit = self.s.repo.commit(sha)
        found = {}
        for name in self.s.config.experiment.editable:
            text = gitops._text_at(commit, name)
            if text is not None:
                found[name] = text
        return found

    def _jobs(self) -> list[pool.Job]:
        return list(self.running.values())  # a snapshot: the proposer thread reads it too

    def _baselines_to_start(self) -> int:
        started = self.s.state.baseline_runs + sum(1 for j in self._jobs() if j.kind == "baseline")
        return max(0, self.s.config.loop.baseline_seeds - started)

    def _baseline_done(self) -> bool:
        return self._baselines_to_start() == 0 and not any(
            j.kind == "baseline" for j in self._jobs())

    def _in_flight(self) -> list[str]:
        with self.lock:
            jobs = [j.description for j in self._jobs() if j.kind == "candidate"]
            return jobs + [c.proposal.description for c in self.ready] + \
                [r.proposal.description for r in self.raw]

    # --- the proposer thread ---------------------------------------------------------------

    def _wants_proposal(self) -> bool:
        limit = self.s.options.max_experiments
        with self.lock:
            waiting = len(self.ready) + len(self.raw)
        return (not self.stopping and not self.s.paused.is_set()
                and self._baselines_to_start() == 0
                and (limit is None or self.proposals < limit)
                and waiting < len(self.backend.workers))

    def _propose_loop(self) -> None:
        failures = 0
        while not self.stopping:
            if not self._wants_proposal():
                self.wake.wait(POLL_S)
                self.wake.clear()
                continue
            while self.observations:
                self.s.agent.observe(*self.observations.popleft())
            try:
                failures = self._propose_one(failures)
            except ValueError:  # the log closed under a proposal: the session is ending
                return
            except Exception as exc:  # the agent's own bug: the session ends with it recorded
                self.error = f"agent failed: {type(exc).__name__}: {exc}"
                self.s.request_stop("error")
                return
            if failures and not self.stopping:
                if failures >= MAX_FAILED_PROPOSALS:
                    return
                self.wake.wait(min(30.0, 0.5 * 2 ** (failures - 1)))  # an agent out of ideas
                self.wake.clear()

    def _propose_one(self, failures: int) -> int:
        """Ask the agent once; returns the count of failures in a row."""
        n = self.alloc_exp()
        with self.lock:  # seen together by the engine thread's end-of-work check
            self.proposing = True
            self.proposals += 1
        based_on, files = self.best
        self.s.emit("phase", exp=n, phase="proposing")
        context = self.s._context(files=files, based_on=based_on, in_flight=self._in_flight())
        context.record = lambda event_type, **fields: self.s.emit(event_type, exp=n, **fields)
        batcher = events.TextBatcher(self.s.log, n)
        proposal = None
        try:
            proposal = self.s.agent.propose(context, batcher.add)
            batcher.flush()
            error = self.s._check(proposal, context)
        except AgentPaused as exc:
            batcher.flush()
            self.s.emit("proposal_failed", exp=n, error=str(exc), paused=True)
            self.s.paused.set()
            self.proposing = False
            return 0
        except AgentError as exc:
            batcher.flush()
            error = str(exc)
        if error:
            self.s.emit("proposal_failed", exp=n, error=error)
            if proposal is not None:
                self.observations.append((proposal, HistoryEntry(
                    n, proposal.description, "crash", "crash", None, None, proposal.changes)))
            failures += 1
            if failures >= MAX_FAILED_PROPOSALS:
                self.s.emit("agent_gave_up", error=f"{failures} proposals in a row failed; "
                                                   f"last: {error}")
                self.s.request_stop("error")
            self.proposing = False
            return failures
        with self.lock:
            self.raw.append(_Raw(n, proposal, based_on, context.steer))
            self.proposing = False
        return 0

    # --- the engine thread -----------------------------------------------------------------

    def run(self) -> str:
        """Run until stopped or done; returns an error for the session's end, or ''."""
        self.proposer.start()
        try:
            while True:
                self._intake()
                self._control()
                if not self.s.stop_reason and self._finished():
                    self.s.stop_reason = "max_experiments"
                if self.s.stop_reason and not self.running:
                    break
                if not self.s.stop_reason and not self.s.paused.is_set():
                    self._dispatch()
                for outcome in self.backend.wait(POLL_S):
                    self._apply(outcome)
                if self._baseline_done() and self.deferred:
                    deferred, self.deferred = self.deferred, []
                    for outcome in deferred:
                        self._apply(outcome)
                if self._baseline_done() and not self.s.state.baseline and not self.error:
                    self.error = "every baseline run failed; fix train.py first"
                    self.s.request_stop("error")
        finally:
            self.stopping = True
            self.wake.set()
            self.backend.kill()
            self.proposer.join(timeout=2.0)
            deferred, self.deferred = self.deferred, []
            for outcome in deferred:  # finished before the baseline did: recorded all the same
                self._apply(outcome)
            self._intake()
            self._drop_unstarted()
            self.backend.close()
        return self.error

    def _finished(self) -> bool:
        limit = self.s.options.max_experiments
        with self.lock:
            idle = not self.proposing and not self.raw and not self.ready
            made = self.proposals
        return (limit is not None and made >= limit and idle and not self.running
                and not self.confirms and not self.retries and not self.deferred
                and self._baseline_done())

    def _control(self) -> None:
        if self.s.kill_current.is_set():
            self.s.kill_current.clear()
            self.backend.kill()
        if self.s.paused.is_set() and not self.paused_recorded and not self.s.stop_reason:
            self.s.emit("paused")
            self.s.emit("phase", phase="paused")
            self.paused_recorded = True
        elif not self.s.paused.is_set() and self.paused_recorded:
            self.s.emit("resumed")
            self.paused_recorded = False
        self.s.resume_wakeup.clear()

    def _intake(self) -> None:
        """Commit the proposer's proposals (off the branch) and record them."""
        while True:
            with self.lock:
                if not self.raw:
                    return
                raw = self.raw[0]
            p = raw.proposal
            commit = gitops.commit_tree(self.s.repo, raw.based_on, p.files,
                                        f"exp {raw.exp}: {p.description}")
            self.s.emit("proposal", exp=raw.exp, description=p.description, rationale=p.rationale,
                        diff=gitops.diff(self.s.repo, raw.based_on, commit),
                        files=sorted(p.files), based_on=raw.based_on, changes=p.changes,
                        steer=raw.steer, commit=commit)
            with self.lock:
                self.raw.popleft()
                self.ready.append(Candidate(raw.exp, p, commit, raw.based_on))

    def _requeue(self, queued: dict[int, dict]) -> None:
        """Proposals recorded but never started (the engine stopped): they run after all."""
        for n, event in sorted(queued.items()):
            commit = event.get("commit", "")
            try:
                tree = self.s.repo.commit(commit)
                files = {name: gitops._text_at(tree, name) for name in event.get("files", [])}
            except (ValueError, gitops.git.GitError):
                files = {}
            if not files or None in files.values():
                self._drop(n, "its commit is gone", event.get("description", ""), "queued")
                continue
            proposal = Proposal(event.get("description", ""), files, event.get("rationale", ""),
                                event.get("changes") or {})
            self.ready.append(Candidate(n, proposal, commit, event.get("based_on", "")))

    def _drop_unstarted(self) -> None:
        while self.ready:
            c = self.ready.popleft()
            self._drop(c.exp, f"the session ended ({self.s.stop_reason}) before it ran",
                       c.proposal.description, "queued", c.proposal.changes)
        for c in list(self.confirms):
            self._drop_winner(c, f"the session ended ({self.s.stop_reason}) before its "
                                 f"confirmation")
        self.confirms.clear()

    def _drop(self, n: int, reason: str, description: str, stage: str,
              changes: dict | None = None) -> None:
        self.s.emit("proposal_dropped", exp=n, reason=reason, description=description,
                    stage=stage, changes=changes or {})

    def _drop_winner(self, c: Candidate, reason: str) -> None:
        pending = self.s.state.pending_confirms.get(c.exp)
        self._drop(c.exp, reason, c.proposal.description, "confirm", c.proposal.changes)
        if pending is not None:
            self.s._write_row(pending, "discard", f" (dropped: {reason})")
        self.s.log.sync()

    # --- dispatching -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self.free:
            job = self._next_job()
            if job is None:
                return
            worker = self.free.pop(0)
            job.worker = worker
            self.running[job.exp] = job
            self.s.emit("exp_start", exp=job.exp, kind=job.kind, commit=job.commit,
                        seed=job.seed, budget=self.s.config.experiment.budget_seconds,
                        description=job.description, worker=worker,
                        **({"retry_of": job.retry_of} if job.retry_of is not None else {}))
            self.s.log.sync()
            self.backend.start(job, worker)

    def _next_job(self) -> pool.Job | None:
        if self.retries:
            return self.retries.popleft()
        while self.confirms:
            job = self._confirm_job(self.confirms.popleft())
            if job is not None:
                return job
        if self._baselines_to_start():
            seed = self.s.config.experiment.seed + self.s.state.baseline_runs + sum(
                1 for j in self.running.values() if j.kind == "baseline")
            label = "baseline" if seed == self.s.config.experiment.seed \
                else f"baseline (seed {seed})"
            return pool.Job(self.alloc_exp(), "baseline", self.s.state.best_commit, seed,
                               label)
        while True:
            with self.lock:
                if not self.ready:
                    return None
                c = self.ready.popleft()
            self.wake.set()  # room for the proposer to prepare the next one
            if self._onto_best(c, "queued"):
                return pool.Job(c.exp, "candidate", c.commit, self.s.config.experiment.seed,
                                   c.proposal.description, candidate=c)

    def _onto_best(self, c: Candidate, stage: str) -> bool:
        """Rebase the candidate onto the current best if it is based on an older one."""
        best = self.s.state.best_commit
        if c.based_on == best:
            return True
        commit, why = gitops.rebase_commit(self.s.repo, c.commit, best,
                                           f"exp {c.exp}: {c.proposal.description}")
        if commit is None:
            if stage == "queued":
                self._drop(c.exp, why, c.proposal.description, stage, c.proposal.changes)
            else:
                self._drop_winner(c, why)
            return False
        self.s.emit("proposal_rebased", exp=c.exp, commit=commit, based_on=best,
                    previous_commit=c.commit, stage=stage,
                    diff=gitops.diff(self.s.repo, best, commit))
        c.commit, c.based_on = commit, best
        return True

    def _confirm_job(self, c: Candidate) -> pool.Job | None:
        if not self._onto_best(c, "confirm"):
            return None
        c.confirm_rounds += 1
        seed = self.s.config.experiment.seed + 1000 + c.exp + (c.confirm_rounds - 1) * 100
        return pool.Job(self.alloc_exp(), "confirm", c.commit, seed,
                           f"confirm exp {c.exp}: {c.proposal.description}", candidate=c)

    # --- applying results, one at a time -----------------------------------------------------

    def _apply(self, outcome: pool.Outcome) -> None:
        job, result = outcome.job, outcome.result
        if job.kind == "candidate" and not self._baseline_done() and not self.s.stop_reason:
            self.deferred.append(outcome)  # judged once the baseline's noise is known
            self._release(job)
            return
        self._release(job)
        if result.status == "killed" and self.s.stop_reason:
            result.status, result.error = "interrupted", f"engine stopping ({self.s.stop_reason})"
        if outcome.lost:
            result.status = "interrupted" if self.s.stop_reason else "lost"
            if not self.s.stop_reason and self._retry(job, result):
                return
        if job.kind == "baseline":
            self.s._record_end(job.exp, "baseline", job.commit, result, job.description,
                               decision="baseline", worker=job.worker)
        elif job.kind == "candidate":
            self._apply_candidate(job, result)
        else:
            self._apply_confirm(job, result)

    def _release(self, job: pool.Job) -> None:
        if self.running.pop(job.exp, None) is not None:
            self.free.append(job.worker)
            self.free.sort(key=self.backend.workers.index)

    def _retry(self, job: pool.Job, result: experiment.Result) -> bool:
        """Record a lost worker's job and run it again under a new number (once)."""
        if job.retry_of is not None:  # lost twice: recorded as it is
            return False
        again = pool.Job(self.alloc_exp(), job.kind, job.commit, job.seed, job.description,
                            candidate=job.candidate, retry_of=job.exp)
        self.s._record_end(job.exp, job.kind, job.commit, result, job.description, "retry",
                           changes=_changes(job), worker=job.worker, retried_as=again.exp)
        self.retries.append(again)
        return True

    def _apply_candidate(self, job: pool.Job, result: experiment.Result) -> None:
        c: Candidate = job.candidate
        best, margin = self.s.state.best_bpb, self.s._margin()
        if result.status != "ok" or result.val_bpb is None:
            decision = "crash"
        elif best is None:  # no baseline to compare with (every baseline run failed)
            decision = "discard"
        elif result.val_bpb < best - margin:
            fresh = c.based_on == self.s.state.best_commit
            decision = "pending_confirm" if self.s.config.loop.confirm or not fresh else "keep"
        elif result.val_bpb < best:
            decision = "near_miss"
        else:
            decision = "discard"
        self.s._record_end(job.exp, "candidate", job.commit, result, job.description, decision,
                           changes=c.proposal.changes, write_row=decision != "pending_confirm",
                           worker=job.worker, based_on=c.based_on)
        if decision == "pending_confirm":
            c.first, c.first_commit = result, job.commit
            if self.s.stop_reason:
                self._drop_winner(c, "the session stopped before its confirmation")
            else:
                self.confirms.append(c)
            return
        if decision == "keep":
            self._advance(job.commit)
        self._observe(c)

    def _apply_confirm(self, job: pool.Job, result: experiment.Result) -> None:
        c: Candidate = job.candidate
        best, margin = self.s.state.best_bpb, self.s._margin()
        moved = gitops.parent_of(self.s.repo, job.commit) != self.s.state.best_commit
        extra = {"confirms": c.exp, "worker": job.worker}
        if result.status == "ok" and result.val_bpb is not None and moved \
                and not self.s.stop_reason and c.confirm_rounds < MAX_CONFIRM_ROUNDS:
            end = self.s._record_end(job.exp, "confirm", job.commit, result,
                                     c.proposal.description, "confirm_again",
                                     changes=c.proposal.changes, write_row=False, **extra)
            self.s._write_row(end, "discard", " (the best moved; confirming again)")
            self.confirms.appendleft(c)  # rebased onto the new best when it next starts
            return
        if result.status != "ok" or result.val_bpb is None:
            decision, new_best = "crash", None
        elif moved:
            decision, new_best = "discard", None
        else:
            # on the candidate's own commit both runs measured the same code; after a rebase
            # only this run did
            runs = [c.first.val_bpb, result.val_bpb] if job.commit == c.first_commit \
                else [result.val_bpb]
            new_best = statistics.mean(runs)
            decision = "keep" if new_best < best - margin else (
                "near_miss" if new_best < best else "discard")
        pending = self.s.state.pending_confirms.get(c.exp)
        if pending is not None:
            self.s._write_row(pending, "keep" if decision == "keep" else "discard",
                              "" if decision == "keep" else " (not confirmed)")
        self.s._record_end(job.exp, "confirm", job.commit, result, c.proposal.description,
                           decision, changes=c.proposal.changes, new_best=new_best, **extra)
        if decision == "keep":
            self._advance(job.commit)
        self._observe(c)

    def _advance(self, commit: str) -> None:
        """The branch moves forward to a kept commit (its parent is the current best)."""
        gitops.reset_to(self.s.repo, commit)
        self.best = (commit, self._files_at(commit))
        self.wake.set()

    def _observe(self, c: Candidate) -> None:
        entry = self.s.state.history[-1] if self.s.state.history else None
        if entry is not None:
            self.observations.append((c.proposal, entry))


def _changes(job: pool.Job) -> dict:
    return job.candidate.proposal.changes if job.candidate is not None else {}
