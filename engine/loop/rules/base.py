"""What a keep rule is: the one object that says what a finished run means for the ratchet.

The scheduler hands a rule each finished run of a candidate (`Finished`) and carries out the
`Ruling` it gets back: record the decision with the fields the rule adds, run the candidate
again (ahead of new candidates, or behind them), keep it (the branch moves), or let it go. The
rule owns its thresholds, the seed of every run, its own tally of a candidate's runs (`Tally`),
and what the new best becomes (`new_best` in the record); `protocol/state` folds what it
records and decides nothing. A new rule is a subclass here and one line in `rules.RULES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ratchet.engine.protocol import noise, schema
from ratchet.engine.protocol.state import LoopState

MAX_CONFIRM_ROUNDS = 3  # further runs of one candidate before a moving best drops it

FRONT, BACK = "front", "back"  # where a candidate's further run queues: ahead of new ones or not


@dataclass(frozen=True)
class Settings:
    """The configuration a rule reads (ratchet.toml's [experiment] and [loop])."""

    seed: int  # the first seed: the baseline's, and a candidate's first run's by default
    min_improvement: float
    noise_k: float = 2.0
    confirm: bool = True


@dataclass
class Tally:
    """A rule's own record of one candidate's runs; each rule extends it."""

    rounds: int = 0  # further runs started (confirmations or more seeds)


@dataclass(frozen=True)
class Finished:
    """A candidate's run, finished: what the rule judges."""

    kind: str  # schema.CANDIDATE (its first run) or schema.CONFIRM (a further one)
    commit: str  # the commit it measured
    seed: int
    val_bpb: float | None  # None: the run did not end well enough to count
    fresh: bool  # the candidate was based on the best when its first run was judged
    moved: bool  # the measured commit's parent is no longer the best
    stopping: bool  # the session is stopping: no further runs
    stopped_early: bool = False  # trailed the best on its seed too far: stopped (`stopper`)


@dataclass(frozen=True)
class Ruling:
    decision: str  # one of schema.DECISIONS
    fields: dict = field(default_factory=dict)  # more of the exp_end: new_best, paired
    again: str = ""  # FRONT or BACK: the candidate runs again there; '' when it is done


class Rule(ABC):
    """A keep rule. `state` is the session's folded log, read and never written."""

    name = ""
    # why a winner waiting for its further runs is dropped when the session stops
    waiting_for = "its further runs"
    # early stopping applies ([loop] early_stop): the best has a run on each candidate's seed
    stops_early = False

    def __init__(self, settings: Settings):
        self.settings = settings

    def tally(self) -> Tally:
        """A new candidate's empty record."""
        return Tally()

    def first_seed(self, state: LoopState) -> int:
        """The seed of a candidate's first run."""
        return self.settings.seed

    @abstractmethod
    def next_seed(self, tally: Tally, exp: int, moved: bool, state: LoopState) -> int:
        """A further run is starting (rebased onto the best first where `moved`): its seed."""

    @abstractmethod
    def judge(self, run: Finished, tally: Tally, state: LoopState) -> Ruling:
        """What the finished run means, given the candidate's runs so far (updated here)."""

    def margin(self, state: LoopState) -> float:
        """What a change must beat the best by, as the agents and the records are told: the
        gain kept about four times in five at the noise so far (`noise.of`), or the minimum."""
        measured = noise.of(state).detectable
        return self.settings.min_improvement if measured is None else measured


def no_verdict(run: Finished, state: LoopState) -> Ruling | None:
    """The rulings every rule shares: a run stopped early is a discard, a failed run is a
    crash, and with no baseline measured nothing can be kept."""
    if run.stopped_early:
        return Ruling(schema.DISCARD)
    if run.val_bpb is None:
        return Ruling(schema.CRASH)
    if state.best_bpb is None:
        return Ruling(schema.DISCARD)
    return None
