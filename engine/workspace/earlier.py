"""Memory across sessions: every experiment and journal note of a workspace's earlier sessions.

Each session's log folds (`state`) into its history and journal; `read` gathers them for every
session under `runs/` but the current one, oldest session first, imported autoresearch sessions
included, each entry and note tagged with its session (`HistoryEntry.session`). The agents read
them (`Context.earlier`): the Claude agents as a compact table and through their tools, the
offline agent as earlier observations of the same constants. A study's session (`ratchet
validate`, `ratchet ablate`) has no experiments of its own: what it concluded is kept instead
(`Earlier.studies`), which kinds of change held at longer budgets and which still mattered.

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

from ratchet.engine.protocol import events, paths, schema, study_log
from ratchet.engine.protocol import state as statemod
from ratchet.engine.protocol.history import HistoryEntry, JournalNote, StudyNote

CACHE = "memory.json"
CACHE_VERSION = 2
FAILED_TAIL_CHARS = 1500  # of a failed run's output tail kept; an ok run's tail is left out

# Lines of these types never change a session's history or journal: skipped unparsed.
_SKIPPED = events.type_pattern({schema.TRAIN_LOG: events.ANY, schema.AGENT_DELTA: None,
                                schema.RESOURCES: None, schema.PHASE: None,
                                schema.AGENT_USAGE: None, schema.AGENT_RETRY: None})
_FIRST = re.compile(rb"(?!" + _SKIPPED + rb")[^\n]+")
_REST = re.compile(rb"\n((?!" + _SKIPPED + rb")[^\n]+)")

Warn = Callable[[str], None]


@dataclass
class Memory:
    """One session's share: its experiments and notes, or what it concluded if a study."""

    entries: list[HistoryEntry] = field(default_factory=list)
    journal: list[JournalNote] = field(default_factory=list)
    study: StudyNote | None = None


@dataclass
class Earlier:
    """The earlier sessions of a workspace, as the agents read them."""

    entries: list[HistoryEntry] = field(default_factory=list)  # oldest session first
    journal: list[JournalNote] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)  # their ids, oldest first
    studies: list[StudyNote] = field(default_factory=list)  # oldest first
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
            memory = session_memory(folder, on_warning, cache)
        except Exception as exc:  # noqa: BLE001 - one odd log never costs the session its start
            if on_warning is not None:
                on_warning(f"{folder}: left out of the earlier sessions: {exc}")
            continue
        if memory.entries or memory.journal:
            found.sessions.append(folder.name)
            found.entries.extend(memory.entries)
            found.journal.extend(memory.journal)
        if memory.study is not None:
            found.studies.append(memory.study)
    return found


def session_memory(folder: Path, on_warning: Warn | None = None, cache: bool = True) -> Memory:
    """One session's experiments and notes (or study), tagged with its id: from the cache
    beside its log while that is current, else folded from the log (and cached)."""
    log = folder / paths.EVENTS
    try:
        stat = log.stat()
    except OSError:
        return Memory()
    key = {"version": CACHE_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if cache:
        cached = _load_cache(folder / CACHE, key, folder.name)
        if cached is not None:
            return cached
    memory = fold_log(log, folder.name, on_warning)
    if cache:
        _save_cache(folder / CACHE, key, memory)
    return memory


def fold_log(log: Path, session: str, on_warning: Warn | None = None) -> Memory:
    """The history and journal a log folds to, from its loop events only (see the module's
    docstring), each tagged with `session`; a study's log, what it concluded."""
    try:
        with open(log, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) \
                if size else b""
    except OSError:
        return Memory()
    try:
        end = data.rfind(b"\n") + 1  # a torn last line (an engine killed mid-write) is left out
        lines = _REST.findall(data, 0, end)
        first = _FIRST.match(data, 0, end)
        if first is not None:
            lines.insert(0, first.group())
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    state, study = statemod.LoopState(), study_log.StudyLog()
    bad = 0
    for event in events.parse_lines(lines):
        if event is None:
            bad += 1
        else:
            statemod.apply(state, event)
            study_log.apply(study, event)
    if bad and on_warning is not None:
        on_warning(f"{log}: skipped {bad} line{'s' if bad != 1 else ''} that "
                   f"{'are' if bad != 1 else 'is'} not a valid event")
    for entry in state.history:
        _tidy(entry)
        entry.session = session
    for note in state.journal:
        note.session = session
    if study.study in schema.STUDIES:
        return Memory(study=conclusions(study, session))
    return Memory(state.history, state.journal)


# a study_result's fields an agent reads (its per-seed differences are left out)
READING_FIELDS = ("study", "multiple", "budget", "effect", "se", "runs", "verdict", "trend",
                  "change", "description", "flag", "why", "pruned", "no_worse", "branch")


def conclusions(study: study_log.StudyLog, session: str) -> StudyNote:
    """A study's latest reading of each group: per budget, per change, and of the pruning."""
    latest: dict[object, dict] = {}
    for event in study.results:
        group = event.get("multiple") if study.study == schema.STUDY_VALIDATE else \
            event.get("change", "pruned")
        latest[group] = {k: event[k] for k in READING_FIELDS if k in event}
    planned = len(study.multiples) if study.study == schema.STUDY_VALIDATE else \
        len(study.changes)
    complete = study.ended and study.end_reason == schema.STOP_COMPLETE
    return StudyNote(session, study.study, str(study.plan.get("of") or ""),
                     list(latest.values()), complete or len(latest) >= planned > 0)


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


def _load_cache(path: Path, key: dict, session: str) -> Memory | None:
    """The cached fold, if it is of this very log; None when missing, stale or unreadable."""
    try:
        found = json.loads(path.read_bytes())
        if not isinstance(found, dict) or any(found.get(k) != v for k, v in key.items()):
            return None
        entries = [HistoryEntry(**{**e, "session": session}) for e in found["entries"]]
        notes = [JournalNote(**{**n, "session": session}) for n in found["journal"]]
        study = found.get("study")
        study = StudyNote(**{**study, "session": session}) if study is not None else None
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    return Memory(entries, notes, study)


def _save_cache(path: Path, key: dict, memory: Memory) -> None:
    """Written whole or not at all (a temporary file renamed); a folder that cannot be written
    goes without (the log is folded again next time)."""
    body = {**key, "entries": [asdict(e) for e in memory.entries],
            "journal": [asdict(n) for n in memory.journal],
            "study": asdict(memory.study) if memory.study is not None else None}
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
