"""The git side of the ratchet: one branch per session, a commit per candidate, reset on discard.

The engine alone runs git (through GitPython); agents only hand over file contents.
"""

from __future__ import annotations

from pathlib import Path

import git

AUTHOR = git.Actor("Ratchet", "ratchet@localhost")


class GitError(Exception):
    """The workspace's repository is in a state the loop cannot work from; one line."""


def open_repo(root: Path) -> git.Repo:
    try:
        return git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{root} is not a git repository; create it with `ratchet init`") from None


def branch_name(tag: str) -> str:
    return f"ratchet/{tag}"


def changed_files(repo: git.Repo) -> list[str]:
    """Tracked files that differ from HEAD, staged or not."""
    return sorted({d.a_path for d in repo.index.diff(None)}
                  | {d.a_path for d in repo.index.diff("HEAD")})


def check_can_start(repo: git.Repo, tag: str, resume: bool,
                    engine_files: tuple[str, ...] = ()) -> None:
    """Raise GitError unless a session on ratchet/<tag> can start (or resume) from here.

    On resume, changes to `engine_files` on the session's own branch are the engine's
    unfinished edit (killed before it committed); the engine discards them, so they are allowed.
    """
    name = branch_name(tag)
    exists = name in [h.name for h in repo.heads]
    if exists and not resume:
        raise GitError(f"branch {name} already exists; pick another --tag or add --resume")
    if not exists and resume:
        raise GitError(f"branch {name} does not exist; nothing to resume")
    changed = changed_files(repo)
    if resume and not repo.head.is_detached and repo.active_branch.name == name:
        changed = [f for f in changed if f not in engine_files]
    if changed:
        raise GitError(f"the workspace has uncommitted changes to tracked files "
                       f"({', '.join(changed)}); commit or discard them first")


def checkout_branch(repo: git.Repo, tag: str, resume: bool,
                    engine_files: tuple[str, ...] = ()) -> str:
    """Check out ratchet/<tag>: created from HEAD for a new session, reused on resume."""
    check_can_start(repo, tag, resume, engine_files)
    name = branch_name(tag)
    head = repo.heads[name] if name in [h.name for h in repo.heads] else repo.create_head(name)
    head.checkout()
    return name


def head_sha(repo: git.Repo) -> str:
    return repo.head.commit.hexsha


def commit_files(repo: git.Repo, files: dict[str, str], message: str) -> str:
    """Write the files, commit them, and return the new commit's sha."""
    root = Path(repo.working_tree_dir)
    for name, text in files.items():
        (root / name).write_text(text)
    repo.index.add(list(files))
    repo.index.commit(message, author=AUTHOR, committer=AUTHOR)
    return head_sha(repo)


def reset_to(repo: git.Repo, sha: str) -> None:
    """Move the branch back to `sha` and make the working tree match it exactly."""
    repo.git.reset("--hard", sha)


def diff(repo: git.Repo, old: str, new: str) -> str:
    return repo.git.diff(old, new)


def read_file(repo: git.Repo, sha: str, name: str) -> str:
    return repo.git.show(f"{sha}:{name}")


def branch_commits(repo: git.Repo, name: str, since: str) -> list[str]:
    """Commits on the branch after `since`, oldest first."""
    return [c.hexsha for c in reversed(list(repo.iter_commits(f"{since}..{name}")))]
