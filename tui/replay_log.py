"""A session's log opened for replay: an index of its moments, and a fast fold to any of them.

Folding a night's log from the start takes seconds (a million events), so a jump does not fold
every event. The index keeps the loop's own events (everything but the three streams that make
up almost all of a log: `train_log`, `agent_delta` and `resources`); a jump folds those, and of
the streams only what a pane can still show at the target: all agent text, the training curves
of the running, best and latest experiments, and the last resource samples. The panes then show
exactly what a fold of every event would show (the replay tests check this at every
experiment). A stream event in a layout the fast search does not recognise (`type_pattern`) is
indexed like the loop's own, so it is never lost.

Offsets are byte offsets of line starts; a position is "every event before this offset applied".
"""

from __future__ import annotations

import mmap
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ratchet.engine.protocol import events as eventlog
from ratchet.engine.protocol import schema
from ratchet.tui.view_state import AGENT_CHUNKS, HISTORY, DashboardState

# The three streams, as the engine writes them, are found by regular expressions in C without
# parsing their lines (train_log lines by their experiment); every other line is parsed as JSON.
_STREAM = eventlog.type_pattern({schema.TRAIN_LOG: eventlog.ANY, schema.AGENT_DELTA: None,
                                 schema.RESOURCES: None})  # the most frequent first
RESOURCE_WINDOW = 1 << 20  # bytes searched back for the last resource samples, doubled as needed


class _Lines:
    """Whole lines whose text matches `body`, found between two line starts.

    The pattern begins with the newline before a line, so the regex engine scans for that one
    byte in C instead of trying every position; the file's first line is checked on its own."""

    def __init__(self, body: bytes) -> None:
        self._first = re.compile(body + rb"(?=\n)")
        self._rest = re.compile(rb"\n(" + body + rb")(?=\n)")

    def find(self, data: bytes | mmap.mmap, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        if start == 0:
            match = self._first.match(data, 0, end)
            if match:
                yield 0, match.group()
        for match in self._rest.finditer(data, max(0, start - 1), end):
            yield match.start(1), match.group(1)

    def all(self, data: bytes | mmap.mmap, start: int, end: int) -> list[bytes]:
        """The matching lines' text only: `find` without positions, a C loop throughout."""
        found = self._rest.findall(data, max(0, start - 1), end)
        if start == 0 and (match := self._first.match(data, 0, end)):
            found.insert(0, match.group())
        return found


_STRUCTURAL = _Lines(rb"(?!" + _STREAM + rb")[^\n]+")
_AGENT = _Lines(eventlog.type_pattern([schema.AGENT_DELTA]) + rb"[^\n]*")
_RESOURCES = _Lines(eventlog.type_pattern([schema.RESOURCES]) + rb"[^\n]*")


def _train_log(exp: int) -> _Lines:
    return _Lines(eventlog.type_pattern({schema.TRAIN_LOG: exp}) + rb"[^\n]*")


@dataclass(frozen=True)
class Moment:
    """One of the loop's own events: where it starts and ends in the file, and the event."""

    offset: int
    end: int  # offset just after its line: the position once it is applied
    event: dict

    @property
    def t(self) -> float:
        return float(self.event.get("t") or 0.0)


class ReplayLog:
    """The index of one log file, read once when it is opened (whole lines only)."""

    def __init__(self, path: Path, on_warning: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.on_warning = on_warning
        self.bad_lines = 0
        with open(self.path, "rb") as f:
            size = f.seek(0, 2)
            self._data: bytes | mmap.mmap = (
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b"")
        last = self._data.rfind(b"\n")
        self.size = last + 1  # a torn last line is not part of the replay
        if self.size < len(self._data):
            self._warn("ignored a partial last line")
        self.moments: list[Moment] = []
        for begin, line in _STRUCTURAL.find(self._data, 0, self.size):
            event = eventlog.parse_line(line)
            if event is None:
                if line.strip():
                    self.bad_lines += 1
                continue
            self.moments.append(Moment(begin, begin + len(line) + 1, event))
        if self.bad_lines:
            self._warn(f"skipped {self.bad_lines} line(s) that are not valid events")
        self._ends = [m.end for m in self.moments]
        self.experiments: dict[int, int] = {}  # experiment -> offset of its first own event
        for moment in self.moments:
            exp = moment.event.get("exp")
            if isinstance(exp, int) and exp not in self.experiments:
                self.experiments[exp] = moment.offset

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(f"{self.path}: {message}")

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    # --- positions ---------------------------------------------------------------------------

    @property
    def start(self) -> int:
        """The first position worth showing: just after the session's first event."""
        return self.moments[0].end if self.moments else 0

    def experiment_numbers(self) -> list[int]:
        return sorted(self.experiments)

    def moment_after(self, offset: int) -> Moment | None:
        """The first of the loop's events that ends after `offset`."""
        i = bisect_right(self._ends, offset)
        return self.moments[i] if i < len(self.moments) else None

    # --- reading -----------------------------------------------------------------------------

    def events_from(self, offset: int) -> Iterator[tuple[dict, int]]:
        """(event, position after it) for every valid event from `offset` to the end, in order."""
        while offset < self.size:
            end = self._data.find(b"\n", offset, self.size)
            event = eventlog.parse_line(self._data[offset:end])
            offset = end + 1
            if event is not None:
                yield event, offset

    def state_at(self, offset: int) -> DashboardState:
        """The dashboard's state with every event before `offset` applied (a line start)."""
        offset = min(max(0, offset), self.size)
        chosen: dict[int, bytes] = {}
        i = bisect_right(self._ends, offset)
        moments = self.moments[:i]
        stream = [(m.offset, m.event) for m in moments]
        merged = self._agent_text(stream, moments, offset)
        self._add_resources(chosen, offset)
        for exp in self._curve_experiments(moments, offset):
            start = self.experiments.get(exp, 0)
            chosen.update(_train_log(exp).find(self._data, start, offset))
        if offset:  # the last event sets the clock (`updated`): it must be applied too
            begin = self._data.rfind(b"\n", 0, offset - 1) + 1
            line = self._data[begin:offset - 1]
            if not _AGENT.all(line + b"\n", 0, len(line) + 1) and \
                    (not moments or moments[-1].offset != begin):
                chosen.setdefault(begin, line)  # not one added already
        for begin, line in chosen.items():
            event = eventlog.parse_line(line)
            if event is not None:
                stream.append((begin, event))
        stream.sort(key=lambda item: item[0])
        state = DashboardState()
        for _, event in stream:
            state.apply(event)
        state.agent_total += merged
        return state

    def _agent_text(self, stream: list[tuple[int, dict]], moments: list[Moment],
                    offset: int) -> int:
        """Add the agent's text before `offset` to `stream`. The newest AGENT_CHUNKS deltas go
        in one by one, as the reasoning pane shows them; older deltas of one experiment with
        none of the loop's events between them go in as one event, which leaves every
        experiment's reasoning the same. Deltas are placed at the start of the stretch between
        two of the loop's events that holds them (the streams in that stretch do not touch the
        agent's text). Returns how many deltas were merged away."""
        lines: list[bytes] = []
        where: list[int] = []  # the stretch's start, for each line
        for k in range(len(moments) + 1):
            begin = moments[k - 1].end if k else 0
            end = moments[k].offset if k < len(moments) else offset
            if end > begin:
                found = _AGENT.all(self._data, begin, end)
                lines += found
                where += [begin] * len(found)
        keep_from = len(lines) - AGENT_CHUNKS
        merged = 0
        run: list = []  # [stretch, event, texts]

        def close() -> None:
            nonlocal merged
            if run:
                begin, event, texts = run
                stream.append((begin, {**event, "text": "".join(texts)}))
                merged += len(texts) - 1
                run.clear()

        for i, (begin, event) in enumerate(zip(where, eventlog.parse_lines(lines), strict=True)):
            if event is None:
                continue
            text = event.get("text")
            if i >= keep_from or not isinstance(text, str):
                close()
                stream.append((begin, event))
            elif run and run[0] == begin and run[1].get("exp") == event.get("exp"):
                run[1] = event  # the latest delta's time and fields, the texts joined
                run[2].append(text)
            else:
                close()
                run.extend([begin, event, [text]])
        close()
        return merged


    def _add_resources(self, chosen: dict[int, bytes], offset: int) -> None:
        """The last HISTORY resource samples before `offset` (all the sparklines can show)."""
        window = RESOURCE_WINDOW
        while True:
            begin = max(0, offset - window)
            begin = self._data.find(b"\n", begin - 1) + 1 if begin else 0  # a line start
            found = list(_RESOURCES.find(self._data, begin, offset))
            if len(found) >= HISTORY or begin == 0:
                break
            window *= 2
        chosen.update(found[-HISTORY:])

    def _curve_experiments(self, moments: list[Moment], offset: int) -> set[int]:
        """Experiments whose loss curve a pane may draw at this point: those running, the best
        one, and the latest ones that logged training (shown between runs)."""
        probe = DashboardState()
        for moment in moments:
            probe.apply(moment.event)
        wanted = set(probe.in_flight)
        if probe.best_exp is not None:
            wanted.add(probe.best_exp)
        started = [m.event["exp"] for m in moments if m.event.get("type") == schema.EXP_START
                   and isinstance(m.event.get("exp"), int)]
        for n in reversed(started):
            wanted.add(n)
            if next(_train_log(n).find(self._data, self.experiments.get(n, 0), offset), None):
                break
        return wanted

