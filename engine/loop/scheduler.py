"""Scheduling: the agent proposes while the workers train, and results land one at a time.

The proposer thread (`proposer`) makes candidates ahead of time and posts them on the
`Handoff`. The engine thread (the caller of `Scheduler.run`) commits each one off the branch
(`moves`), hands jobs to free workers (`jobs`), and gives each finished run of a candidate to
the session's keep rule (`rules`), then carries out its ruling: record it (`recorder`), run the
candidate again, or let it go. The engine thread alone writes git.
"""

from __future__ import annotations

from ratchet.engine.agents.base import Proposal
from ratchet.engine.loop.controls import Controls
from ratchet.engine.loop.handoff import Handoff
from ratchet.engine.loop.jobs import Candidate, Jobs, Numbers
from ratchet.engine.loop.moves import Moves
from ratchet.engine.loop.proposer import POLL_S, Proposer
from ratchet.engine.loop.recorder import Recorder
from ratchet.engine.loop.rules import early_stop as es
from ratchet.engine.loop.rules.base import Finished, Rule
from ratchet.engine.loop.stopper import Stopper, Watch
from ratchet.engine.protocol import schema
from ratchet.engine.runner import experiment
from ratchet.engine.workers.backend import Backend, Job, Outcome
from ratchet.engine.workspace.config import Config


class Scheduler:
    def __init__(self, controls: Controls, recorder: Recorder, rule: Rule, moves: Moves,
                 backend: Backend, config: Config, handoff: Handoff, numbers: Numbers,
                 proposer: Proposer, stopper: Stopper | None = None):
        self.c, self.rec, self.rule, self.moves = controls, recorder, rule, moves
        self.backend, self.config, self.handoff = backend, config, handoff
        self.numbers, self.proposer = numbers, proposer
        self.stopper = stopper  # early stopping, where it is on
        self.state = recorder.state  # read only: the recorder folds every event into it
        self.limit = handoff.limit
        self.jobs = Jobs(backend.workers)
        self.stopping = False
        self.paused_recorded = False
        self.error = ""
        self._requeue(self.state.queued)

    # --- counts --------------------------------------------------------------------------

    def _baselines_to_start(self) -> int:
        started = self.state.baseline_runs + self.jobs.baselines_running()
        return max(0, self.config.loop.baseline_seeds - started)

    def _baseline_done(self) -> bool:
        return self._baselines_to_start() == 0 and not self.jobs.baselines_running()

    def _publish(self) -> None:
        """Tell the proposer what it needs: the door, the queue and what is in flight."""
        self.handoff.publish(
            open=not self.stopping and self._baselines_to_start() == 0,
            waiting=len(self.jobs.ready), in_flight=self.jobs.in_flight())

    # --- the engine thread ---------------------------------------------------------------

    def run(self) -> str:
        """Run until stopped or done; returns an error for the session's end, or ''."""
        self._publish()
        self.proposer.start()
        try:
            while True:
                self._intake()
                self._control()
                if not self.c.stop_reason and self._finished():
                    self.c.stop_reason = schema.STOP_MAX_EXPERIMENTS
                if self.c.stop_reason and not self.jobs.running:
                    break
                if not self.c.stop_reason and not self.c.paused.is_set():
                    self._dispatch()
                for outcome in self.backend.wait(POLL_S):
                    self._apply(outcome)
                if self._baseline_done() and self.jobs.deferred:
                    deferred, self.jobs.deferred = self.jobs.deferred, []
                    for outcome in deferred:
                        self._apply(outcome)
                if self._baseline_done() and not self.state.baseline and not self._error():
                    self.error = "every baseline run failed; fix train.py first"
                    self.c.request_stop(schema.STOP_ERROR)
                self._publish()
        finally:
            self.stopping = True
            self.backend.kill()
            self.proposer.stop()
            deferred, self.jobs.deferred = self.jobs.deferred, []
            for outcome in deferred:  # finished before the baseline did: recorded all the same
                self._apply(outcome)
            self._intake()
            self._drop_unstarted()
            self.backend.close()
        return self._error()

    def _error(self) -> str:
        return self.error or self.proposer.error

    def _finished(self) -> bool:
        limit = self.limit
        settled, made = self.handoff.settled()
        return (limit is not None and made >= limit and settled and self.jobs.idle()
                and self._baseline_done())

    def _control(self) -> None:
        if self.c.kill_current.is_set():
            self.c.kill_current.clear()
            self.backend.kill()
        if self.c.paused.is_set() and not self.paused_recorded and not self.c.stop_reason:
            self.rec.emit(schema.PAUSED)
            self.rec.emit(schema.PHASE, phase=schema.PHASE_PAUSED)
            self.paused_recorded = True
        elif not self.c.paused.is_set() and self.paused_recorded:
            self.rec.emit(schema.RESUMED)
            self.paused_recorded = False
        self.c.resume_wakeup.clear()

    def _intake(self) -> None:
        """Commit the proposer's proposals (off the branch) and record them."""
        while (raw := self.handoff.next()) is not None:
            self.jobs.ready.append(self.moves.commit(raw, self.rule.tally()))
            self.handoff.taken(len(self.jobs.ready))

    def _requeue(self, queued: dict[int, dict]) -> None:
        """Proposals recorded but never started (the engine stopped): they run after all."""
        for n, event in sorted(queued.items()):
            files = self.moves.readable(event.get("commit", ""), event.get("files", []))
            if files is None:
                self.rec.dropped(n, "its commit is gone", event.get("description", ""),
                                 schema.STAGE_QUEUED)
                continue
            proposal = Proposal(event.get("description", ""), files, event.get("rationale", ""),
                                event.get("changes") or {})
            self.jobs.ready.append(Candidate(n, proposal, event.get("commit", ""),
                                             event.get("based_on", ""), self.rule.tally(),
                                             event.get("diff") or ""))

    def _drop_unstarted(self) -> None:
        why = f"the session ended ({self.c.stop_reason}) before"
        while self.jobs.ready:
            c = self.jobs.ready.popleft()
            self.rec.dropped(c.exp, f"{why} it ran", c.proposal.description,
                             schema.STAGE_QUEUED, c.proposal.changes)
        while self.jobs.further:
            c = self.jobs.further.popleft()
            self.rec.dropped(c.exp, f"{why} its confirmation", c.proposal.description,
                             schema.STAGE_CONFIRM, c.proposal.changes)

    # --- dispatching ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self.jobs.free:
            job = self._next_job()
            if job is None:
                return
            worker = self.jobs.start(job)
            self.rec.emit(schema.EXP_START, exp=job.exp, kind=job.kind, commit=job.commit,
                          seed=job.seed, budget=self.config.experiment.budget_seconds,
                          description=job.description, worker=worker,
                          **({"retry_of": job.retry_of} if job.retry_of is not None else {}))
            self.rec.log.sync()
            self._watch(job)
            self.backend.start(job, worker)

    def _next_job(self) -> Job | None:
        """Lost workers' jobs first, then winners' further runs, the baseline, new ones."""
        if self.jobs.retries:
            return self.jobs.retries.popleft()
        while self.jobs.further:
            job = self._further_job(self.jobs.further.popleft())
            if job is not None:
                return job
        if self._baselines_to_start():
            seed = self.config.experiment.seed + self.state.baseline_runs + \
                self.jobs.baselines_running()
            label = "baseline" if seed == self.config.experiment.seed \
                else f"baseline (seed {seed})"
            return Job(self.numbers.take(), schema.BASELINE, self.state.best_commit, seed,
                            label)
        while self.jobs.ready:
            c = self.jobs.ready.popleft()
            self.handoff.publish(waiting=len(self.jobs.ready))  # room for the next proposal
            if self.moves.onto_best(c, schema.STAGE_QUEUED):
                return Job(c.exp, schema.CANDIDATE, c.commit, self.rule.first_seed(self.state),
                                c.proposal.description, candidate=c)
        return None

    def _further_job(self, c: Candidate) -> Job | None:
        moved = c.based_on != self.state.best_commit
        if not self.moves.onto_best(c, schema.STAGE_CONFIRM):
            return None
        seed = self.rule.next_seed(c.tally, c.exp, moved, self.state)
        return Job(self.numbers.take(), schema.CONFIRM, c.commit, seed,
                        f"confirm exp {c.exp}: {c.proposal.description}", candidate=c)

    # --- applying results, one at a time -------------------------------------------------

    def _watch(self, job: Job) -> None:
        """Early stopping watches a candidate's run where the best has a run on its seed: its
        first run is judged, a further one only recorded for the calibration (`prior_for`)."""
        if self.stopper is None or job.kind == schema.BASELINE:
            return
        best = self.state.best_profiles.get(job.seed)
        baseline = es.Baseline.of(self.state.baseline_profiles)
        if best is None or baseline is None:
            return
        schedule = es.touches_schedule(job.candidate.diff)
        samples = [(es.checkpoints_of(gaps), final)
                   for gaps, final in es.samples_for(self.state.early_samples, schedule)]
        prior = es.prior_for(schedule, further=job.kind != schema.CANDIDATE)
        self.stopper.watch(job.exp, Watch(
            self.config.experiment.budget_seconds,
            es.floor(best["profile"], best["val"], baseline, job.seed),
            best["val"], es.calibrate(samples, prior), schedule))

    def _early(self, job: Job, result: experiment.Result) -> dict:
        """The run's early_stop record: where it was stopped, or its gaps for the calibration."""
        watch = self.stopper.done(job.exp) if self.stopper is not None else None
        if watch is None:
            return {}
        if watch.stop is not None:
            result.status = schema.STOPPED_EARLY
            result.error = (f"stopped early at {watch.stop.fraction * 100:g}%: training loss "
                            f"{watch.stop.gap:+.3f} behind the best's run on seed {job.seed} "
                            f"(threshold {watch.stop.threshold:.3f})")
            return {"early_stop": watch.stop.to_json()}
        if result.status != schema.OK or result.val_bpb is None:
            return {}
        mine = es.checkpoints_of(es.profile(es.points(result.train_log), watch.budget))
        gaps = es.gaps(mine, watch.reference)
        return {"early_stop": {"gaps": {f"{f:g}": round(g, 5) for f, g in gaps.items()},
                               "final": round(result.val_bpb - watch.reference_val, 6),
                               "schedule": watch.schedule}}

    def _apply(self, outcome: Outcome) -> None:
        job, result = outcome.job, outcome.result
        self.jobs.release(job)
        if job.kind == schema.CANDIDATE and not self._baseline_done() and not self.c.stop_reason:
            self.jobs.deferred.append(outcome)  # judged once the baseline's noise is known
            return
        early = self._early(job, result)
        if result.status == schema.KILLED and self.c.stop_reason:
            result.status = schema.INTERRUPTED
            result.error = f"engine stopping ({self.c.stop_reason})"
        if outcome.lost:
            result.status = schema.INTERRUPTED if self.c.stop_reason else schema.LOST
            if not self.c.stop_reason and self._retry(job, result):
                return
        if job.kind == schema.BASELINE:
            self.rec.end(job.exp, schema.BASELINE, job.commit, result, job.description,
                         decision=schema.BASELINE, worker=job.worker)
        else:
            self._judge(job, result, early)

    def _retry(self, job: Job, result: experiment.Result) -> bool:
        """Record a lost worker's job and run it again under a new number (once)."""
        if job.retry_of is not None:  # lost twice: recorded as it is
            return False
        again = Job(self.numbers.take(), job.kind, job.commit, job.seed, job.description,
                         candidate=job.candidate, retry_of=job.exp)
        changes = job.candidate.proposal.changes if job.candidate is not None else {}
        self.rec.end(job.exp, job.kind, job.commit, result, job.description, schema.RETRY,
                     changes=changes, worker=job.worker, retried_as=again.exp)
        self.jobs.retries.append(again)
        return True

    def _judge(self, job: Job, result: experiment.Result, early: dict) -> None:
        """A candidate's run, or a further one: the rule's ruling, carried out."""
        c: Candidate = job.candidate
        first = job.kind == schema.CANDIDATE
        run = Finished(kind=job.kind, commit=job.commit, seed=job.seed,
                       val_bpb=result.val_bpb if result.status == schema.OK else None,
                       fresh=c.based_on == self.state.best_commit,
                       moved=not self.moves.measured_on_best(job.commit),
                       stopping=bool(self.c.stop_reason),
                       stopped_early=result.status == schema.STOPPED_EARLY)
        ruling = self.rule.judge(run, c.tally, self.state)
        where = {"based_on": c.based_on} if first else {"confirms": c.exp}
        event = self.rec.end(job.exp, job.kind, job.commit, result, c.proposal.description,
                             ruling.decision, changes=c.proposal.changes, **ruling.fields,
                             worker=job.worker, **where, **early)
        if ruling.again:
            if self.c.stop_reason and ruling.decision != schema.CONFIRM_AGAIN:
                self.rec.dropped(c.exp, f"the session stopped before {self.rule.waiting_for}",
                                 c.proposal.description, schema.STAGE_CONFIRM,
                                 c.proposal.changes)
            else:
                self.jobs.run_again(c, ruling.again)
            return
        if event["decision"] == schema.KEEP:  # the branch took it (else: interrupted)
            best = (job.commit, self.moves.files_at(job.commit))
            self.handoff.publish(best=best)  # the proposer proposes on the new best
        if self.state.history:
            self.handoff.observe(c.proposal, self.state.history[-1])
