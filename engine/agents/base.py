"""The interface every agent implements; the loop knows nothing else about agents."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ratchet.engine.protocol.history import HistoryEntry, JournalNote, StudyNote

__all__ = ["Agent", "AgentError", "AgentPaused", "Context", "Emit", "HistoryEntry", "JournalNote",
           "Proposal"]


class AgentError(Exception):
    """The agent could not produce a proposal this time; the loop records it and goes on."""


class AgentPaused(AgentError):
    """The agent cannot go on without the person (invalid key, exhausted quota)."""


@dataclass
class Context:
    """Everything an agent gets for one proposal."""

    files: dict[str, str]  # editable file name -> content at the current best commit
    program: str  # program.md
    history: list[HistoryEntry]
    best_bpb: float | None
    margin: float  # a change must beat best_bpb by more than this to be kept
    steer: list[str] = field(default_factory=list)  # notes from the person, oldest first
    last_crash_tail: str = ""
    in_flight: list[str] = field(default_factory=list)  # descriptions of running candidates
    # The engine's own check of candidate files (name -> full new text): why it would refuse
    # them ('' when it would not), so an agent can hand the reason back to its model and retry.
    check: Callable[[dict[str, str]], str] = lambda _files: ""
    # Appends an agent event (e.g. "agent_usage", "agent_retry") to the session's log under
    # this proposal's experiment number: record("agent_usage", input_tokens=..., ...).
    record: Callable[..., Any] = lambda _type, **_fields: None
    based_on: str = ""  # commit of the files above
    journal: list[JournalNote] = field(default_factory=list)  # the agent's notes, oldest first
    best_result: dict = field(default_factory=dict)  # the best run's result (its curve, ...)
    # Memory across sessions: the workspace's earlier sessions' experiments and notes, oldest
    # session first, each naming its session (`entry.session`, `entry.label` is session:n);
    # `earlier_files(commits, name)` is file `name`'s text at those commits git still has.
    earlier: list[HistoryEntry] = field(default_factory=list)
    earlier_journal: list[JournalNote] = field(default_factory=list)
    earlier_files: Callable[[Iterable[str], str], dict[str, str]] = lambda _commits, _name: {}
    # what studies (validate, ablate) of earlier sessions concluded, oldest first
    earlier_studies: list[StudyNote] = field(default_factory=list)


@dataclass
class Proposal:
    description: str  # one line, shown in the table and results.tsv
    files: dict[str, str]  # editable file name -> full new content (changed files only)
    rationale: str = ""
    changes: dict[str, object] = field(default_factory=dict)  # handed back in HistoryEntry
    tried_before: str = ""  # the earlier experiment (session:n) this change repeats, if known


Emit = Callable[[str], None]  # streams reasoning text to the dashboard as it is produced


class Agent(ABC):
    name: str = "agent"

    @abstractmethod
    def propose(self, context: Context, emit: Emit) -> Proposal:
        """Return one change to try; raise AgentError if none could be made."""

    def start_session(self, session_id: str) -> None:  # noqa: B027
        """Called once, before the first proposal, with the session's id (default: nothing)."""

    def observe(self, proposal: Proposal, entry: HistoryEntry) -> None:  # noqa: B027
        """Learn from the outcome of a proposal (default: nothing)."""
