"""The event log: one JSON object per line, appended by the engine, tailed by everything else.

The log is the single source of truth for a session (its types and fields in `schema`, explained
in docs/events.md). Writers only ever append whole lines; readers only ever consume whole lines,
so a reader racing the writer, or a log cut short by a killed engine, costs at most one line and
never the rest of the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from ratchet.engine.protocol import schema

CHUNK_BYTES = 1 << 16  # read size for readers; lines may span chunks


def _clean(value: Any) -> Any:
    """Replace non-finite floats by None, recursively, so every line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _default(value: Any) -> Any:
    """Last resort for values json cannot encode: numpy scalars by value, anything else as text.

    A field the engine did not expect must never cost the event (or crash a training thread).
    """
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _clean(item())
        except Exception:  # noqa: BLE001 - fall through to str()
            pass
    return str(value)


def _encode(event: dict) -> bytes:
    """One cleaned event as one line of strict JSON (ASCII, no NaN/Infinity), newline included."""
    text = json.dumps(event, separators=(",", ":"), allow_nan=False, default=_default)
    return text.encode("ascii") + b"\n"


class EventLog:
    """Append-only writer; safe to share between threads.

    Each line goes to the file in unbuffered writes. Where the disk has no room (ENOSPC), the
    part of a line not written yet is kept and written before anything else, so the file never
    holds a torn line followed by others; `on_full(event)`, if given, may make room (it returns
    True then) and the write is tried once more, else the error is raised. A line of which
    nothing was written is dropped with the error.
    """

    def __init__(self, path: Path,
                 on_full: Callable[[dict], bool] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.on_full = on_full
        self._lock = threading.Lock()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the log
        self._pending = b""  # the rest of a line the disk had no room for
        # An engine killed mid-write leaves a torn last line; end it so that it stays one bad
        # line and our first event starts on a line of its own.
        if os.fstat(self._file.fileno()).st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                self._pending = b"\n"
                with contextlib.suppress(OSError):  # a full disk: before the first event
                    self._drain()

    def append(self, type: str, exp: int | None = None, **fields: Any) -> dict:
        """Write one event and flush it, so tailing readers see it at once; return it as written.

        Non-finite floats are written (and returned) as None.
        """
        event: dict[str, Any] = {"t": time.time(), "type": type}
        if exp is not None:
            event["exp"] = exp
        event.update(fields)
        return self.record(event)

    def record(self, event: dict) -> dict:
        """Write an event that carries its own `t` (an import of a run from before Ratchet)."""
        event = _clean(dict(event))
        line = _encode(event)
        with self._lock:
            if self._file.closed:
                raise ValueError(f"event log {self.path} is closed")
            self._pending += line
            try:
                self._drain()
            except OSError as exc:
                if exc.errno != errno.ENOSPC or self.on_full is None or \
                        not self.on_full(event):
                    self._forget(line)
                    raise
                try:
                    self._drain()
                except OSError:
                    self._forget(line)
                    raise
        return event

    def _drain(self) -> None:
        while self._pending:
            written = os.write(self._file.fileno(), self._pending)
            self._pending = self._pending[written:]

    def _forget(self, line: bytes) -> None:
        """Drop `line` from what is pending if none of it was written (it was never begun)."""
        if len(self._pending) >= len(line) and self._pending.endswith(line):
            self._pending = self._pending[:-len(line)]

    def sync(self) -> None:
        """Force the log to disk (the engine calls this at experiment boundaries)."""
        with self._lock:
            if not self._file.closed:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                with contextlib.suppress(OSError):  # a line the disk had no room for
                    self._drain()
                with contextlib.suppress(OSError):
                    os.fsync(self._file.fileno())
                self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TextBatcher:
    """Batches streamed agent text into `agent_delta` events, so a token stream is not a line
    per token. Nothing runs in the background: text is written when an `add` finds the buffer
    due, and on `flush`, which the caller must call when the stream ends."""

    def __init__(
        self, log: EventLog, exp: int | None, interval: float = 0.1, max_chars: int = 2000
    ) -> None:
        self.log = log
        self.exp = exp
        self.interval = interval
        self.max_chars = max_chars
        self._parts: list[str] = []
        self._chars = 0
        self._since = 0.0  # monotonic time of the oldest buffered text
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            if not self._parts:
                self._since = time.monotonic()
            self._parts.append(text)
            self._chars += len(text)
            due = self._chars >= self.max_chars or time.monotonic() - self._since >= self.interval
            if due:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._chars = 0
            self.log.append(schema.AGENT_DELTA, self.exp, text=text)


def _scan(path: Path, offset: int) -> Iterator[tuple[dict | None, int]]:
    """Yield (event or None if the line is bad, offset after the line) for each whole line.

    Blank lines are skipped silently; a last line without its newline is not yielded.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        pending = b""
        while True:
            chunk = f.read(CHUNK_BYTES)
            if not chunk:
                return
            pending += chunk
            start = 0
            while True:
                end = pending.find(b"\n", start)
                if end < 0:
                    break
                line = pending[start:end]
                offset += end + 1 - start
                start = end + 1
                if line.strip():
                    yield parse_line(line), offset
            pending = pending[start:]


def parse_line(raw: bytes) -> dict | None:
    """One line of the log (its newline left off) as an event, or None when it is not a valid
    event: not a JSON object with a string `type`, or with a `t`, `exp` or metric field (`val_bpb`,
    `delta`, ...) of the wrong type (docs/events.md, "Bad lines")."""
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return None
    return event if isinstance(event, dict) and _well_typed(event) else None


def parse_lines(lines: Sequence[bytes]) -> list[dict | None]:
    """`parse_line` of every line, in one call to the JSON decoder (far faster than one by one,
    for readers that pick many lines out of a log); if a line is damaged, line by line, so that
    only that line is lost."""
    if not lines:
        return []
    try:
        parsed = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):
        return [parse_line(line) for line in lines]
    if len(parsed) != len(lines):  # a line that held two values: decode each on its own
        return [parse_line(line) for line in lines]
    return [e if isinstance(e, dict) and _well_typed(e) else None for e in parsed]


# --- finding lines by type, unparsed ---------------------------------------------------------
# EventLog writes compact JSON that begins `{"t":<number>,"type":"<type>"`, then `"exp":<n>` where
# the event has one, so the type (and experiment) of its lines is known from their first bytes.
_WRITTEN = rb'\{"t":[-+0-9.eE]+,"type":"'
ANY = "any"  # type_pattern: a type that matches with any experiment number


def type_pattern(types: Iterable[str] | Mapping[str, int | str | None]) -> bytes:
    """A regular expression (bytes, for `re`) that matches at the start of a line EventLog wrote
    whose `type` is one of `types`, so that a reader finds such lines in a whole log with one `re`
    call instead of parsing every line. `types` is a list of types, or a dict from a type to what
    its `exp` must be: None (anything, or none), an experiment number, or ANY (some number). The
    match never goes past the line's end; add `[^\n]*` for the whole line.

    A line that matches and is a valid event (`parse_line`) is of such a type (and experiment).
    A line in another layout (spacing, key order: a hand edit, another writer) matches nothing,
    so a reader that must see every such event also parses the lines that match none of its
    patterns (`(?!pattern)[^\n]+`); then a line's layout costs speed, never an event.
    """
    chosen = types if isinstance(types, Mapping) else dict.fromkeys(types)
    by_exp: dict[int | str | None, list[bytes]] = {}
    for name, exp in chosen.items():
        by_exp.setdefault(exp if exp in (None, ANY) else int(exp), []).append(
            re.escape(name.encode()))
    ways = []
    for exp, names in by_exp.items():
        after = (b'"' if exp is None else b'","exp":-?[0-9]' if exp == ANY else
                 b'","exp":' + str(exp).encode() + b"[,}]")
        ways.append(b"(?:" + b"|".join(names) + b")" + after)
    return _WRITTEN + b"(?:" + b"|".join(ways) + b")"


# Numeric fields every reader does arithmetic on (besides `t`); a hand-edited line that breaks
# them is a bad line, so no view ever fails on it.
_METRICS = frozenset(("val_bpb", "best_before", "delta", "margin", "new_best", "best_bpb",
                      "baseline_bpb", "total_cost_usd"))


def _well_typed(event: dict) -> bool:
    """A decoded object is an event: a string `type`, an integer `exp`, numeric metrics.

    Values come from the JSON decoder, so exact type checks suffice (and leave out bools)."""
    if type(event.get("type")) is not str:
        return False
    exp = event.get("exp")
    if exp is not None and type(exp) is not int:
        return False
    t = event.get("t")
    if t is not None and type(t) is not float and type(t) is not int:
        return False
    if _METRICS.isdisjoint(event):  # most events: checked without a loop
        return True
    for name in _METRICS.intersection(event):
        value = event[name]
        if value is not None and type(value) is not float and type(value) is not int:
            return False
    return True


def read_events(path: Path, offset: int = 0,
                limit: int | None = None) -> tuple[list[dict], int, int]:
    """Read the whole lines from byte `offset` on: (events, offset after them, bad lines skipped);
    at most `limit` lines when given, so a long backlog can be read a slice at a time.

    A partial last line (being written right now, or torn) is held back: the returned offset
    stays before it, so the next call reads it once it is complete.
    """
    events: list[dict] = []
    bad = 0
    for event, end in islice(_scan(Path(path), offset), limit):
        offset = end
        if event is None:
            bad += 1
        else:
            events.append(event)
    return events, offset, bad


def read_log(path: Path, on_warning: Callable[[str], None] | None = None,
             partial_ok: bool = False) -> list[dict]:
    """Every valid event of a whole log, for readers that take it in one go (ls, report, status).

    Bad lines are skipped and a torn last line is left out; either is reported once for the file
    through `on_warning` (a torn last line only unless `partial_ok`: a running engine may be
    writing it). A missing file reads as empty.
    """
    path = Path(path)
    try:
        found, offset, bad = read_events(path)
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    problems = []
    if bad:
        problems.append(f"skipped {bad} line{'s' if bad != 1 else ''} that "
                        f"{'are' if bad != 1 else 'is'} not a valid event")
    if size > offset and not partial_ok:
        problems.append("ignored a partial last line")
    if problems and on_warning is not None:
        on_warning(f"{path}: {'; '.join(problems)}")
    return found


def iter_events(path: Path) -> Iterator[dict]:
    """Every valid event from the start of the log, streamed; bad lines are skipped."""
    for event, _ in _scan(Path(path), 0):
        if event is not None:
            yield event


class LogTail:
    """Follows a log: each `poll()` returns only the events appended since the last one.

    A missing file reads as empty (the engine may not have created it yet); a file that shrank
    was replaced, and is read again from the start. The first bad line is reported once, through
    `on_warning` or else `warnings.warn`; all of them are counted in `bad_lines`.
    """

    def __init__(
        self,
        path: Path,
        offset: int = 0,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.offset = offset
        self.bad_lines = 0
        self.on_warning = on_warning
        self._warned = False

    def poll(self, limit: int | None = None) -> list[dict]:
        """The events appended since the last poll (at most `limit` of them)."""
        try:
            if self.path.stat().st_size < self.offset:
                self.offset = 0
            events, self.offset, bad = read_events(self.path, self.offset, limit)
        except FileNotFoundError:
            return []
        if bad:
            self.bad_lines += bad
            if not self._warned:
                self._warned = True
                message = f"{self.path}: skipped a line that is not a valid event"
                if self.on_warning is not None:
                    self.on_warning(message)
                else:
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
        return events
