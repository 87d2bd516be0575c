"""What passes between the engine thread and the proposer thread, under one lock.

The engine thread publishes the best (commit and files), what is in flight and how many
candidates wait for a worker, and opens or closes the door to proposals; the proposer posts
each proposal it makes, and the engine thread takes them in order. Nothing else passes between
the two threads, and neither reads the other's attributes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from ratchet.engine.agents.base import HistoryEntry, Proposal


@dataclass
class RawProposal:
    """A proposal made on the proposer thread, not yet committed by the engine thread."""

    exp: int
    proposal: Proposal
    based_on: str
    steer: list[str] = field(default_factory=list)


class Handoff:
    def __init__(self, best: tuple[str, dict[str, str]], made: int, slots: int,
                 limit: int | None):
        self._lock = threading.Lock()
        self.wake = threading.Event()  # the proposer looks again at once
        self._best = best
        self._in_flight: list[str] = []
        self._waiting = 0  # committed candidates waiting for a worker (the engine's count)
        self._open = False  # whether the engine wants proposals at all
        self._raw: deque[RawProposal] = deque()
        self._busy = False  # the proposer is asking the agent
        self._made = made  # proposals made, toward --max-experiments
        self._slots, self.limit = slots, limit  # limit: --max-experiments
        self._observed: deque[tuple[Proposal, HistoryEntry]] = deque()

    # --- the engine thread ---------------------------------------------------------------

    def publish(self, *, best: tuple[str, dict[str, str]] | None = None,
                in_flight: list[str] | None = None, waiting: int | None = None,
                open: bool | None = None) -> None:
        with self._lock:
            if best is not None:
                self._best = best
            if in_flight is not None:
                self._in_flight = in_flight
            if waiting is not None:
                self._waiting = waiting
            if open is not None:
                self._open = open
        self.wake.set()

    def next(self) -> RawProposal | None:
        """The oldest proposal, left in place until `taken` (so it counts as waiting)."""
        with self._lock:
            return self._raw[0] if self._raw else None

    def taken(self, waiting: int) -> None:
        """The oldest proposal is committed: it now waits among `waiting` candidates."""
        with self._lock:
            self._raw.popleft()
            self._waiting = waiting

    def observe(self, proposal: Proposal, entry: HistoryEntry) -> None:
        """A candidate's outcome, for the agent to learn from before its next proposal."""
        self._observed.append((proposal, entry))

    def settled(self) -> tuple[bool, int]:
        """Whether the proposer is idle with nothing posted, and how many it made."""
        with self._lock:
            return not self._busy and not self._raw, self._made

    # --- the proposer thread -------------------------------------------------------------

    def wanted(self) -> bool:
        """Whether a proposal is wanted now: the door open, the limit not reached, and fewer
        candidates waiting than workers."""
        with self._lock:
            return (self._open and (self.limit is None or self._made < self.limit)
                    and self._waiting + len(self._raw) < self._slots)

    def begin(self) -> tuple[str, dict[str, str], list[str]]:
        """A proposal starts: counted now; returns the best and what is in flight."""
        with self._lock:
            self._busy, self._made = True, self._made + 1
            return (*self._best, self._in_flight + [r.proposal.description for r in self._raw])

    def post(self, raw: RawProposal | None) -> None:
        """The proposal made (None when it failed): the proposer is idle again."""
        with self._lock:
            if raw is not None:
                self._raw.append(raw)
            self._busy = False

    def observations(self) -> list[tuple[Proposal, HistoryEntry]]:
        out = []
        while self._observed:
            out.append(self._observed.popleft())
        return out
