"""The git side of the ratchet: one branch per session, a commit per candidate, reset on discard.

The engine alone runs git (through GitPython); agents only hand over file contents.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from io import BytesIO
from pathlib import Path

import git
from gitdb import IStream

from ratchet.engine.workspace.gitrepo import AUTHOR

PRIVATE = "ratchet-candidate-"  # a candidate's private index, in the git folder


class GitError(Exception):
    """The workspace's repository is in a state the loop cannot work from; one line."""


def open_repo(root: Path) -> git.Repo:
    try:
        return git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{root} is not a git repository; create it with `ratchet init`") from None


def branch_name(tag: str) -> str:
    return f"ratchet/{tag}"


def names(text: str) -> list[str]:
    """The file names a `git ... -z` command printed."""
    return [name for name in text.split("\0") if name]


def changed_files(repo: git.Repo) -> list[str]:
    """Tracked files that differ from HEAD, staged or not."""
    return sorted(set(names(repo.git.diff("--cached", "--name-only", "--no-renames", "-z")))
                  | set(names(repo.git.diff("--name-only", "--no-renames", "-z"))))


def blob_of(repo: git.Repo, rev: str, name: str) -> str | None:
    """The blob id of a file in a commit (`rev`), in the index (`rev` ''), or None."""
    out = repo.git.rev_parse("--verify", "-q", f"{rev}:{name}", with_exceptions=False)
    return out.strip() or None


def leftovers(repo: git.Repo, tips: tuple[str, ...]) -> list[str]:
    """Changed files whose index and working-tree texts are both texts of HEAD or of `tips`:
    what an engine killed inside a move of its branch left (`branch.py`), never the person's
    work, whose text no commit of the engine's holds. Putting them back loses nothing."""
    found = []
    for name in changed_files(repo):
        texts = {blob_of(repo, rev, name) for rev in ("HEAD", *tips)}
        path = Path(repo.working_tree_dir) / name
        work = repo.git.hash_object("--", name).strip() if path.is_file() else None
        if blob_of(repo, "", name) in texts and work in texts:
            found.append(name)
    return found


def check_can_start(repo: git.Repo, tag: str, resume: bool,
                    engine_files: tuple[str, ...] = (), tips: tuple[str, ...] = ()) -> None:
    """Raise GitError unless a session on ratchet/<tag> can start (or resume) from here.

    `tips` are the commits the session's log says its branch may be at (none: not checked);
    where they say why the branch is elsewhere (`resume.Tips.why_not`), that is the message.
    On resume, on the session's own branch, changes to `engine_files` that are the engine's own
    half-done move (`leftovers`) are allowed (the engine puts them back), and so are the
    person's changes to other files (an edit of program.md that steers the agent): the engine's
    moves touch only what a kept change touches, within `engine_files`, and refuse to write
    over anything. Any other uncommitted change refuses the start.
    """
    name = branch_name(tag)
    exists = name in [h.name for h in repo.heads]
    if exists and not resume:
        raise GitError(f"branch {name} already exists; pick another --tag or add --resume")
    if not exists and resume:
        raise GitError(f"branch {name} does not exist; nothing to resume")
    at = branch_commit(repo, name)
    if resume and tips and at not in tips:
        why_not = getattr(tips, "why_not", lambda _sha, _name: "")
        raise GitError(why_not(at, name) or moved_message(name))
    changed = changed_files(repo)
    if resume and checked_out(repo, name) and engine_files:
        ours = set(leftovers(repo, tuple(tips))) & set(engine_files)
        changed = [f for f in changed if f in engine_files and f not in ours]
    if changed:
        raise GitError(f"the workspace has uncommitted changes to tracked files "
                       f"({', '.join(changed)}); commit or discard them first")


def checkout_branch(repo: git.Repo, tag: str, resume: bool,
                    engine_files: tuple[str, ...] = (), tips: tuple[str, ...] = ()) -> str:
    """Check out ratchet/<tag>: created from HEAD for a new session, reused on resume."""
    check_can_start(repo, tag, resume, engine_files, tips)
    name = branch_name(tag)
    head = repo.heads[name] if name in [h.name for h in repo.heads] else repo.create_head(name)
    head.checkout()
    return name


def head_sha(repo: git.Repo) -> str:
    return repo.head.commit.hexsha


def branch_commit(repo: git.Repo, name: str) -> str:
    """The commit the branch points at, or '' where there is no such branch."""
    try:
        return repo.heads[name].commit.hexsha
    except (IndexError, ValueError, git.GitError):
        return ""


def checked_out(repo: git.Repo, name: str) -> bool:
    """Whether HEAD is the branch `name` (not another branch, not detached)."""
    try:
        return repo.head.reference.name == name
    except (TypeError, ValueError, git.GitError):  # detached, or HEAD names no branch
        return False


def moved_message(name: str) -> str:
    return f"the branch {name} was moved or checked out by someone else; stopping without " \
           f"touching it"


def ownership_problem(repo: git.Repo, name: str, expected: tuple[str, ...]) -> str:
    """Why the engine may not move its branch now (or ''): HEAD must be the branch, and the
    branch at a commit the engine put it at (`expected`)."""
    if checked_out(repo, name) and branch_commit(repo, name) in expected:
        return ""
    return moved_message(name)


def diff(repo: git.Repo, old: str, new: str) -> str:
    return repo.git.diff(old, new)


# --- candidates off the branch ----------------------------------------


def commit_tree(repo: git.Repo, parent: str, files: dict[str, str], message: str) -> str:
    """A commit of `parent` with these files replaced; no branch, index or working tree moves.

    Candidates are made this way so that several can exist at once while the branch holds
    only kept commits.
    """
    base = repo.commit(parent)
    # a private index: the workspace's own (.git/index, the person's staging) is never
    # touched, not even for a moment (GitPython's IndexFile.from_tree moves it aside)
    fd, private = tempfile.mkstemp(prefix=PRIVATE, dir=repo.git_dir)
    os.close(fd)
    env = {"GIT_INDEX_FILE": private}
    try:
        repo.git.read_tree(base.hexsha, env=env)
        for name, text in files.items():
            data = text.encode()
            blob = repo.odb.store(IStream("blob", len(data), BytesIO(data)))
            try:
                mode = base.tree[name].mode
            except KeyError:
                mode = 0o100644
            repo.git.update_index("--add", "--cacheinfo", f"{mode:o},{blob.binsha.hex()},{name}",
                                  env=env)
        tree = repo.git.write_tree(env=env).strip()
    finally:
        os.unlink(private)
    commit = git.Commit.create_from_tree(repo, repo.tree(tree), message, parent_commits=[base],
                                         head=False, author=AUTHOR, committer=AUTHOR)
    return commit.hexsha


def parent_of(repo: git.Repo, sha: str) -> str:
    parents = repo.commit(sha).parents
    return parents[0].hexsha if parents else ""


def text_at(commit: git.Commit, name: str) -> str | None:
    """A file's text in a commit, or None where the commit has no such file."""
    try:
        return commit.tree[name].data_stream.read().decode()
    except KeyError:
        return None


def files_at(repo: git.Repo, sha: str, names: list[str]) -> dict[str, str]:
    """The texts of those of `names` that the commit holds."""
    commit = repo.commit(sha)
    found = {name: text_at(commit, name) for name in names}
    return {name: text for name, text in found.items() if text is not None}


def rebase_commit(repo: git.Repo, sha: str, onto: str, message: str) -> tuple[str | None, str]:
    """Re-apply a commit's change (against its parent) onto `onto` with a 3-way file merge.

    Returns (new commit, '') or (None, why it cannot be rebased): a conflict, or a change the
    new base already holds.
    """
    commit, target = repo.commit(sha), repo.commit(onto)
    base = commit.parents[0]
    merged: dict[str, str] = {}
    for change in base.diff(commit):
        name = change.b_path or change.a_path
        old, ours, theirs = text_at(base, name), text_at(target, name), text_at(commit, name)
        if theirs is None:
            return None, f"the change deletes {name}"
        if ours == old or ours is None:
            merged[name] = theirs
        elif theirs == old:
            merged[name] = ours
        else:
            merged[name] = _merge_file(repo, ours, old or "", theirs) \
                or merge_adjacent(old or "", ours, theirs)
            if merged[name] is None:
                return None, f"{name} conflicts with the new best"
    files = {n: t for n, t in merged.items() if t != text_at(target, n)}
    if not files:
        return None, "the new best already holds this change"
    return commit_tree(repo, onto, files, message), ""


def _merge_file(repo: git.Repo, ours: str, base: str, theirs: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="ratchet-merge-") as tmp:
        paths = []
        for label, text in (("best", ours), ("base", base), ("candidate", theirs)):
            path = Path(tmp) / label
            path.write_text(text)
            paths.append(str(path))
        status, out, _err = repo.git.merge_file(
            "-p", "-L", "best", "-L", "base", "-L", "candidate", *paths,
            with_extended_output=True, with_exceptions=False, strip_newline_in_stdout=False)
    return out if status == 0 else None


def merge_adjacent(base: str, ours: str, theirs: str) -> str | None:
    """Both sides' line changes applied to `base` when they touch different lines, even
    neighbouring ones (git's merge calls that a conflict; train.py keeps its constants on
    neighbouring lines). None when both change the same line."""
    old = base.splitlines(keepends=True)

    def changes(new: str) -> list[tuple[int, int, list[str]]]:
        lines = new.splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(a=old, b=lines, autojunk=False)
        return [(i1, i2, lines[j1:j2]) for op, i1, i2, j1, j2 in matcher.get_opcodes()
                if op != "equal"]

    mine, other = changes(ours), changes(theirs)
    for a1, a2, _ in mine:
        for b1, b2, _ in other:
            if max(a1, b1) < min(a2, b2) or (a1 == b1 and (a1 == a2 or b1 == b2)):
                return None
    merged = list(old)
    for i1, i2, lines in sorted(mine + other, reverse=True):  # from the end: indexes hold
        merged[i1:i2] = lines
    return "".join(merged)
