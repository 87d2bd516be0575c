"""The session's branch: moved only by the engine, only from where it left it, and never over
the person's work.

The workspace is the person's checkout too: they may edit program.md to steer the agent, stage
a change of their own, or check out another branch while the engine runs. So:

- A move (a keep fast-forwarding the branch; a resume completing one) runs under git's own lock
  of the index (.git/index.lock), so no checkout, add or commit can land between its checks and
  its move. It checks that HEAD is still the session's branch at a commit the engine put it at,
  and that no file the move changes has uncommitted work (staged or not, or an untracked file
  where the move adds one): such work stops the session with one line naming the files
  (`Refused`). Then it updates the index and the working tree as `git checkout` does (a
  two-tree `read-tree -m -u`, which itself refuses to overwrite a local change) and moves the
  branch only from the commit it expects (`update-ref NEW OLD`). Every other file, edited or
  staged, is left exactly as it is. Where the branch is already at the commit, nothing moves.
- Between moves the branch is watched (`look`, on every result and every WATCH_S seconds on a
  thread of its own), so a checkout or a commit under the engine stops the session within an
  experiment, or seconds.
- An engine killed inside a move leaves the lock (its mark names it, `clear_stale`) and files
  half-moved, which are told from the person's work by their text (`gitops.leftovers`) and put
  back on resume (`settle`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import git

from ratchet.engine.loop import gitops

WATCH_S = 1.0  # how often the watcher looks at HEAD and the branch
LOCK_WAIT_S = 10.0  # how long a move waits for another git command to let go of the index
MARK = "ratchet-move"  # in the git folder while the engine holds the index lock: "pid inode"
SPARE = "ratchet-index"  # the index as the move builds it, in the git folder


class Refused(Exception):
    """The move would touch the person's work or a branch that is no longer the engine's;
    one line for the user."""


def in_the_way_message(files: list[str], what: str) -> str:
    return (f"uncommitted changes to {', '.join(files)} are in the way of {what}; stopping and "
            f"leaving them as they are (commit or stash them, then `ratchet run --resume`)")


def in_the_way(repo: git.Repo, old: str, new: str) -> list[str]:
    """The files a move from `old` (HEAD) to `new` would write where the person has work of
    their own: changed in the index or the working tree, or untracked where `new` has one."""
    moving = gitops.names(repo.git.diff("--name-only", "--no-renames", "-z", old, new))
    if not moving:
        return []
    found = set(gitops.names(repo.git.diff("--cached", "--name-only", "--no-renames", "-z",
                                           old, "--", *moving)))
    found |= set(gitops.names(repo.git.diff("--name-only", "--no-renames", "-z", "--",
                                            *moving)))
    found |= set(gitops.names(repo.git.ls_files("--others", "-z", "--", *moving)))
    return sorted(found)


@contextlib.contextmanager
def index_lock(repo: git.Repo) -> Iterator[Callable[[Path], None]]:
    """Hold .git/index.lock, as git's own commands do; yields `commit(path)`, which makes the
    index at `path` the workspace's index (else the index stays as it was)."""
    folder = Path(repo.git_dir)
    lock = folder / "index.lock"
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise Refused(f"another git command holds the workspace's index ({lock} "
                              f"exists); stopping without touching the branch") from None
            time.sleep(0.05)
    done = []
    try:
        (folder / MARK).write_text(f"{os.getpid()} {os.fstat(fd).st_ino}\n")

        def commit(path: Path) -> None:
            with open(path, "rb") as f:
                os.write(fd, f.read())
            os.fsync(fd)
            os.replace(lock, folder / "index")
            done.append(True)

        yield commit
    finally:
        os.close(fd)
        if not done:
            lock.unlink(missing_ok=True)
        (folder / MARK).unlink(missing_ok=True)


def clear_stale(repo: git.Repo) -> None:
    """Remove what a killed engine left in the git folder: its index lock (the one its mark
    names, no other), its spare index and candidates' private indexes. Only one engine runs
    per workspace (`lock.py`), so none of them is in use."""
    folder = Path(repo.git_dir)
    with contextlib.suppress(OSError, ValueError):
        _pid, inode = (folder / MARK).read_text().split()
        lock = folder / "index.lock"
        if lock.exists() and lock.stat().st_ino == int(inode):
            lock.unlink()
    for path in (folder / MARK, folder / SPARE, *folder.glob(f"{gitops.PRIVATE}*")):
        path.unlink(missing_ok=True)


def settle(repo: git.Repo, tips: tuple[str, ...], files: tuple[str, ...]) -> None:
    """On resume (`tips`: where the log says the branch may be): put those of `files` that an
    engine killed inside a move left half-moved (`gitops.leftovers`) back to HEAD's text."""
    found = [f for f in gitops.leftovers(repo, tuple(tips)) if f in files] if tips else []
    if found:
        repo.git.checkout("HEAD", "--", *found)


# The steps of a move, one function each (the fault tests stop the engine between them).


def _write_tree(repo: git.Repo, old: str, new: str, spare: Path) -> None:
    repo.git.read_tree("-m", "-u", old, new, env={"GIT_INDEX_FILE": str(spare)})


def _set_ref(repo: git.Repo, name: str, old: str, new: str) -> None:
    repo.git.update_ref("-m", f"ratchet: keep {new[:7]}", f"refs/heads/{name}", new, old)


def _commit_index(commit: Callable[[Path], None], spare: Path) -> None:
    commit(spare)


def move(repo: git.Repo, name: str, expected: tuple[str, ...], sha: str, what: str,
         before: Callable[[], None] | None = None) -> None:
    """Put the checked-out branch `name`, now at one of `expected`, at `sha`, with the index
    and working tree, under the index lock. `before` runs once the checks pass and before
    anything moves (a keep's record goes on disk then). Raises Refused, touching nothing."""
    with index_lock(repo) as commit:
        now = gitops.branch_commit(repo, name)
        if not gitops.checked_out(repo, name) or now not in expected:
            raise Refused(gitops.moved_message(name))
        files = in_the_way(repo, now, sha) if now != sha else []
        if files:
            raise Refused(in_the_way_message(files, what))
        if before is not None:
            before()
        if now == sha:
            return
        spare = Path(repo.git_dir) / SPARE
        shutil.copyfile(Path(repo.git_dir) / "index", spare)
        try:
            try:
                _write_tree(repo, now, sha, spare)
            except git.GitCommandError:
                files = in_the_way(repo, now, sha)
                if not files:
                    raise  # git's own failure (a full disk, say), not the person's work
                raise Refused(in_the_way_message(files, what)) from None  # landed just now
            try:
                _set_ref(repo, name, now, sha)
            except git.GitCommandError:  # moved by hand under the lock: the files go back
                _write_tree(repo, sha, now, spare)
                raise Refused(gitops.moved_message(name)) from None
            _commit_index(commit, spare)
        finally:
            spare.unlink(missing_ok=True)


class Branch:
    """The session's branch as the engine left it (`tip`). `problem` says why the engine no
    longer touches git (its branch taken, or the person's work in the way); setting it calls
    `on_problem`, which stops the session."""

    def __init__(self, repo: git.Repo, name: str, on_problem: Callable[[str], None]):
        self.repo, self.name, self.on_problem = repo, name, on_problem
        self.tip = ""
        self.problem = ""
        self._guard = threading.Lock()  # a move and a look never interleave
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None

    def _fail(self, problem: str) -> None:
        self.problem = self.problem or problem
        self.on_problem(self.problem)

    def look(self, repo: git.Repo | None = None) -> str:
        """Why the branch is not the engine's now (HEAD elsewhere, or the branch moved from its
        tip), or ''. A problem found is kept, and stops the session."""
        with self._guard:
            if not self.problem and self.tip:
                problem = gitops.ownership_problem(repo or self.repo, self.name, (self.tip,))
                if problem:
                    self._fail(problem)
            return self.problem

    def move(self, sha: str, what: str, expected: tuple[str, ...] = (),
             before: Callable[[], None] | None = None) -> bool:
        """Put the branch at `sha` from `expected` (by default its tip); where it is there
        already only `before` runs. False, with the problem kept, where that is refused."""
        if sha == self.tip and not expected and before is None:
            return not self.look()  # there already: nothing moves
        if self.problem:
            return False
        with self._guard:
            try:
                move(self.repo, self.name, expected or (self.tip,), sha, what, before)
            except Refused as why:
                self._fail(str(why))
                return False
            self.tip = sha
            return True

    def watch(self) -> None:
        """Look every WATCH_S seconds on a thread of its own (with its own repository object:
        GitPython's is not shared between threads)."""
        def loop() -> None:
            with git.Repo(self.repo.working_tree_dir) as repo:
                while not self._quit.wait(WATCH_S) and not self.problem:
                    with contextlib.suppress(Exception):  # a look that fails looks again
                        self.look(repo)

        self._thread = threading.Thread(target=loop, daemon=True, name="branch-watch")
        self._thread.start()

    def unwatch(self) -> None:
        self._quit.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
