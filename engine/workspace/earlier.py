"""Memory across sessions: every experiment and journal note of a workspace's earlier sessions.

Each session's log folds (`state`) into its history and journal; `read` gathers them for every
session under `runs/` but the current one, oldest session first, imported autoresearch sessions
included, each entry and note tagged with its session (`HistoryEntry.session`). The agents read
them (`Context.earlier`): the Claude agents as a compact table and through their tools, the
offline agent as earlier observations of the same constants.

Only the loop's own events are parsed: the streams (training logs, agent text, resource samples,
phases), almost all of a log, are skipped by a regular expression without decoding them. Bad
lines and a torn last line are skipped as every reader skips them. What a log folds to is cached
beside it (`memory.json`), valid while the log keeps its size and modification time, so a
workspace of hundreds of nights opens in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import git

from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.protocol.history import HistoryEntry, JournalNote

CACHE = "memory.json"
CACHE_VERSION = 1
FAILED_TAIL_CHARS = 1500  # of a failed run's output tail kept; an ok run's tail is left out

# Lines of these types never change a session's history or journal: skipped unparsed.
_SKIPPED = events.type_pattern({schema.TRAIN_LOG: events.ANY, schema.AGENT_DELTA: None,
                                schema.RESOURCES: None, schema.PHASE: None,
                                schema.AGENT_USAGE: None, schema.AGENT_RETRY: None})
_FIRST = re.compile(rb"(?!" + _SKIPPED + rb")[^\n]+")
_REST = re.compile(rb"\n((?!" + _SKIPPED + rb")[^\n]+)")

Warn = Callable[[str], None]


@dataclass
class Earlier:
    """The earlier sessions of a workspace, as the agents read them."""

    entries: list[HistoryEntry] = field(default_factory=list)  # oldest session first
    journal: list[JournalNote] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)  # their ids, oldest first
    root: Path | None = None  # the workspace's git repository, for `files_at`

    def files_at(self, commits: Iterable[str], name: str) -> dict[str, str]:
        """The text of file `name` at each of these commits that git still has (a discarded
        candidate's commit is on no branch and may have been collected)."""
        return files_at(self.root, commits, name) if self.root is not None else {}


def read(runs: Path, exclude: str = "", root: Path | None = None,
         on_warning: Warn | None = None, cache: bool = True) -> Earlier:
    """Every session under `runs` but `exclude` (the current one), oldest first; `root` is the
    repository their commits are in (the folder holding `runs` by default)."""
    found = Earlier(root=Path(root) if root is not None else Path(runs).parent)
    try:
        folders = paths.sessions(Path(runs))
    except OSError:
        return found
    for folder in folders:
        if folder.name == exclude:
            continue
        try:
            entries, notes = session_memory(folder, on_warning, cache)
        except Exception as exc:  # noqa: BLE001 - one odd log never costs the session its start
            if on_warning is not None:
                on_warning(f"{folder}: left out of the earlier sessions: {exc}")
            continue
        if entries or notes:
            found.sessions.append(folder.name)
            found.entries.extend(entries)
            found.journal.extend(notes)
    return found


def session_memory(folder: Path, on_warning: Warn | None = None,
                   cache: bool = True) -> tuple[list[HistoryEntry], list[JournalNote]]:
    """One session's experiments and notes, tagged with its id: from the cache beside its log
    while that is current, else folded from the log (and cached)."""
    log = folder / paths.EVENTS
    try:
        stat = log.stat()
    except OSError:
        return [], []
    key = {"version": CACHE_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if cache:
        cached = _load_cache(folder / CACHE, key, folder.name)
        if cached is not None:
            return cached
    entries, notes = fold_log(log, folder.name, on_warning)
    if cache:
        _save_cache(folder / CACHE, key, entries, notes)
    return entries, notes


def fold_log(log: Path, session: str,
             on_warning: Warn | None = None) -> tuple[list[HistoryEntry], list[JournalNote]]:
    """The history and journal a log folds to, from its loop events only (see the module's
    docstring), each tagged with `session`."""
    try:
        with open(log, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) \
                if size else b""
    except OSError:
        return [], []
    try:
        end = data.rfind(b"\n") + 1  # a torn last line (an engine killed mid-write) is left out
        lines = _REST.findall(data, 0, end)
        first = _FIRST.match(data, 0, end)
        if first is not None:
            lines.insert(0, first.group())
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    state = statemod.LoopState()
    bad = 0
    for event in events.parse_lines(lines):
        if event is None:
            bad += 1
        else:
            statemod.apply(state, event)
    if bad and on_warning is not None:
        on_warning(f"{log}: skipped {bad} line{'s' if bad != 1 else ''} that "
                   f"{'are' if bad != 1 else 'is'} not a valid event")
    for entry in state.history:
        _tidy(entry)
        entry.session = session
    for note in state.journal:
        note.session = session
    return state.history, state.journal


def _tidy(entry: HistoryEntry) -> None:
    """Fields of the types every agent reads (a hand-edited or foreign log may hold others),
    and the result without what only its own session needed: an ok run's output tail goes, a
    failed run's is shortened to its end (where the error is)."""
    entry.description = entry.description if isinstance(entry.description, str) else ""
    entry.diff = entry.diff if isinstance(entry.diff, str) else ""
    entry.changes = entry.changes if isinstance(entry.changes, dict) else {}
    for name in ("status", "decision", "kind"):
        if not isinstance(getattr(entry, name), str):
            setattr(entry, name, "")
    result = dict(entry.result)
    tail = result.pop("tail", "")
    if entry.status != "ok" and isinstance(tail, str) and tail.strip():
        result["tail"] = tail[-FAILED_TAIL_CHARS:]
    entry.result = result


def _load_cache(path: Path, key: dict, session: str
                ) -> tuple[list[HistoryEntry], list[JournalNote]] | None:
    """The cached fold, if it is of this very log; None when missing, stale or unreadable."""
    try:
        found = json.loads(path.read_bytes())
        if not isinstance(found, dict) or any(found.get(k) != v for k, v in key.items()):
            return None
        entries = [HistoryEntry(**{**e, "session": session}) for e in found["entries"]]
        notes = [JournalNote(**{**n, "session": session}) for n in found["journal"]]
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    return entries, notes


def _save_cache(path: Path, key: dict, entries: list[HistoryEntry],
                notes: list[JournalNote]) -> None:
    """Written whole or not at all (a temporary file renamed); a folder that cannot be written
    goes without (the log is folded again next time)."""
    body = {**key, "entries": [asdict(e) for e in entries], "journal": [asdict(n) for n in notes]}
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps(body, separators=(",", ":"), allow_nan=False))
        os.replace(temporary, path)
    except (OSError, ValueError, TypeError):
        with contextlib.suppress(OSError):
            temporary.unlink()


def files_at(root: Path, commits: Iterable[str], name: str) -> dict[str, str]:
    """commit -> text of file `name` there, for each commit of the repository at `root` that
    has it; a repository of its own, so no other thread's git handle is shared."""
    wanted = sorted({c for c in commits if isinstance(c, str) and c})
    if not wanted:
        return {}
    try:
        repo = git.Repo(root)
    except (git.GitError, OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    try:
        for sha in wanted:
            try:
                blob = repo.commit(sha).tree / name
                found[sha] = blob.data_stream.read().decode("utf-8", errors="replace")
            except Exception:  # noqa: BLE001 - a commit or file git no longer has: left out
                continue
    finally:
        repo.close()
    return found
