"""Faults for tests and benches: a small disk, an engine killed at a chosen moment, and the
checks that the workspace is consistent afterwards (`problems`, by kind).

Shared by tests/test_faults.py, tests/test_disk_full.py and bench/kill_bench.py. Each check
returns what it found wrong instead of asserting, so the bench can count by kind; the tests
assert that nothing was found. The log, results.tsv and git checks are test_loop's and
test_integrity's (`check_ratchet_invariants`), run as one kind of their own.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import git
import psutil
import trainers
from test_loop import check_ratchet_invariants

from ratchet.engine.loop import resume
from ratchet.engine.protocol import events, paths
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout, results_tsv

# --- a workspace whose loop keeps changes often --------------------------------------------

# train.py's SMOOTHING starts far from its best, so the offline agent finds keeps quickly
KEEPING = trainers.loop_bigram().replace("SMOOTHING = 1.0", "SMOOTHING = 50.0")
FAST = {"budget_seconds": 16.0, "eval_tokens": 65536}


def keeping_workspace(root: Path, template: Path) -> layout.Workspace:
    """A copy of the template workspace at `root` with the bigram trainer, one baseline run
    and a keep rule that keeps any gain, committed."""
    import shutil

    shutil.copytree(template, root, symlinks=True)
    ws = layout.Workspace(root)
    config = ws.config()
    for key, value in FAST.items():
        section = config.experiment if hasattr(config.experiment, key) else config.data
        setattr(section, key, value)
    config.experiment.min_improvement = 0.0
    config.loop.noise_k = 0.0
    config.loop.baseline_seeds = 1
    configmod.save(root, config)
    (root / "train.py").write_text(KEEPING)
    repo = git.Repo(root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("bigram trainer")
    return ws


# --- the engine as a real process ------------------------------------------------------------


def ratchet(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """`ratchet run --headless ARGS` in the background (it follows the engine it spawns)."""
    return subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", "run", "--headless",
                             *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def resume_session(ws: layout.Workspace, folder: Path, *args: str,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """`ratchet run --headless --resume ARGS`, then make sure the engine it started has ended
    (the follower returns when the resumed run ends; a timeout of its own must not leave the
    engine running behind the test)."""
    before = os.path.getmtime(folder / paths.PID) if (folder / paths.PID).exists() else 0.0
    done = ratchet("run", "--headless", "--resume", *args, cwd=ws.root, timeout=timeout)
    if (folder / paths.PID).exists() and os.path.getmtime(folder / paths.PID) != before:
        pid = paths.engine_pid(folder)
        if not wait_until(lambda: not paths.pid_alive(pid), timeout, 0.1):
            raise AssertionError(f"the resumed engine (pid {pid}) is still running")
    return done


def log_of(folder: Path) -> list[dict]:
    return list(events.iter_events(folder / paths.EVENTS))


def wait_for(folder: Path, kind: str, timeout: float = 120.0):
    """Wait until the session's log holds an event of type `kind`; falsy if none came."""
    return wait_until(lambda: any(e["type"] == kind for e in log_of(folder)), timeout)


def session_folder(ws: layout.Workspace, timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = paths.sessions(ws.runs_dir())
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError("no session folder appeared")


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(step)
    return None


def kill_engine(folder: Path) -> int:
    """SIGKILL the session's engine (as kill -9 would) and wait until it is gone."""
    pid = paths.engine_pid(folder)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not paths.pid_alive(pid), 30)
    return pid


# --- a small disk ----------------------------------------------------------------------------


def mount_tmpfs(folder: Path, size: str = "64m") -> str:
    """Mount a tmpfs of `size` on `folder`; '' when done, else why it cannot be (to skip)."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(folder)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    return "" if done.returncode == 0 else f"mount failed: {done.stderr.strip()}"


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write `path` until the disk holding it has no byte left; returns the bytes written."""
    written = 0
    with open(path, "ab", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += f.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


# --- consistency ----------------------------------------------------------------------------


def problems(ws: layout.Workspace, folder: Path,
             edits: dict[str, str] | None = None) -> dict[str, str]:
    """What is inconsistent in the workspace after a resume ended: kind -> the first case.
    `edits` are the person's uncommitted files (path -> text): each must be there as written,
    and is the only change the tree may hold."""
    found: dict[str, str] = {}
    log = log_of(folder)
    for name, text in (edits or {}).items():
        if (ws.root / name).read_text() != text:
            found["user edit"] = f"{name} is not as the person left it"
    for kind, check in (("git", functools.partial(_git, edits=edits or {})),
                        ("numbers", _numbers), ("results.tsv", _results),
                        ("invariants", functools.partial(_invariants, edits=edits or {})),
                        ("temp folders", _leaks)):
        try:
            problem = check(ws, folder, log)
        except Exception as exc:  # noqa: BLE001 - a check that cannot even run is a problem
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            found[kind] = problem
    return found


def _git(ws, folder, log, edits: dict[str, str] | None = None) -> str:
    repo = git.Repo(ws.root)
    starts = [e for e in log if e["type"] == "session_start"]
    ends = [e for e in log if e["type"] == "exp_end"]
    base = starts[0]["base_commit"]
    head = repo.head.commit.hexsha
    kept = [e["commit"] for e in ends if e["decision"] == "keep"]
    for end in ends:
        try:
            repo.commit(end["commit"])
        except (ValueError, git.GitError):
            return f"exp {end['exp']}: commit {end['commit']} is missing"
    ancestors = {c.hexsha for c in repo.iter_commits(head)}
    if any(k not in ancestors for k in kept):
        return f"a keep is not an ancestor of HEAD {head[:7]}"
    discarded = {e["commit"] for e in ends if e["decision"] != "keep"} - set(kept) - {base}
    if discarded & ancestors:
        return f"discarded {sorted(discarded & ancestors)[0][:7]} is on the branch"
    if head != (kept[-1] if kept else base):
        return f"HEAD {head[:7]} is not the last keep"
    changed = [line for line in repo.git.status("--porcelain").splitlines()
               if line[3:] not in (edits or {})]
    if changed:
        return f"the tree is not clean: {'; '.join(changed)[:200]}"
    return ""


def _numbers(ws, folder, log) -> str:
    for kind in ("exp_start", "exp_end"):
        numbers = [e["exp"] for e in log if e["type"] == kind]
        if len(numbers) != len(set(numbers)):
            return f"an {kind} number is used twice: {sorted(numbers)}"
    mentioned = {e["exp"] for e in log if isinstance(e.get("exp"), int)}
    missing = set(range(1, max(mentioned, default=0) + 1)) - mentioned
    if missing:
        return f"numbers are not contiguous: missing {sorted(missing)}"
    started = [e["exp"] for e in log if e["type"] == "exp_start"]
    ended = {e["exp"] for e in log if e["type"] == "exp_end"}
    if set(started) - ended:
        return f"experiments started but never ended: {sorted(set(started) - ended)}"
    return ""


def _results(ws, folder, log) -> str:
    """results.tsv holds exactly the rows the session's log backs, in order."""
    backed = [results_tsv.cells(*row) for row in resume.read(folder / paths.EVENTS).rows]
    lines = (ws.root / "results.tsv").read_text().splitlines()[1:]
    found = [tuple(line.split("\t")) for line in lines]
    return "" if found == backed else f"results.tsv {found[-3:]} but the log backs {backed[-3:]}"


def _invariants(ws, folder, log, edits: dict[str, str] | None = None) -> str:
    check_ratchet_invariants(ws, log, tuple(edits or ()))
    return ""


def temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("ratchet-eval-*")}


def _leaks(ws, folder, log) -> str:
    left = [str(p.relative_to(ws.root)) for p in ws.runs_dir().glob("*/*/eval-tmp")]
    left += [str(p.relative_to(ws.root)) for p in ws.runs_dir().glob("*/warm/*")]
    return f"left behind: {left[:3]}" if left else ""


def orphans(root: Path) -> list[str]:
    """Processes still running from the workspace (cwd or arguments inside it), but this
    process's own (GitPython's `git cat-file` of the checks)."""
    found = []
    own = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.info["cmdline"] or [])
            if proc.pid not in own and proc.status() != psutil.STATUS_ZOMBIE and (
                    str(root) in line or str(proc.info["cwd"] or "").startswith(str(root))):
                found.append(f"{proc.pid}: {line[:120]}")
    return found


# --- an engine killed at random moments and at keeps, then resumed --------------------------

KILLS = ("random", "keep", "branch", "evaluating")  # a random moment; an exp_end keep or
# pending_confirm just written; the branch just moved; an evaluation just begun


class KillRun:
    """One session of a keeping workspace run by `ratchet run`, killed (SIGKILL) and resumed
    again and again; each kill is followed by a resume that recovers and stops, after which
    the workspace is checked (`verify`)."""

    def __init__(self, ws: layout.Workspace, tag: str = "kb", user_edit: bool = False):
        self.ws, self.tag = ws, tag
        # the person steers by editing program.md once the session runs, and never commits it
        self.edits: dict[str, str] = {}
        self.user_edit = user_edit
        self.folder: Path | None = None
        self.ref = ws.root / ".git" / "refs" / "heads" / "ratchet" / tag
        self.cli: subprocess.Popen | None = None
        self.resumes = 0

    def start(self) -> None:
        """The first engine, once its first experiment has ended."""
        self.cli = start("--tag", self.tag, "--agent", "offline", cwd=self.ws.root)
        self.folder = session_folder(self.ws)
        if not wait_until(lambda: any(e["type"] == "exp_end" for e in log_of(self.folder)), 180):
            raise AssertionError(f"no experiment ended: {log_of(self.folder)[-3:]}")
        if self.user_edit:
            path = self.ws.root / "program.md"
            self.edits["program.md"] = path.read_text() + "\nPrefer smaller models.\n"
            path.write_text(self.edits["program.md"])

    def _starts(self) -> int:
        return sum(e["type"] == "session_start" for e in log_of(self.folder))

    def _resume(self) -> int:
        """`ratchet run --headless --resume` in the background; the new engine's pid once it
        has started its session."""
        before, old = self._starts(), paths.engine_pid(self.folder)
        self._reap()
        self.cli = start("--resume", cwd=self.ws.root)
        self.resumes += 1
        started = wait_until(lambda: self._starts() > before
                             and paths.engine_pid(self.folder) != old
                             and paths.pid_alive(paths.engine_pid(self.folder)), 120)
        if not started:
            out, err = self.cli.communicate(timeout=30) if self.cli.poll() is not None \
                else ("", "")
            raise AssertionError(f"the resumed engine did not start: {out} {err}")
        return paths.engine_pid(self.folder)

    def _reap(self) -> None:
        if self.cli is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.cli.communicate(timeout=30)
            if self.cli.poll() is None:
                self.cli.kill()
                self.cli.communicate()
            self.cli = None

    def kill(self, how: str, delay: float, timeout: float = 90.0) -> str:
        """Let the engine run, then SIGKILL it: after `delay` s (random), or at the next keep
        (`keep`: its exp_end is written; `branch`: the branch has moved) or evaluation, at most
        `timeout` s on. Returns what the kill hit ('random' when none came in time)."""
        if not paths.pid_alive(paths.engine_pid(self.folder)):
            self._resume()
        hit = "random"
        if how == "random":
            time.sleep(delay)
        else:
            tail = events.LogTail(self.folder / paths.EVENTS, offset=os.path.getsize(
                self.folder / paths.EVENTS))
            tip = self._tip()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and hit == "random":
                if self._hit(how, tail, tip):
                    hit = how
                else:
                    time.sleep(0.005)
        kill_engine(self.folder)
        return hit

    def _hit(self, how: str, tail: events.LogTail, tip: str) -> bool:
        if how == "branch":
            return self._tip() != tip
        if how == "evaluating":
            return any(e.get("type") == "phase" and e.get("phase") == "evaluating"
                       for e in tail.poll())
        return any(e.get("type") == "exp_end" and e.get("decision") in ("keep", "pending_confirm")
                   for e in tail.poll())

    def _tip(self) -> str:
        with contextlib.suppress(OSError):
            return self.ref.read_text().strip()
        return ""

    def verify(self) -> dict[str, str]:
        """Resume after a kill: the engine recovers, is told to stop, and ends; then what is
        inconsistent, by kind (orphans: processes of the workspace 10 s after)."""
        from ratchet.engine.protocol import control

        pid = self._resume()
        found: dict[str, str] = {}
        try:
            control.send(self.folder / paths.SOCKET, "stop", timeout=30)
        except control.ControlError as exc:
            found["control"] = str(exc)
        if not wait_until(lambda: not paths.pid_alive(pid), 120, 0.1):
            found["hang"] = f"the resumed engine (pid {pid}) did not stop"
            kill_engine(self.folder)
        self._reap()
        last = [e for e in log_of(self.folder) if e["type"] != "resources"][-1]
        if last["type"] != "session_end" or last.get("reason") != "stopped":
            found["session_end"] = f"the resumed session ended with {last}"[:300]
        found.update(problems(self.ws, self.folder, self.edits))
        if wait_until(lambda: not orphans(self.ws.root), 10, 0.2) is None:
            found["orphans"] = "; ".join(orphans(self.ws.root))[:300]
        return found

    def close(self) -> None:
        if self.folder is not None and paths.pid_alive(paths.engine_pid(self.folder)):
            kill_engine(self.folder)
        self._reap()
