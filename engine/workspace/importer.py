"""`ratchet import`: an autoresearch run (results.tsv + its git history) as Ratchet sessions.

A file every run appended to holds several sessions, each beginning at its baseline row; each
becomes a session of its own (`split_sessions`), named after the file's path and its rows, so
that no import takes another's place; importing the file again after it grew adds what is new.
Columns are found by header name and extra ones are kept in each `exp_end` as `row`. Commit
times stand in for the timings autoresearch does not log (`import_times`). Commits that git no
longer has (a discarded change, garbage-collected) are tolerated: no diff, and their times are
interpolated between their neighbours. Ratchet's own rows read as the session wrote them: a
`confirm: ...` row is a further run of its candidate, not a keep of its own.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import git

from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.protocol.events import EventLog
from ratchet.engine.workspace import autoresearch, import_times, layout, results_tsv
from ratchet.engine.workspace.import_git import (
    Commit,
    branch_commits,
    branch_of,
    find_commit,
    open_repo,
)
from ratchet.engine.workspace.import_rows import Part, number, roles, split_sessions, value

RESULTS = "results.tsv"


class ImportFailed(Exception):
    """The path cannot be imported; one line."""


def _results_file(path: Path) -> Path:
    path = path.expanduser().resolve()
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        raise ImportFailed(f"no {RESULTS} at {path}; give an autoresearch checkout or a "
                           f"results file")
    return path


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
        repo = open_repo(source.parent)
        if repo is None:  # a lone results file: no checkout to keep the session beside it
            raise ImportFailed(f"{path} is not in a git checkout or a workspace; import it "
                               f"into a workspace with -C DIR") from None
        return Path(repo.working_tree_dir) / "runs"


def _exclude_runs(folder: Path) -> None:
    """Keep `runs/` out of `git status` in a checkout that is not a Ratchet layout."""
    repo = open_repo(folder)
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
    first = next(events.iter_events(folder / paths.EVENTS), {})
    return first.get("source") if first.get("imported") else None


def import_run(path: Path, runs: Path, force: bool = False,
               on_warning: Callable[[str], None] | None = None) -> tuple[Path, int]:
    """Write the file's sessions not imported yet; returns the last one's folder and
    experiments. A file that holds several sessions says so (and names the others) through
    `on_warning`."""
    written, total = import_sessions(path, runs, force, on_warning)
    if total > 1 and on_warning is not None:
        others = ", ".join(f"{folder.name} ({n})" for folder, n in written[:-1])
        before = total - len(written)
        on_warning(f"{_results_file(path)} holds {total} sessions (each begins at its baseline "
                   f"row)" + (f"; {before} imported before are left as they are" if before
                              else "") + (f"; the other new ones are imported as {others}"
                                          if others and before else
                                          f"; the earlier ones are imported as {others}"
                                          if others else ""))
    return written[-1]


def import_sessions(path: Path, runs: Path, force: bool = False,
                    on_warning: Callable[[str], None] | None = None
                    ) -> tuple[list[tuple[Path, int]], int]:
    """Write one session for each the file holds (`split_sessions`) that is not imported as
    it is already; returns each written one's folder and number of experiments, oldest first,
    and how many sessions the file holds. A session imported before that has grown since is
    imported again in its place; a file changed otherwise is refused unless `force`."""
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
    keep = set() if force else _unchanged(tsv, parts, earlier)
    repo = open_repo(tsv.parent)
    history = branch_commits(repo) if repo is not None else {}
    rows = [row for part in parts for row in part.rows]
    commits = [find_commit(repo, history, row.get("commit", "").strip()) for row in rows]
    times, ends = import_times.timeline(
        [c.time if c else None for c in commits],
        [(len(part.rows), part.baselines) for part in parts], import_times.file_times(tsv),
        _budget(tsv))
    cut, folders = 0, []
    for k, part in enumerate(parts):
        span = slice(cut, cut + len(part.rows))
        cut = span.stop
        if k in keep:
            continue
        folder = runs / session_name(tsv, part.rows, times[span][0])
        other = _source_of(folder) if (folder / paths.EVENTS).exists() else str(tsv)
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
    kept_folders = {f for f in earlier if _rows_of(f) in [parts[k].rows for k in keep]}
    for folder in earlier:
        if folder not in kept_folders:
            shutil.rmtree(folder, ignore_errors=True)
    written = []
    try:
        for folder, part, *timeline in folders:
            _fresh(folder, runs)
            written.append(folder)
            _write(folder / paths.EVENTS, tsv, part, *timeline, repo)
    except BaseException:
        for folder in written:  # no half-imported file left behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return [(folder, len(part.rows)) for folder, part, *_ in folders], len(parts)


def _rows_of(folder: Path) -> list[dict[str, str]]:
    """The results rows an imported session was written from, in order."""
    return [e["row"] for e in events.iter_events(folder / paths.EVENTS)
            if e.get("type") == schema.EXP_END and isinstance(e.get("row"), dict)]


def _unchanged(tsv: Path, parts: list[Part], earlier: list[Path]) -> set[int]:
    """The file's sessions imported before as they are now (by index). Refuses a file with
    nothing new, and one changed otherwise than by growing (a session imported before whose
    rows are not the start of one of the file's)."""
    if not earlier:
        return set()
    same: set[int] = set()
    for folder in earlier:
        old = _rows_of(folder)
        match = next((k for k, part in enumerate(parts) if part.rows == old), None)
        if match is not None:
            same.add(match)
        elif not any(old and part.rows[:len(old)] == old for part in parts):
            raise ImportFailed(f"{tsv} was imported as session {folder.name} and has changed "
                               f"since, not only grown; add --force to import it again in "
                               f"its place")
    if len(same) == len(parts):
        raise ImportFailed(f"{tsv} is already imported as session {earlier[-1].name}, and "
                           f"nothing is new; add --force to import it again in its place")
    return same


def _budget(tsv: Path) -> float | None:
    """The checkout's training budget (prepare.py's TIME_BUDGET), a step for sessions whose
    commits do not say how long a run took."""
    try:
        return autoresearch.time_budget((tsv.parent / "prepare.py").read_text(errors="replace"))
    except OSError:
        return None


def _fresh(folder: Path, runs: Path) -> None:
    try:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        _exclude_runs(runs.parent)
    except OSError as exc:
        raise ImportFailed(f"cannot write the session to {runs}: {exc.strerror or exc}; "
                           f"import into a workspace with -C DIR") from None


def _write(path: Path, tsv: Path, part: Part, commits: list[Commit | None], times: list[float],
           ends: list[float], timing: str, repo: git.Repo | None) -> None:
    log = EventLog(path)
    rows = part.rows
    roles_of = roles(part)
    base = commits[0].sha if commits[0] else rows[0].get("commit", "")
    kept_shas = [c.sha for c, r in zip(commits, roles_of, strict=True)
                 if c is not None and r.decision == schema.KEEP]
    branch = branch_of(repo, [*reversed(kept_shas[-3:]), *([base] if commits[0] else [])],
                       ends[-1])
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
        for n, (row, role, commit, start, end) in enumerate(
                zip(rows, roles_of, commits, times, ends, strict=True), start=1):
            description = row.get("description", "")
            val = value(row)
            kind, decision = role.kind, role.decision
            sha = commit.sha if commit else row.get("commit", "")
            if kind == schema.CANDIDATE:
                emit(start, schema.PROPOSAL, exp=n, description=description, rationale="",
                     diff=commit.diff if commit else None, files=["train.py"],
                     based_on="", changes={}, steer=[])
            emit(start, schema.EXP_START, exp=n, kind=kind, commit=sha, seed=None, budget=None,
                 description=description)
            # the best so far: the baseline runs' mean, then the best kept row (a kept row
            # worse than it, say a simplification, leaves it where it is), or the mean of a
            # confirmed candidate's runs, as the engine takes it
            new_best = role.new_best if role.new_best is not None else \
                val if best is None or val is None else min(best, val)
            memory = number(row.get("memory_gb", ""))
            link = {"confirms": role.confirms + 1} if role.confirms is not None else {}
            status = schema.CRASHED if val is None else schema.OK
            emit(end, schema.EXP_END, exp=n, kind=kind, status=status,
                 decision=decision, val_bpb=val, best_before=best,
                 delta=val - best if val is not None and best is not None
                 and kind != schema.BASELINE else None, margin=None,
                 commit=sha, description=description, changes={},
                 result={"metric_source": "self_reported",
                         "peak_memory_mb": memory * 1024 if memory is not None else None,
                         "error": "crashed (as logged in results.tsv)" if val is None else "",
                         "tail": ""},
                 row=row, **link, **({"new_best": new_best} if decision == schema.KEEP else {}))
            if val is not None and kind == schema.BASELINE:
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
