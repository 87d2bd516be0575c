"""Plain git on a workspace's repository: who Ratchet commits as, and the detached worktrees
where workers train. The loop's ratchet of branches and candidates is `loop/gitops.py`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import git

AUTHOR = git.Actor("Ratchet", "ratchet@localhost")


def worktree(repo: git.Repo, path: Path, sha: str) -> git.Repo:
    """A detached worktree of the workspace at `path` (created, or reused after a resume)."""
    if (path / ".git").exists():
        with contextlib.suppress(git.GitError):
            found = git.Repo(path)
            checkout_detached(found, sha)
            return found
    repo.git.worktree("prune")
    path.parent.mkdir(parents=True, exist_ok=True)
    repo.git.worktree("add", "--detach", "--force", str(path), sha)
    return git.Repo(path)


def checkout_detached(tree: git.Repo, sha: str) -> None:
    """Make a worktree hold exactly `sha`'s files, and nothing left from the last experiment."""
    tree.git.checkout("--detach", "--force", sha)
    tree.git.clean("-fdxq")


def remove_worktree(repo: git.Repo, path: Path) -> None:
    with contextlib.suppress(git.GitError):
        repo.git.worktree("remove", "--force", str(path))
