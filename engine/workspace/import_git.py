"""What an imported results.tsv's commits tell from git: each one's time and diff, and the
branch a session ran on (for `ratchet import`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import git

MAX_DIFF_CHARS = 200_000  # a diff beyond this is cut: the log is read whole by every view
_SHA = re.compile(r"^[0-9a-fA-F]{4,40}$")
_CREATED = re.compile(r"@\{(\d+)\}$")
LATE_S = 60.0  # a branch made this long after a session ended is not the one it ran on


@dataclass
class Commit:
    sha: str
    time: float
    diff: str


def open_repo(folder: Path) -> git.Repo | None:
    try:
        return git.Repo(folder, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def branch_commits(repo: git.Repo) -> dict[str, git.Commit]:
    """The current branch's history by full sha; empty for a repository with no commits."""
    try:
        return {c.hexsha: c for c in repo.iter_commits("HEAD")}
    except (git.GitCommandError, ValueError):
        return {}


def find_commit(repo: git.Repo | None, history: dict[str, git.Commit],
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


def branch_of(repo: git.Repo | None, anchors: list[str], ended: float) -> str:
    """The branch a session ran on: the one nearest to the first anchor (its newest kept
    commit, then its baseline's) that a branch holds, whatever the checkout has checked out
    now. autoresearch's branch moves to every keep and a later session's branch starts from
    it, so the branch whose tip is nearest the kept commit is the session's own; between
    equals, the one made last before the session `ended` (from the reflog). '' when no branch
    holds any anchor."""
    if repo is None:
        return ""
    for sha in anchors:
        try:
            names = repo.git.branch("--contains", sha, "--format=%(refname:short)").split()
        except git.GitCommandError:
            continue
        if not names:
            continue
        distance = {name: _count(repo, f"{sha}..{name}") for name in names}
        near = min(distance.values())
        tied = [name for name in names if distance[name] == near]
        if len(tied) == 1:
            return tied[0]
        made = {name: _created(repo, name) for name in tied}
        return max(tied, key=lambda n: (made[n] <= ended + LATE_S, made[n]))
    return ""


def _count(repo: git.Repo, span: str) -> int:
    try:
        return int(repo.git.rev_list("--count", span))
    except (git.GitCommandError, ValueError):
        return 1 << 30


def _created(repo: git.Repo, name: str) -> float:
    """When the branch was made, from its reflog's oldest entry; 0 where there is none."""
    try:
        lines = repo.git.log("-g", "--format=%gd", "--date=unix", f"refs/heads/{name}",
                             "--").splitlines()
    except git.GitCommandError:
        return 0.0
    match = _CREATED.search(lines[-1]) if lines else None
    return float(match.group(1)) if match else 0.0
