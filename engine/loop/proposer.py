"""The proposer thread: asks the agent for candidates ahead of time.

It keeps up to one proposal waiting per worker, so a worker never waits for the agent. It is a
plain producer: it reads what the engine thread published and posts proposals on the `Handoff`,
and never touches git (the engine thread commits each proposal).
"""

from __future__ import annotations

import threading

from ratchet.engine.agents.base import AgentError, AgentPaused, HistoryEntry
from ratchet.engine.loop.handoff import Handoff, RawProposal
from ratchet.engine.loop.jobs import Numbers
from ratchet.engine.protocol import events, schema

MAX_FAILED_PROPOSALS = 10
POLL_S = 0.1


class Proposer:
    """Runs the session's agent on its own thread."""

    def __init__(self, session, numbers: Numbers, handoff: Handoff):
        self.s = session
        self.numbers, self.handoff = numbers, handoff
        self.stopping = False
        self.error = ""
        self.thread = threading.Thread(target=self._loop, daemon=True, name="proposer")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.handoff.wake.set()
        self.thread.join(timeout=2.0)

    def _wanted(self) -> bool:
        return not self.stopping and not self.s.controls.paused.is_set() and self.handoff.wanted()

    def _loop(self) -> None:
        failures, wake = 0, self.handoff.wake
        while not self.stopping:
            if not self._wanted():
                wake.wait(POLL_S)
                wake.clear()
                continue
            for proposal, entry in self.handoff.observations():
                self.s.agent.observe(proposal, entry)
            try:
                failures = self._propose_one(failures)
            except ValueError:  # the log closed under a proposal: the session is ending
                return
            except Exception as exc:  # the agent's own bug: the session ends with it recorded
                self.error = f"agent failed: {type(exc).__name__}: {exc}"
                self.s.request_stop(schema.STOP_ERROR)
                return
            if failures and not self.stopping:
                if failures >= MAX_FAILED_PROPOSALS:
                    return
                wake.wait(min(30.0, 0.5 * 2 ** (failures - 1)))  # an agent out of ideas
                wake.clear()

    def _propose_one(self, failures: int) -> int:
        """Ask the agent once; returns the count of failures in a row."""
        n = self.numbers.take()
        based_on, files, in_flight = self.handoff.begin()
        try:
            return self._ask(n, based_on, files, in_flight, failures)
        finally:
            self.handoff.post(None)  # idle again, whatever happened (a posted one is kept)

    def _ask(self, n: int, based_on: str, files: dict[str, str], in_flight: list[str],
             failures: int) -> int:
        self.s.emit(schema.PHASE, exp=n, phase=schema.PHASE_PROPOSING)
        context = self.s.context_for(files=files, based_on=based_on, in_flight=in_flight)
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
            self.s.controls.paused.set()
            return 0
        except AgentError as exc:
            batcher.flush()
            error = str(exc)
        if error:
            self.s.emit(schema.PROPOSAL_FAILED, exp=n, error=error)
            if proposal is not None:
                self.handoff.observe(proposal, HistoryEntry(
                    n, proposal.description, schema.CRASHED, schema.CRASH, None, None,
                    proposal.changes))
            failures += 1
            if failures >= MAX_FAILED_PROPOSALS:
                self.s.emit(schema.AGENT_GAVE_UP, error=f"{failures} proposals in a row failed; "
                                                   f"last: {error}")
                self.s.request_stop(schema.STOP_ERROR)
            return failures
        self.handoff.post(RawProposal(n, proposal, based_on, context.steer))
        return 0
