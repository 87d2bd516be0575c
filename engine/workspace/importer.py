"""`ratchet import`: an autoresearch run (results.tsv + its git history) as a Ratchet session.

Columns are found by header name and extra ones are kept in each `exp_end` as `row`. Commit times
stand in for the timings autoresearch does not log: an experiment starts at its commit and ends
at the next one. Commits that git no longer has (a discarded change, garbage-collected) are
tolerated: no diff, and their times are interpolated between their neighbours.
"""

from __future__ import annotations

import re
import shutil
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


def _previous_imports(runs: Path, source: Path) -> list[Path]:
    ws = layout.Workspace(runs.parent)
    found = []
    for folder in paths.sessions(ws.runs_dir()):
        first = next(events.iter_events(folder / "events.jsonl"), {})
        if first.get("imported") and first.get("source") == str(source):
            found.append(folder)
    return found


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


def import_run(path: Path, runs: Path, force: bool = False,
               on_warning: Callable[[str], None] | None = None) -> tuple[Path, int]:
    """Write the session; returns its folder and the number of experiments imported."""
    tsv = _results_file(path)
    rows = _read_rows(tsv, on_warning)
    if not rows:
        raise ImportFailed(f"{tsv} has no rows")
    missing = [c for c in ("val_bpb", "status") if c not in rows[0]]
    if missing:
        raise ImportFailed(f"{tsv} lacks the column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (found: {', '.join(rows[0])})")
    previous = _previous_imports(runs, tsv)
    if previous and not force:
        raise ImportFailed(f"{tsv} is already imported as session {previous[-1].name}; "
                           f"add --force to import it again in its place")
    repo = _open_repo(tsv.parent)
    history = _branch_commits(repo) if repo is not None else {}
    commits = [_find_commit(repo, history, row.get("commit", "").strip()) for row in rows]
    times = _interpolate([c.time if c else None for c in commits])
    timing = "commits" if all(c is not None for c in commits) else (
        "interpolated" if any(c is not None for c in commits) else "none")
    if timing == "none":  # order is all we know; the file's time anchors the last one
        end = tsv.stat().st_mtime
        times = [end - 300.0 * (len(rows) - i) for i in range(len(rows))]
    for i in range(1, len(times)):  # rewritten history can misorder commit times
        times[i] = max(times[i], times[i - 1])
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 300.0
    ends = times[1:] + [times[-1] + (step if step > 0 else 300.0)]

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", (tsv.parent.name or "results"))[:40]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(times[0]))
    folder = previous[-1] if previous else runs / f"{stamp}-import-{name}"
    try:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        _exclude_runs(runs.parent)
    except OSError as exc:
        raise ImportFailed(f"cannot write the session to {runs}: {exc.strerror or exc}; "
                           f"import into a workspace with -C DIR") from None
    try:
        _write(folder / "events.jsonl", tsv, rows, commits, times, ends, timing, repo)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-imported session left behind
        raise
    return folder, len(rows)


def _write(path: Path, tsv: Path, rows, commits, times, ends, timing, repo) -> None:
    log = EventLog(path)
    branch = ""
    if repo is not None and not repo.head.is_detached:
        branch = repo.active_branch.name
    base = commits[0].sha if commits[0] else rows[0].get("commit", "")
    best, best_commit = None, ""
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
            status_text = row.get("status", "").strip().lower()
            val = _float(row.get("val_bpb", ""))
            crashed = status_text == "crash" or val is None or val <= 0.0
            val = None if crashed else val
            kind = "baseline" if n == 1 else "candidate"
            sha = commit.sha if commit else row.get("commit", "")
            if kind == "candidate":
                emit(start, schema.PROPOSAL, exp=n, description=description, rationale="",
                     diff=commit.diff if commit else None, files=["train.py"],
                     based_on="", changes={}, steer=[])
            emit(start, schema.EXP_START, exp=n, kind=kind, commit=sha, seed=None, budget=None,
                 description=description)
            if kind == "baseline":
                decision = schema.BASELINE
            elif crashed:
                decision = schema.CRASH
            else:
                decision = schema.KEEP if status_text == "keep" else schema.DISCARD
            delta = val - best if val is not None and best is not None and n > 1 else None
            memory = _float(row.get("memory_gb", ""))
            emit(end, schema.EXP_END, exp=n, kind=kind, status="crash" if crashed else "ok",
                 decision=decision, val_bpb=val, best_before=best, delta=delta, margin=None,
                 commit=sha, description=description, changes={},
                 result={"metric_source": "self_reported",
                         "peak_memory_mb": memory * 1024 if memory is not None else None,
                         "error": "crashed (as logged in results.tsv)" if crashed else "",
                         "tail": ""},
                 row=row)
            if val is not None and decision in (schema.BASELINE, schema.KEEP):
                best, best_commit = val, sha  # autoresearch's branch moves to every keep
                kept += decision == schema.KEEP
        emit(ends[-1], schema.SESSION_END, reason="imported", experiments=len(rows), kept=kept,
             best_bpb=best, baseline_bpb=_float(rows[0].get("val_bpb", "")),
             best_commit=best_commit)
    finally:
        log.close()
