"""Notes from the person ("try a bigger N_LAYER", "LEARNING_RATE=0.02") pick the next change.

A note names constants loosely ("n layers", "learning rate") and asks for an exact value or a
direction; each such request is queued and, when still possible, beats the TPE search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import optuna

from ratchet.engine.agents.base import Context, Emit
from ratchet.engine.agents.offline.constants import (
    NUMBER,
    Constant,
    Number,
    format_value,
    parse_number,
    searchable,
)
from ratchet.engine.agents.offline.moves import Moves, head_ok
from ratchet.engine.agents.offline.ranges import from_unit, unit
from ratchet.engine.agents.offline.sampler import suggest

_UP = re.compile(r"\b(bigger|larger|higher|more|increase|raise|up|deeper|wider|longer)\b", re.I)
_DOWN = re.compile(
    r"\b(smaller|lower|less|fewer|decrease|reduce|down|shallower|narrower|shorter)\b", re.I)


@dataclass
class Directive:
    """One instruction taken from a steering note."""

    name: str
    value: Number | None  # exact value asked for, or None
    direction: int  # +1 bigger, -1 smaller, 0 either
    note: str


def directives(note: str, names: list[str]) -> list[Directive]:
    """Constants a note names, each with an exact value (NAME=0.02) or a direction (bigger)."""
    mentions: list[tuple[int, int, str]] = []
    for name in names:
        # "N_LAYER", "n_layer", "n layers", "learning rate" all name the same constant
        pattern = r"(?<![A-Za-z0-9_])" + re.escape(name).replace("_", "[_ ]") \
            + r"s?(?![A-Za-z0-9_])"
        match = re.search(pattern, note, re.I)
        if match:
            mentions.append((match.start(), match.end(), name))
    mentions.sort()
    found = []
    for i, (start, end, name) in enumerate(mentions):
        exact = re.match(r"\s*(?:=|:|to)\s*(" + NUMBER + r")", note[end:], re.I)
        value = parse_number(exact.group(1)) if exact else None
        # the words between this mention and its neighbours say which way this one should go
        before = note[(mentions[i - 1][1] if i else 0):start]
        after = note[end:(mentions[i + 1][0] if i + 1 < len(mentions) else len(note))]
        found.append(Directive(name, value, _direction(before) or _direction(after), note))
    return found


def _direction(text: str) -> int:
    up, down = bool(_UP.search(text)), bool(_DOWN.search(text))
    return 1 if up and not down else -1 if down and not up else 0


class Steering:
    """The queue of requests from notes, fed from each context's notes once."""

    def __init__(self) -> None:
        self._prev: list[str] = []  # the notes of the previous context
        self._drains = False  # the loop hands each note once (not a growing list)
        self._queue: list[Directive] = []

    def take(self, context: Context, constants: dict[str, Constant], emit: Emit) -> None:
        """Queue directives from the notes that are new in this context.

        A loop may hand each note once (the session drains its queue) or keep a growing list;
        while every list extends the previous one only the added notes are new. Once a list
        does not, the loop is known to hand notes once and every note it gives is new."""
        steer, prev = list(context.steer), self._prev
        if steer[: len(prev)] != prev:
            self._drains = True
        new = steer if self._drains else steer[len(prev):]
        self._prev = steer
        for note in new:
            found = directives(note, list(constants))
            if not found:
                emit(f"Note {note!r} names no constant I search; noted, not acted on.\n")
            for directive in found:
                if searchable(directive.name):
                    self._queue.append(directive)
                else:
                    emit(f"Note {note!r}: {directive.name} does not change val_bpb here, so "
                         f"I leave it alone.\n")

    def follow(self, study: optuna.Study, moves: Moves, names: list[str], emit: Emit
               ) -> tuple[str, Number, str] | None:
        """(constant, value, rationale) of the first queued request still possible, or None."""
        while self._queue:
            directive = self._queue.pop(0)
            name = directive.name
            if name not in names:
                emit(f"Note {directive.note!r}: {name} is no longer a plain constant.\n")
                continue
            value = _value(directive, study, moves, emit)
            if value is None:
                continue
            emit(f"Following the note {directive.note!r}: changing {name}.\n")
            return name, value, f"steered by the note {directive.note!r}"
        return None


def _value(directive: Directive, study: optuna.Study, moves: Moves, emit: Emit
           ) -> Number | None:
    """The value a request asks for, made valid, or None (said why) when it cannot be had."""
    name, current, note = directive.name, moves.config[directive.name], directive.note
    if directive.value is None:
        # aim for TPE's view of the constant, on the side the note asks for
        dist = moves.ranges[name]
        suggested = float(suggest(study, {name: dist})[name])
        cur_u = unit(dist, float(current))
        u = unit(dist, suggested)
        if directive.direction and (u - cur_u) * directive.direction <= 0:
            suggested = from_unit(dist, min(1.0, max(0.0, 2 * cur_u - u)))  # mirror it
        value = moves.candidate(name, suggested, directive.direction)
        if value is None:
            emit(f"Note {note!r}: no untried value of {name} left in that "
                 f"direction that has not crashed before.\n")
        return value
    value: Number = directive.value
    if isinstance(current, int):
        if not float(value).is_integer():
            emit(f"Note {note!r}: {name} takes whole numbers.\n")
            return None
        value = int(value)
    else:
        value = float(value)
    if not head_ok({**moves.config, name: value}) and isinstance(value, int):
        fixed = moves.nearest_valid(name, value)
        emit(f"Note {note!r}: {name}={value} breaks N_EMBD % (2 * N_HEAD) == 0; "
             f"using {fixed}.\n")
        if fixed is None:
            return None
        value = fixed
    if value == current:
        emit(f"Note {note!r}: {name} is already {format_value(value)}.\n")
        return None
    if (name, float(value)) in moves.excluded:
        emit(f"Note {note!r}: {name}={format_value(value)} was already tried "
             f"from this best.\n")
        return None
    limit = moves.crash_limit(name, value)
    if limit is not None:
        emit(f"Note {note!r}: {name}={format_value(value)} is past {limit:g}, "
             f"which crashed before; trying it because you asked.\n")
    return value
