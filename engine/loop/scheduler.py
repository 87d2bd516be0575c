"""Scheduling: the agent proposes while the workers train, and results land one at a time.

The proposer thread (`proposer.py`) asks the agent for candidates ahead of time. The engine
thread (the caller of `Scheduler.run`) commits each proposal off the branch, hands jobs to free
workers, and applies finished experiments one at a time; it alone writes git. What a result
means (keep, discard, confirm) is `keep_rule`'s call; this module carries it out.

The ratchet stays one line that only moves forward:
- A candidate is a commit whose parent is the best commit when it was proposed (`based_on`).
- A candidate still waiting for a worker when the best moves is rebased onto the new best
  (its change re-applied with a 3-way file merge); if the change conflicts, or the new best
  already holds it, it is dropped (`proposal_dropped`, with the reason).
- A winner based on an older best is rebased onto the current best and confirmed there; then
  only the confirmation counts (the first run measured other code). If the best moves again
  during a confirmation, it is rebased and confirmed again, at most MAX_CONFIRM_ROUNDS times.
- A keep fast-forwards the branch to a commit whose parent is the current best: logged first
  (and on disk), then the branch moves, then results.tsv gets the rows, so a kill in between
  leaves nothing a resume cannot complete (`Session._recover`); a keep the branch cannot take
  is recorded as interrupted (`Session.record_end`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from ratchet.engine.agents.base import Proposal
from ratchet.engine.loop import gitops, keep_rule, pairing
from ratchet.engine.loop.proposer import POLL_S, Proposer
from ratchet.engine.protocol import schema
from ratchet.engine.runner import experiment
from ratchet.engine.workers import pool

MAX_CONFIRM_ROUNDS = 3  # confirmations of one candidate before a moving best drops it


@dataclass
class Candidate:
    exp: int
    proposal: Proposal
    commit: str
    based_on: str
    first: experiment.Result | None = None  # its candidate run, once it won
    first_commit: str = ""  # the commit that run measured
    confirm_rounds: int = 0
    paired: pairing.Runs = field(default_factory=pairing.Runs)  # the paired rule's runs
    moves: int = 0  # times the best moved under its paired runs


class Scheduler:
    def __init__(self, session, backend: pool.Backend):
        self.s = session
        self.backend = backend
        self.lock = threading.Lock()
        self.next_exp = session.last_exp + 1  # above every number the log mentions
        self.free = list(backend.workers)
        self.running: dict[int, pool.Job] = {}
        self.ready: deque[Candidate] = deque()
        self.confirms: deque[Candidate] = deque()
        self.retries: deque[pool.Job] = deque()
        self.deferred: list[pool.Outcome] = []  # candidate results waiting for the baseline
        self.stopping = False
        self.is_paired = session.config.loop.rule == "paired"
        self.paused_recorded = False
        self.error = ""
        self.best = (session.state.best_commit, self._files_at(session.state.best_commit))
        self.proposer = Proposer(session, self.lock, self.alloc_exp, self._wants_proposal,
                                 self._in_flight, lambda: self.best)
        self._requeue(session.state.queued)

    # --- shared helpers ------------------------------------------------------------------

    def alloc_exp(self) -> int:
        with self.lock:
            n, self.next_exp = self.next_exp, self.next_exp + 1
            return n

    def _files_at(self, sha: str) -> dict[str, str]:
        return gitops.files_at(self.s.repo, sha, self.s.config.experiment.editable)

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
                [r.proposal.description for r in self.proposer.raw]

    # --- what the proposer thread asks ------------------------------------------------------

    def _wants_proposal(self, made: int) -> bool:
        limit = self.s.options.max_experiments
        with self.lock:
            waiting = len(self.ready) + self.proposer.waiting()
        return (not self.stopping and not self.s.paused.is_set()
                and self._baselines_to_start() == 0
                and (limit is None or made < limit)
                and waiting < len(self.backend.workers))

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
                if self._baseline_done() and not self.s.state.baseline and not self._error():
                    self.error = "every baseline run failed; fix train.py first"
                    self.s.request_stop("error")
        finally:
            self.stopping = True
            self.backend.kill()
            self.proposer.stop()
            deferred, self.deferred = self.deferred, []
            for outcome in deferred:  # finished before the baseline did: recorded all the same
                self._apply(outcome)
            self._intake()
            self._drop_unstarted()
            self.backend.close()
        return self._error()

    def _error(self) -> str:
        return self.error or self.proposer.error

    def _finished(self) -> bool:
        limit = self.s.options.max_experiments
        with self.lock:
            idle = not self.proposer.proposing and not self.proposer.raw and not self.ready
            made = self.proposer.proposals
        return (limit is not None and made >= limit and idle and not self.running
                and not self.confirms and not self.retries and not self.deferred
                and self._baseline_done())

    def _control(self) -> None:
        if self.s.kill_current.is_set():
            self.s.kill_current.clear()
            self.backend.kill()
        if self.s.paused.is_set() and not self.paused_recorded and not self.s.stop_reason:
            self.s.emit(schema.PAUSED)
            self.s.emit(schema.PHASE, phase="paused")
            self.paused_recorded = True
        elif not self.s.paused.is_set() and self.paused_recorded:
            self.s.emit(schema.RESUMED)
            self.paused_recorded = False
        self.s.resume_wakeup.clear()

    def _intake(self) -> None:
        """Commit the proposer's proposals (off the branch) and record them."""
        while True:
            with self.lock:
                if not self.proposer.raw:
                    return
                raw = self.proposer.raw[0]
            p = raw.proposal
            commit = gitops.commit_tree(self.s.repo, raw.based_on, p.files,
                                        f"exp {raw.exp}: {p.description}")
            self.s.emit(schema.PROPOSAL, exp=raw.exp, description=p.description,
                        rationale=p.rationale, diff=gitops.diff(self.s.repo, raw.based_on, commit),
                        files=sorted(p.files), based_on=raw.based_on, changes=p.changes,
                        steer=raw.steer, commit=commit)
            with self.lock:
                self.proposer.raw.popleft()
                self.ready.append(Candidate(raw.exp, p, commit, raw.based_on))

    def _requeue(self, queued: dict[int, dict]) -> None:
        """Proposals recorded but never started (the engine stopped): they run after all."""
        for n, event in sorted(queued.items()):
            commit = event.get("commit", "")
            try:
                tree = self.s.repo.commit(commit)
                files = {name: gitops.text_at(tree, name) for name in event.get("files", [])}
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
        self.s.emit(schema.PROPOSAL_DROPPED, exp=n, reason=reason, description=description,
                    stage=stage, changes=changes or {})

    def _drop_winner(self, c: Candidate, reason: str) -> None:
        self._drop(c.exp, reason, c.proposal.description, "confirm", c.proposal.changes)
        self.s.log.sync()
        self.s.write_rows()  # the winner's own row, a discard now

    # --- dispatching -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self.free:
            job = self._next_job()
            if job is None:
                return
            worker = self.free.pop(0)
            job.worker = worker
            self.running[job.exp] = job
            self.s.emit(schema.EXP_START, exp=job.exp, kind=job.kind, commit=job.commit,
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
            self.proposer.wake.set()  # room for the proposer to prepare the next one
            if self._onto_best(c, "queued"):
                return pool.Job(c.exp, "candidate", c.commit, self._seed(0),
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
        self.s.emit(schema.PROPOSAL_REBASED, exp=c.exp, commit=commit, based_on=best,
                    previous_commit=c.commit, stage=stage,
                    diff=gitops.diff(self.s.repo, best, commit))
        c.commit, c.based_on = commit, best
        return True

    def _seed(self, index: int) -> int:
        """The seed of a candidate's run number `index`: the margin rule's first run always
        takes the config's seed, the paired rule's runs the best's seeds in turn."""
        first = self.s.config.experiment.seed
        return pairing.seed_for(self.s.state, first, index) if self.is_paired else first

    def _confirm_job(self, c: Candidate) -> pool.Job | None:
        moved = c.based_on != self.s.state.best_commit
        if not self._onto_best(c, "confirm"):
            return None
        if moved:
            c.paired.clear()  # only runs on the current best count
        c.confirm_rounds += 1
        seed = self.s.config.experiment.seed + 1000 + c.exp + (c.confirm_rounds - 1) * 100
        if self.is_paired:
            seed = self._seed(len(c.paired.diffs))
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
            self.s.record_end(job.exp, "baseline", job.commit, result, job.description,
                              decision=keep_rule.BASELINE, worker=job.worker)
        elif job.kind == "candidate":
            self._apply_candidate(job, result)
        elif self.is_paired:
            self._apply_paired(job, result)
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
        self.s.record_end(job.exp, job.kind, job.commit, result, job.description,
                          keep_rule.RETRY, changes=_changes(job), worker=job.worker,
                          retried_as=again.exp)
        self.retries.append(again)
        return True

    def _apply_candidate(self, job: pool.Job, result: experiment.Result) -> None:
        if self.is_paired:
            self._apply_paired(job, result)
            return
        c: Candidate = job.candidate
        verdict = keep_rule.judge_candidate(
            _score(result), self.s.state.best_bpb, self.s.margin(),
            confirm=self.s.config.loop.confirm, fresh=c.based_on == self.s.state.best_commit)
        self.s.record_end(job.exp, "candidate", job.commit, result, job.description,
                          verdict.decision, changes=c.proposal.changes,
                          worker=job.worker, based_on=c.based_on)
        if verdict.decision == keep_rule.PENDING_CONFIRM:
            c.first, c.first_commit = result, job.commit
            if self.s.stop_reason:
                self._drop_winner(c, "the session stopped before its confirmation")
            else:
                self.confirms.append(c)
            return
        if verdict.decision == keep_rule.KEEP:
            self._advance(job.commit)
        self._observe(c)

    def _apply_confirm(self, job: pool.Job, result: experiment.Result) -> None:
        c: Candidate = job.candidate
        score = _score(result)
        # on the candidate's own commit both runs measured the same code; after a rebase
        # only this run did
        runs = None if score is None else (
            [c.first.val_bpb, score] if job.commit == c.first_commit else [score])
        verdict = keep_rule.judge_confirmation(
            runs, self.s.state.best_bpb, self.s.margin(),
            moved=gitops.parent_of(self.s.repo, job.commit) != self.s.state.best_commit,
            may_rerun=not self.s.stop_reason and c.confirm_rounds < MAX_CONFIRM_ROUNDS)
        extra = {"confirms": c.exp, "worker": job.worker}
        if verdict.decision == keep_rule.CONFIRM_AGAIN:
            self.s.record_end(job.exp, "confirm", job.commit, result, c.proposal.description,
                              verdict.decision, changes=c.proposal.changes, **extra)
            self.confirms.appendleft(c)  # rebased onto the new best when it next starts
            return
        # the candidate's row is written with this run's, from the log (`ledger`)
        self.s.record_end(job.exp, "confirm", job.commit, result, c.proposal.description,
                          verdict.decision, changes=c.proposal.changes,
                          new_best=verdict.new_best, **extra)
        if verdict.decision == keep_rule.KEEP:
            self._advance(job.commit)
        self._observe(c)

    # --- the paired rule: every run of a candidate against the best's run on its seed -----

    def _read(self, c: Candidate, job: pool.Job, val: float) -> keep_rule.Reading:
        return pairing.judge(self.s.state, c.paired, job.seed, val, self.s.noise(),
                             self.s.config.experiment.min_improvement,
                             self.s.config.experiment.seed)

    def _apply_paired(self, job: pool.Job, result: experiment.Result) -> None:
        """A candidate's run or one of its further runs (kind confirm): judged on all of its
        runs so far; another run is queued first, ahead of new candidates."""
        c: Candidate = job.candidate
        first, score = job.kind == "candidate", _score(result)
        if first:
            c.paired.clear()
        moved = gitops.parent_of(self.s.repo, job.commit) != self.s.state.best_commit
        extra = {"worker": job.worker, **({"based_on": c.based_on} if first
                                          else {"confirms": c.exp})}
        if not first and score is not None and moved and not self.s.stop_reason \
                and c.moves < MAX_CONFIRM_ROUNDS:
            c.moves += 1  # its runs measured code that is not on the best: again, rebased
            self.s.record_end(job.exp, "confirm", job.commit, result, c.proposal.description,
                              keep_rule.CONFIRM_AGAIN, changes=c.proposal.changes, **extra)
            self.confirms.appendleft(c)
            return
        reading = None
        if score is None:
            decision = keep_rule.CRASH
        elif self.s.state.best_bpb is None or (moved and not first):
            decision = keep_rule.DISCARD
        else:
            reading = self._read(c, job, score)
            decision = reading.decision
        if first and decision == keep_rule.ANOTHER_RUN:
            decision = keep_rule.PENDING_CONFIRM  # a candidate awaiting its further runs
        new_best = {"new_best": c.paired.mean()} if decision == keep_rule.KEEP else {}
        self.s.record_end(job.exp, job.kind, job.commit, result, c.proposal.description,
                          decision, changes=c.proposal.changes,
                          paired=pairing.record(reading, c.paired, self.s.state),
                          **new_best, **extra)
        if decision in (keep_rule.PENDING_CONFIRM, keep_rule.ANOTHER_RUN):
            if first:
                c.first, c.first_commit = result, job.commit
                if moved:
                    c.paired.clear()  # it ran on an older best: rebased, it runs again
            if self.s.stop_reason:
                self._drop_winner(c, "the session stopped before its further runs")
            else:
                self.confirms.appendleft(c)
            return
        if decision == keep_rule.KEEP:
            self._advance(job.commit)
        self._observe(c)

    def _advance(self, commit: str) -> None:
        """The branch moved to a kept commit as its keep was recorded (`Session.record_end`);
        a keep it could not take was recorded as interrupted, and the session stops."""
        if self.s.branch.tip == commit:
            self.best = (commit, self._files_at(commit))
            self.proposer.wake.set()

    def _observe(self, c: Candidate) -> None:
        entry = self.s.state.history[-1] if self.s.state.history else None
        if entry is not None:
            self.proposer.observations.append((c.proposal, entry))


def _score(result: experiment.Result) -> float | None:
    """The run's val_bpb, or None when it did not end well enough to count."""
    return result.val_bpb if result.status == "ok" else None


def _changes(job: pool.Job) -> dict:
    return job.candidate.proposal.changes if job.candidate is not None else {}
