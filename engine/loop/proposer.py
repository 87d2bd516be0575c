"""The proposer thread: asks the agent for candidates ahead of time.

It keeps up to one proposal ready per worker, so a worker never waits for the agent. It never
touches git: each proposal goes into `raw`, and the engine thread commits it (`Scheduler`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ratchet.engine.agents.base import AgentError, AgentPaused, HistoryEntry, Proposal
from ratchet.engine.loop import keep_rule
from ratchet.engine.protocol import events, schema

MAX_FAILED_PROPOSALS = 10
POLL_S = 0.1


@dataclass
class RawProposal:
    """A proposal handed from the proposer thread to the engine thread."""

    exp: int
    proposal: Proposal
    based_on: str
    steer: list[str] = field(default_factory=list)


class Proposer:
    """Runs the agent on its own thread; the scheduler reads `raw` and feeds `observations`.

    `lock` is the scheduler's: `raw`, `proposing` and `proposals` change under it, so the engine
    thread's end-of-work check sees them together.
    """

    def __init__(self, session, lock: threading.Lock, alloc_exp: Callable[[], int],
                 wants: Callable[[int], bool], in_flight: Callable[[], list[str]],
                 best: Callable[[], tuple[str, dict[str, str]]]):
        self.s = session
        self.lock = lock
        self._alloc_exp, self._wants, self._in_flight, self._best = \
            alloc_exp, wants, in_flight, best
        self.raw: deque[RawProposal] = deque()
        self.proposing = False
        self.proposals = session.state.proposals  # made, counted toward --max-experiments
        self.observations: deque[tuple[Proposal, HistoryEntry]] = deque()
        self.stopping = False
        self.error = ""
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="proposer")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=2.0)

    def waiting(self) -> int:
        """Proposals made and not yet committed by the engine thread."""
        return len(self.raw)

    def _loop(self) -> None:
        failures = 0
        while not self.stopping:
            if not self._wants(self.proposals):
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
        n = self._alloc_exp()
        with self.lock:
            self.proposing = True
            self.proposals += 1
        based_on, files = self._best()
        self.s.emit(schema.PHASE, exp=n, phase="proposing")
        context = self.s.context_for(files=files, based_on=based_on, in_flight=self._in_flight())
        context.record = lambda event_type, **fields: self.s.emit(event_type, exp=n, **fields)
        batcher = events.TextBatcher(self.s.log, n)
        proposal = None
        try:
            proposal = self.s.agent.propose(context, batcher.add)
            batcher.flush()
            error = self.s.check(proposal, context)
        except AgentPaused as exc:
            batcher.flush()
            self.s.emit(schema.PROPOSAL_FAILED, exp=n, error=str(exc), paused=True)
            self.s.paused.set()
            self.proposing = False
            return 0
        except AgentError as exc:
            batcher.flush()
            error = str(exc)
        if error:
            self.s.emit(schema.PROPOSAL_FAILED, exp=n, error=error)
            if proposal is not None:
                self.observations.append((proposal, HistoryEntry(
                    n, proposal.description, "crash", keep_rule.CRASH, None, None,
                    proposal.changes)))
            failures += 1
            if failures >= MAX_FAILED_PROPOSALS:
                self.s.emit(schema.AGENT_GAVE_UP, error=f"{failures} proposals in a row failed; "
                                                   f"last: {error}")
                self.s.request_stop("error")
            self.proposing = False
            return failures
        with self.lock:
            self.raw.append(RawProposal(n, proposal, based_on, context.steer))
            self.proposing = False
        return 0
