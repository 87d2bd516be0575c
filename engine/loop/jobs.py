"""The scheduler's books: experiment numbers, candidates, the queues of jobs and the workers.

Each count lives here once: numbers given out (`Numbers`), candidates waiting for a worker
(`ready`), further runs of winners (`further`), lost workers' jobs to run again (`retries`),
candidate results waiting for the baseline (`deferred`), and which worker runs what (`running`,
`free`). Only the engine thread touches `Jobs`; `Numbers` is shared with the proposer thread.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from ratchet.engine.agents.base import Proposal
from ratchet.engine.loop.rules.base import FRONT, Tally
from ratchet.engine.protocol import schema
from ratchet.engine.workers.backend import Job, Outcome


@dataclass
class Candidate:
    exp: int
    proposal: Proposal
    commit: str
    based_on: str  # the best commit it sits on
    tally: Tally  # its keep rule's record of its runs
    diff: str = ""  # its change, as proposed


class Numbers:
    """Experiment numbers, handed out once each, from both threads."""

    def __init__(self, last: int):
        self._lock = threading.Lock()
        self._next = last + 1  # above every number the log mentions

    def take(self) -> int:
        with self._lock:
            n, self._next = self._next, self._next + 1
            return n


class Jobs:
    def __init__(self, workers: list[str]):
        self.workers = list(workers)
        self.free = list(workers)
        self.running: dict[int, Job] = {}
        self.ready: deque[Candidate] = deque()
        self.further: deque[Candidate] = deque()
        self.retries: deque[Job] = deque()
        self.deferred: list[Outcome] = []

    def start(self, job: Job) -> str:
        """Give the job the first free worker; returns the worker."""
        job.worker = self.free.pop(0)
        self.running[job.exp] = job
        return job.worker

    def release(self, job: Job) -> None:
        if self.running.pop(job.exp, None) is not None:
            self.free.append(job.worker)
            self.free.sort(key=self.workers.index)

    def run_again(self, c: Candidate, where: str) -> None:
        """Queue a further run of the candidate: ahead of the others, or behind them."""
        if where == FRONT:
            self.further.appendleft(c)
        else:
            self.further.append(c)

    def baselines_running(self) -> int:
        return sum(1 for j in self.running.values() if j.kind == schema.BASELINE)

    def in_flight(self) -> list[str]:
        """What the agent is told is being tried: running candidates, then the queue."""
        return [j.description for j in self.running.values() if j.kind == schema.CANDIDATE] + \
            [c.proposal.description for c in self.ready]

    def idle(self) -> bool:
        """Nothing running, waiting or held."""
        return not (self.running or self.ready or self.further or self.retries or self.deferred)
