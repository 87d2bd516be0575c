"""`ratchet import`: an autoresearch run (results.tsv + its git history) as Ratchet sessions.

A file every run appended to holds several sessions, each beginning at its baseline row; each
becomes a session of its own (`split_sessions`), named after the file's path and its rows, so
that no import takes another's place. Columns are found by header name and extra ones are kept
in each `exp_end` as `row`. Commit times
stand in for the timings autoresearch does not log: an experiment starts at its commit and ends
at the next one. Commits that git no longer has (a discarded change, garbage-collected) are
tolerated: no diff, and their times are interpolated between their neighbours.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git

from ratchet.engine.loop import results_tsv
from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.protocol.events import EventLog
from ratchet.engine.workspace import layout

RESULTS = "results.tsv"
MAX_DIFF_CHARS = 200_000  # a diff beyond this is cut: the log is read whole by every view
_SHA = re.compile(r"^[0-9a-fA-F]{4,40}$")
_BASELINE = re.compile(r"\s*baseline\b", re.IGNORECASE)  # a description that starts a session


class ImportFailed(Exception):
    """The path cannot be imported; one line."""


@dataclass
class Commit:
    sha: str
    time: float
    diff: str


def _results_file(path: Path) -> Path:
    path = path.expanduser().resolve()
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        raise ImportFailed(f"no {RESULTS} at {path}; give an autoresearch checkout or a "
                           f"results file")
    return path


def _open_repo(folder: Path) -> git.Repo | None:
    try:
        return git.Repo(folder, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _branch_commits(repo: git.Repo) -> dict[str, git.Commit]:
    """The current branch's history by full sha; empty for a repository with no commits."""
    try:
        return {c.hexsha: c for c in repo.iter_commits("HEAD")}
    except (git.GitCommandError, ValueError):
        return {}


def _find_commit(repo: git.Repo | None, history: dict[str, git.Commit],
                 short: str) -> Commit | None:
    if repo is None or not _SHA.match(short):
        return None
    found = next((c for sha, c in history.items() if sha.startswith(short.lower())), None)
    if found is None:  # a discarded change: git may still hold it off the branch
        try:
            found = repo.commit(short)
        except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
            return None
    diff = ""
    if found.parents:
        try:
            diff = repo.git.diff(found.parents[0].hexsha, found.hexsha)[:MAX_DIFF_CHARS]
        except git.GitCommandError:
            diff = ""
    return Commit(found.hexsha, float(found.committed_date), diff)


def _interpolate(times: list[float | None]) -> list[float | None]:
    """Fill gaps linearly between known times; ends beyond the known ones take a mean step."""
    known = [(i, t) for i, t in enumerate(times) if t is not None]
    if not known:
        return list(times)
    filled = list(times)
    step = ((known[-1][1] - known[0][1]) / (known[-1][0] - known[0][0])
            if len(known) > 1 and known[-1][0] != known[0][0] else 300.0)
    step = step if step > 0 else 300.0
    for i, t in enumerate(times):
        if t is not None:
            continue
        before = next(((j, u) for j, u in reversed(known) if j < i), None)
        after = next(((j, u) for j, u in known if j > i), None)
        if before and after:
            share = (i - before[0]) / (after[0] - before[0])
            filled[i] = before[1] + (after[1] - before[1]) * share
        elif before:
            filled[i] = before[1] + step * (i - before[0])
        else:
            filled[i] = after[1] - step * (after[0] - i)
    return filled


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def destination(path: Path, workspace_dir: Path | None) -> Path:
    """The runs folder to import into: -C's workspace, the current one, or PATH/runs/."""
    if workspace_dir is not None:
        return layout.find(workspace_dir).runs_dir()
    try:
        return layout.find().runs_dir()
    except layout.WorkspaceError:
        source = path.expanduser().resolve()
        if source.is_dir():
            return source / "runs"
        repo = _open_repo(source.parent)
        if repo is None:  # a lone results file: no checkout to keep the session beside it
            raise ImportFailed(f"{path} is not in a git checkout or a workspace; import it "
                               f"into a workspace with -C DIR") from None
        return Path(repo.working_tree_dir) / "runs"


def _exclude_runs(folder: Path) -> None:
    """Keep `runs/` out of `git status` in a checkout that is not a Ratchet layout."""
    repo = _open_repo(folder)
    if repo is None or Path(repo.working_tree_dir).resolve() != folder.resolve():
        return
    exclude = Path(repo.git_dir) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if "runs/" not in lines:
        with open(exclude, "a") as f:
            f.write(("\n" if lines and lines[-1] else "") + "runs/\n")


def _read_rows(tsv: Path, on_warning: Callable[[str], None] | None) -> list[dict[str, str]]:
    """The file's rows up to its last whole line: a torn last row (a run killed mid-write) is
    left out, with one warning."""
    rows = results_tsv.read(tsv)
    data = tsv.read_bytes()
    if rows and data and not data.endswith(b"\n"):
        rows.pop()
        if on_warning is not None:
            on_warning(f"{tsv}: ignored a partial last line")
    return rows



@dataclass
class Part:
    """One session of a results file: its rows, the first `baselines` of them baseline runs."""

    rows: list[dict[str, str]]
    baselines: int = 0
    measured: bool = False  # one of its baseline runs has a value


def _value(row: dict[str, str]) -> float | None:
    """The row's val_bpb, or None for a crash (autoresearch logs those as 0.000000)."""
    val = _float(row.get("val_bpb", ""))
    crashed = row.get("status", "").strip().lower() == "crash" or val is None or val <= 0.0
    return None if crashed else val


def split_sessions(rows: list[dict[str, str]]) -> list[Part]:
    """The sessions a results file holds, in order.

    A session begins with its baseline runs: every row up to the first one with a value, and
    the rows right after that whose description begins with "baseline" (Ratchet's other
    baseline seeds). A new session begins at a header line repeated, or at a row whose
    description begins with "baseline" once the current session has had a candidate.
    """
    parts: list[Part] = []
    current: Part | None = None
    for row in rows:
        if all(row.get(c, "").strip() == c for c in ("val_bpb", "status")):
            current = None  # a header again: what follows is a session of its own
            continue
        says_baseline = bool(_BASELINE.match(row.get("description", "")))
        if current is None or (says_baseline and current.baselines < len(current.rows)):
            current = Part([])
            parts.append(current)
        if current.baselines == len(current.rows) and (says_baseline or not current.measured):
            current.baselines += 1
            current.measured = current.measured or _value(row) is not None
        current.rows.append(row)
    return parts


def session_name(tsv: Path, rows: list[dict[str, str]], start: float) -> str:
    """`<start>-import-<folder>[-<file>]-<hash>`: the hash, of the file's path and the
    session's rows, keeps imports of different files (or sessions) apart."""
    label = tsv.parent.name or "results"
    if tsv.stem != "results":
        label += f"-{tsv.stem}"
    digest = hashlib.sha256("\n".join([str(tsv), *("\t".join(r.values()) for r in rows)])
                            .encode()).hexdigest()[:8]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start))
    return f"{stamp}-import-{re.sub(r'[^A-Za-z0-9_.-]+', '-', label)[:40]}-{digest}"


def _source_of(folder: Path) -> str | None:
    """The results file an imported session came from; None for a session Ratchet ran."""
    first = next(events.iter_events(folder / "events.jsonl"), {})
    return first.get("source") if first.get("imported") else None


def import_run(path: Path, runs: Path, force: bool = False,
               on_warning: Callable[[str], None] | None = None) -> tuple[Path, int]:
    """Write the file's sessions; returns the last one's folder and experiments. A file that
    holds several sessions says so (and names the others) through `on_warning`."""
    written = import_sessions(path, runs, force, on_warning)
    if len(written) > 1 and on_warning is not None:
        others = ", ".join(f"{folder.name} ({n})" for folder, n in written[:-1])
        on_warning(f"{_results_file(path)} holds {len(written)} sessions (each begins at its "
                   f"baseline row); the earlier ones are imported as {others}")
    return written[-1]


def import_sessions(path: Path, runs: Path, force: bool = False,
                    on_warning: Callable[[str], None] | None = None) -> list[tuple[Path, int]]:
    """Write one session for each the file holds (`split_sessions`); returns each one's folder
    and number of experiments, oldest first."""
    tsv = _results_file(path)
    rows = _read_rows(tsv, on_warning)
    if not rows:
        raise ImportFailed(f"{tsv} has no rows")
    missing = [c for c in ("val_bpb", "status") if c not in rows[0]]
    if missing:
        raise ImportFailed(f"{tsv} lacks the column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (found: {', '.join(rows[0])})")
    parts = split_sessions(rows)
    if not parts:
        raise ImportFailed(f"{tsv} has no rows")
    earlier = [f for f in paths.sessions(runs) if _source_of(f) == str(tsv)]
    if earlier and not force:
        raise ImportFailed(f"{tsv} is already imported as session {earlier[-1].name}; "
                           f"add --force to import it again in its place")
    repo = _open_repo(tsv.parent)
    history = _branch_commits(repo) if repo is not None else {}
    rows = [row for part in parts for row in part.rows]
    commits = [_find_commit(repo, history, row.get("commit", "").strip()) for row in rows]
    times, ends = _timeline(tsv, commits)
    cut, folders = 0, []
    for part in parts:
        span = slice(cut, cut + len(part.rows))
        cut = span.stop
        folder = runs / session_name(tsv, part.rows, times[span][0])
        other = _source_of(folder) if (folder / "events.jsonl").exists() else str(tsv)
        if other is None:
            raise ImportFailed(f"session {folder.name} in {runs} is a run, not an import; "
                               f"move it away to import {tsv}")
        if other != str(tsv) and not force:
            raise ImportFailed(f"session {folder.name} in {runs} holds an import of {other}, "
                               f"not {tsv}; add --force to replace it")
        found = [c for c in commits[span] if c is not None]
        timing = "none" if not any(commits) else (
            "commits" if len(found) == len(part.rows) else "interpolated")
        folders.append((folder, part, commits[span], times[span], ends[span], timing))
    for folder in earlier:
        shutil.rmtree(folder, ignore_errors=True)
    written = []
    try:
        for folder, part, *timeline in folders:
            _fresh(folder, runs)
            written.append(folder)
            _write(folder / "events.jsonl", tsv, part, *timeline, repo)
    except BaseException:
        for folder in written:  # no half-imported file left behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return [(folder, len(part.rows)) for folder, part, *_ in folders]


def _timeline(tsv: Path, commits: list[Commit | None]) -> tuple[list[float], list[float]]:
    """Each row's start and end: its commit's time and the next one's."""
    times = _interpolate([c.time if c else None for c in commits])
    if not any(commits):  # order is all we know; the file's time anchors the last one
        end = tsv.stat().st_mtime
        times = [end - 300.0 * (len(commits) - i) for i in range(len(commits))]
    for i in range(1, len(times)):  # rewritten history can misorder commit times
        times[i] = max(times[i], times[i - 1])
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 300.0
    return times, times[1:] + [times[-1] + (step if step > 0 else 300.0)]


def _fresh(folder: Path, runs: Path) -> None:
    try:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        _exclude_runs(runs.parent)
    except OSError as exc:
        raise ImportFailed(f"cannot write the session to {runs}: {exc.strerror or exc}; "
                           f"import into a workspace with -C DIR") from None


def _write(path: Path, tsv: Path, part: Part, commits, times, ends, timing, repo) -> None:
    log = EventLog(path)
    rows = part.rows
    branch = ""
    if repo is not None and not repo.head.is_detached:
        branch = repo.active_branch.name
    base = commits[0].sha if commits[0] else rows[0].get("commit", "")
    best, best_commit, baseline = None, "", []
    kept = 0
    try:
        def emit(t: float, type_: str, exp: int | None = None, **fields) -> None:
            log.record({"t": t, "type": type_, **({"exp": exp} if exp is not None else {}),
                        **fields})

        emit(times[0], schema.SESSION_START, session=path.parent.name, tag=path.parent.name,
             branch=branch, base_commit=base, config={}, hardware={}, agent="autoresearch",
             resumed=False, pid=0, imported=True, source=str(tsv), timing=timing,
             columns=list(rows[0]))
        for n, (row, commit, start, end) in enumerate(zip(rows, commits, times, ends,
                                                          strict=True), start=1):
            description = row.get("description", "")
            val = _value(row)
            kind = "baseline" if n <= part.baselines else "candidate"
            sha = commit.sha if commit else row.get("commit", "")
            if kind == "candidate":
                emit(start, schema.PROPOSAL, exp=n, description=description, rationale="",
                     diff=commit.diff if commit else None, files=["train.py"],
                     based_on="", changes={}, steer=[])
            emit(start, schema.EXP_START, exp=n, kind=kind, commit=sha, seed=None, budget=None,
                 description=description)
            if kind == "baseline":
                decision = schema.BASELINE
            elif val is None:
                decision = schema.CRASH
            else:
                keep = row.get("status", "").strip().lower() == "keep"
                decision = schema.KEEP if keep else schema.DISCARD
            # the best so far: the baseline runs' mean, then the best kept row (a kept row
            # worse than it, say a simplification, leaves it where it is)
            new_best = val if best is None or val is None else min(best, val)
            memory = _float(row.get("memory_gb", ""))
            emit(end, schema.EXP_END, exp=n, kind=kind, status="crash" if val is None else "ok",
                 decision=decision, val_bpb=val, best_before=best,
                 delta=val - best if val is not None and best is not None
                 and kind == "candidate" else None, margin=None,
                 commit=sha, description=description, changes={},
                 result={"metric_source": "self_reported",
                         "peak_memory_mb": memory * 1024 if memory is not None else None,
                         "error": "crashed (as logged in results.tsv)" if val is None else "",
                         "tail": ""},
                 row=row, **({"new_best": new_best} if decision == schema.KEEP else {}))
            if val is not None and kind == "baseline":
                baseline.append(val)
                best, best_commit = statistics.mean(baseline), best_commit or sha
            elif decision == schema.KEEP:
                best, best_commit = new_best, sha  # autoresearch's branch moves to every keep
                kept += 1
        emit(ends[-1], schema.SESSION_END, reason="imported", experiments=len(rows), kept=kept,
             best_bpb=best, baseline_bpb=statistics.mean(baseline) if baseline else None,
             best_commit=best_commit)
    finally:
        log.close()
