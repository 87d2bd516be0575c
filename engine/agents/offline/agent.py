"""An agent that needs no network or API key: Bayesian search over train.py's numeric constants.

It reads the top-level `NAME = <number>` constants of the target file, derives a fixed search
range for each from the first (baseline) file it sees, and asks an Optuna TPE study for a point.
Each experiment changes exactly ONE constant relative to the current best file, so every row of
the results table is readable ("LEARNING_RATE 0.01 -> 0.0173") and a kept change is attributable.

The pieces, one module each: `constants` (reading and rewriting the file), `ranges` (the search
space), `moves` (which changes are allowed), `sampler` (TPE and which constant to change),
`steering` (notes from the person), `memory` (learning from outcomes) and `recall` (the
workspace's earlier sessions, learned before the first proposal).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import TYPE_CHECKING

from optuna.distributions import BaseDistribution

from ratchet.engine.agents.base import Agent, AgentError, Context, Emit, HistoryEntry, Proposal
from ratchet.engine.agents.offline import moves as movesmod
from ratchet.engine.agents.offline import recall as recallmod
from ratchet.engine.agents.offline import sampler
from ratchet.engine.agents.offline.changes import describe
from ratchet.engine.agents.offline.constants import (
    Number,
    format_value,
    parse_constants,
    unsearched,
    with_value,
)
from ratchet.engine.agents.offline.memory import Memory
from ratchet.engine.agents.offline.ranges import as_type, search_range
from ratchet.engine.agents.offline.steering import Steering
from ratchet.engine.protocol import schema

if TYPE_CHECKING:
    from ratchet.engine.workspace.config import Config, ExperimentConfig


class OfflineAgent(Agent):
    """One-constant-at-a-time TPE search over the target file's numeric constants."""

    name = "offline"

    def __init__(self, seed: int = 0, target: str = "train.py",
                 settings: ExperimentConfig | None = None) -> None:
        self.seed = seed
        self.target = target
        self.settings = settings  # the session's [experiment] (its budget, as run)
        self._recall: recallmod.Recall | None = None  # earlier sessions, read at the first look
        # best file hash -> the changes from it that earlier runs made (that code ran already)
        self._repeats: dict[str, dict[movesmod.Change, HistoryEntry]] = {}
        self.study = sampler.create_study(seed)
        self._ranges: dict[str, BaseDistribution] = {}  # fixed once a constant is first seen
        self.memory = Memory(self.study, self._ranges)
        self._steering = Steering()
        self._best: dict[str, Number] = {}  # config of the best file last seen
        self._best_key = ""
        self._tried: dict[str, set[movesmod.Change]] = {}  # best file hash -> tried changes
        self._proposed: dict[str, tuple[str, str, float]] = {}  # description -> key, name, value
        self._tries: Counter[str] = Counter()

    @classmethod
    def from_config(cls, config: Config) -> OfflineAgent:
        """The registry's factory; the search is seeded by `[experiment] seed`."""
        return cls(seed=config.experiment.seed, settings=config.experiment)

    def start_session(self, session_id: str) -> None:
        """Seed the search from the session too, so sessions do not all begin with the same
        proposals; a resumed session keeps its id and so its seed."""
        if sampler.completed(self.study) or self.memory.baseline is not None:
            return  # already searching: a new seed now would forget what was learned
        mixed = hashlib.sha256(f"{self.seed}:{session_id}".encode()).digest()
        self.study = sampler.create_study(int.from_bytes(mixed[:4], "big"))
        self.memory = Memory(self.study, self._ranges)

    def propose(self, context: Context, emit: Emit) -> Proposal:
        source = context.files.get(self.target)
        if source is None:
            raise AgentError(f"{self.target} is not among the editable files")
        constants = parse_constants(source)
        skipped = unsearched(source)
        names = [name for name in constants if name not in skipped]
        if not names:
            raise AgentError(f"no numeric constants to search in {self.target}")
        config = {name: constants[name].value for name in constants}
        if self.memory.baseline is None:
            self.memory.baseline = dict(config)
            emit(f"Parsed {len(names)} constants from {self.target}: "
                 + ", ".join(f"{n}={format_value(config[n])}" for n in names)
                 + (" (not searched: " + ", ".join(f"{n} ({why})" for n, why in skipped.items())
                    + ")" if skipped else "") + ".\n")
        for name in names:
            if name not in self._ranges:
                self._ranges[name] = search_range(name, config[name])
        self._best = config
        self._best_key = hashlib.sha256(source.encode()).hexdigest()
        if self._recall is None:
            self._recall = self._learn_earlier(context, emit)
        self.memory.catch_up(context, config)
        self._emit_study(config, emit)

        if self._best_key not in self._repeats:
            self._repeats[self._best_key] = self._recall.repeats(config, recallmod.shape(source))
        repeats = self._repeats[self._best_key]
        excluded = movesmod.excluded(self._tried.get(self._best_key, set()) | set(repeats),
                                     context)
        moves = movesmod.Moves(self._ranges, config, excluded, self.memory.crash_limit)
        self._steering.take(context, constants, emit)
        choice = self._steering.follow(self.study, moves, names, emit)
        if choice is None:
            choice = sampler.pick(self.study, moves, names, self._tries, self.memory.deltas, emit)
        name, value, rationale = choice
        new_source = with_value(source, constants[name], value)
        description = describe(name, config[name], value)
        self._tried.setdefault(self._best_key, set()).add((name, float(value)))
        self._proposed[description] = (self._best_key, name, float(value))
        self._tries[name] += 1
        before = self._recall.changes.get((name, float(value)))
        if before is not None:
            rationale += f"; an earlier session tried this change, not from this same code " \
                         f"as far as git shows: {recallmod.describe(before)}"
        emit(f"Proposing {description}: {rationale}\n")
        return Proposal(description=description, files={self.target: new_source},
                        rationale=rationale, changes={name: value},
                        tried_before=before.label if before is not None else "")

    def _learn_earlier(self, context: Context, emit: Emit) -> recallmod.Recall:
        """Learn every readable earlier run measured at this session's budget (memory across
        sessions); say what was learned and what was left out, and why."""
        found = recallmod.recall(context.earlier,
                                 lambda commits: context.earlier_files(commits, self.target))
        if not context.earlier:
            return found
        budget = getattr(self.settings, "budget_seconds", None) or \
            context.best_result.get("budget_seconds")
        learned = outside = 0
        # a run at another budget was another experiment: it is neither learned nor a repeat
        runs, found.runs = found.runs, []
        for run in runs:
            theirs = run[0].result.get("budget_seconds")
            if budget and isinstance(theirs, (int, float)) and theirs and theirs != budget:
                continue
            found.runs.append(run)
            if self.memory.learn_earlier(run[0], run[1]):
                learned += 1
            else:
                outside += 1
        other_budget = len(runs) - len(found.runs)
        skipped = [f"{count} {why}" for count, why in (
            (found.unreadable, f"whose {self.target} git does not have"),
            (other_budget, "run at another budget"),
            (outside, "with a constant outside the search ranges")) if count]
        emit(f"Earlier sessions: {len(context.earlier)} runs in {found.sessions} session"
             f"{'s' * (found.sessions != 1)}; learned from {learned}"
             + (f" (left out: {', '.join(skipped)})" if skipped else "")
             + "; a change an earlier run made from this same code is not proposed again.\n")
        return found

    def observe(self, proposal: Proposal, entry: HistoryEntry) -> None:
        if not self.memory.first_sight(entry):  # already learned from the history
            return
        config: dict[str, Number] | None = None
        source = proposal.files.get(self.target)
        if source is not None:
            config = {n: c.value for n, c in parse_constants(source).items()}
        elif entry.decision != schema.BASELINE and self._best:
            config = {**self._best, **{n: v for n, v in proposal.changes.items()
                                       if isinstance(v, (int, float))}}
        if entry.status == schema.INTERRUPTED:  # says nothing about the change: allow it again
            tried = self._proposed.get(proposal.description)
            if tried:
                self._tried.get(tried[0], set()).discard((tried[1], tried[2]))
            return
        self.memory.observe(entry, config)

    def _emit_study(self, config: dict[str, Number], emit: Emit) -> None:
        done = sampler.completed(self.study)
        if not done:
            emit("The study is empty: the first proposals explore around the baseline.\n")
            return
        crashes = sum(1 for t in done if t.user_attrs.get("status") not in (None, schema.OK))
        best = min(done, key=lambda t: t.value if t.value is not None else math.inf)
        baseline = self.memory.baseline
        changed = [f"{n}={format_value(v)}" for n, v in config.items()
                   if baseline and n in baseline and baseline[n] != v]
        emit(f"The study has {len(done)} trial{'s' * (len(done) != 1)} ({crashes} crashed or "
             f"timed out); best val_bpb {best.value:.4f}. Current best differs from the "
             f"baseline in: {', '.join(changed) or 'nothing yet'}.\n")
        limits = self.memory.avoided()
        if limits:
            emit("Avoiding what crashed, ran out of memory or time, or ran slow: " + ", ".join(
                (f"{n} {sign} {format_value(as_type(to, self._ranges[n]))}"
                 if n in self._ranges else f"{n} {sign} {to:g}") + f" ({why})"
                for n, to, sign, why in limits) + ".\n")
