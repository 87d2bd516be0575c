"""Which single-constant changes may be proposed from the current best file.

A change is refused when it repeats one already tried from this best, is too small a step to
stand out from run-to-run noise, goes at or past a value that crashed, or breaks the model's
shape rules. Both the TPE search and the steering notes choose through `Moves`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from optuna.distributions import BaseDistribution, IntDistribution

from ratchet.engine.agents.base import Context
from ratchet.engine.agents.offline.changes import entry_change, new_value
from ratchet.engine.agents.offline.constants import Number
from ratchet.engine.agents.offline.ranges import from_unit, round_value, unit
from ratchet.engine.protocol import schema

MIN_STEP = 0.06  # smallest float move, in normalised units: smaller ones drown in run-to-run noise
GRID = 32  # fallback grid points per float range when the suggested value is not usable
HEAD_CONSTRAINT = ("N_EMBD", "N_HEAD")  # N_EMBD % N_HEAD == 0 and an even head size (rotary)

Change = tuple[str, float]  # (constant, value as float): how tried changes are remembered


def head_ok(config: dict[str, Number]) -> bool:
    embd, heads = config.get(HEAD_CONSTRAINT[0]), config.get(HEAD_CONSTRAINT[1])
    if not isinstance(embd, int) or not isinstance(heads, int):
        return True
    return heads >= 1 and embd % heads == 0 and (embd // heads) % 2 == 0


def excluded(tried: set[Change], context: Context) -> set[Change]:
    """Changes not to propose again from this best: tried, running, or since the last keep."""
    result = set(tried)
    for description in context.in_flight:
        change = new_value(description)
        if change:
            result.add((change[0], float(change[1])))
    for entry in reversed(context.history):
        if entry.decision in (schema.KEEP, schema.BASELINE):
            break
        change = entry_change(entry)
        if change:
            result.add((change[0], float(change[1])))
    return result


@dataclass
class Moves:
    """The changes open from one best configuration."""

    ranges: dict[str, BaseDistribution]
    config: dict[str, Number]  # the current best file's constants
    excluded: set[Change]
    crash_limit: Callable[[str, Number], float | None]  # the crashed value this one is past

    def usable(self, name: str, value: Number, direction: int = 0) -> bool:
        """Different from the current value by a noticeable step, not tried from this best, on
        the asked side, and keeping N_EMBD / N_HEAD valid for rotary attention."""
        dist, current = self.ranges[name], self.config[name]
        move = unit(dist, float(value)) - unit(dist, float(current))
        if value == current or (name, float(value)) in self.excluded:
            return False
        if isinstance(value, float) and abs(move) < MIN_STEP:
            return False
        if direction and move * direction <= 0:
            return False
        if self.crash_limit(name, value) is not None:
            return False
        return head_ok({**self.config, name: value})

    def candidate(self, name: str, target: float, direction: int = 0) -> Number | None:
        """The usable value nearest (in normalised units) to `target`, or None."""
        dist = self.ranges[name]
        options: list[Number]
        if isinstance(dist, IntDistribution):
            step = max(1, (dist.high - dist.low) // 4096)  # every value unless the range is huge
            options = list(range(dist.low, dist.high + 1, step))
        else:
            grid = [from_unit(dist, i / GRID) for i in range(GRID + 1)]
            options = [round_value(target, dist), *(round_value(v, dist) for v in grid)]
        target_u = unit(dist, float(target))
        usable = [v for v in options if self.usable(name, v, direction)]
        if not usable:
            return None
        return min(usable, key=lambda v: abs(unit(dist, float(v)) - target_u))  # first on ties

    def nearest_valid(self, name: str, value: int) -> int | None:
        """The whole number nearest to `value` that keeps the head constraint, if any."""
        for offset in range(0, 4 * abs(value) + 2):
            for option in (value - offset, value + offset):
                if option >= 1 and option != self.config[name] \
                        and head_ok({**self.config, name: option}):
                    return option
        return None
