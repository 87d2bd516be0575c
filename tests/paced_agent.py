"""An agent that thinks for a fixed time per proposal, for scheduling tests and the bench."""

from __future__ import annotations

import time

from ratchet.engine.agents.base import Agent, AgentError, Context, Emit, Proposal
from ratchet.engine.workspace.layout import with_constants


class PacedAgent(Agent):
    """Proposes the planned constant changes in order, then pure-noise UNUSED_WIDTH changes.

    Each proposal takes `seconds` of wall time, like a model thinking; `calls` keeps the
    (start, end) time of each, so tests can see what ran meanwhile.
    """

    name = "paced"

    def __init__(self, seconds: float, plan: list[tuple[str, float]] | None = None):
        self.seconds = seconds
        self.plan = list(plan or [])
        self.noise = 65
        self.calls: list[tuple[float, float]] = []
        self.seen_in_flight: list[list[str]] = []
        self.observed: list[str] = []

    def propose(self, context: Context, emit: Emit) -> Proposal:
        start = time.time()
        self.seen_in_flight.append(list(context.in_flight))
        emit(f"thinking for {self.seconds:g} s\n")
        time.sleep(self.seconds)
        source = context.files.get("train.py")
        if source is None:
            raise AgentError("train.py is not editable")
        if self.plan:
            name, value = self.plan.pop(0)
        else:
            name, value = "UNUSED_WIDTH", self.noise
            self.noise += 1
        self.calls.append((start, time.time()))
        return Proposal(f"{name} -> {value}", {"train.py": with_constants(source, {name: value})},
                        rationale="planned", changes={name: value})

    def observe(self, proposal: Proposal, entry) -> None:
        self.observed.append(f"{entry.description}: {entry.decision}")
