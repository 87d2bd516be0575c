"""Training processes started before their turn, so an experiment's start-up costs no device time.

While one experiment trains, its worker starts the process for the next: the sandbox, the
interpreter, torch and its compiler front end are ready when the next experiment begins, which
then only sends its environment (budget, seed, output folder) and train.py runs at once. A
train.py that touches environment variables starts cold instead, since torch reads some of them
at import; so does every one where `warm_start = false`.

On a CPU device the CPU is what trains: a process getting ready meanwhile (the next warm
trainer importing torch, the evaluator warming up) would take the training's cores, and two
OpenMP threads that lose a core to it wait for each other on every operation (a 4 s budget did
a tenth of its steps). There every process getting ready is paused (SIGSTOP) while a training
runs, and goes on (SIGCONT) once it hands over, or is needed (`PAUSE`, `bench/warm_steps.py`).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from ratchet.engine.protocol import schema
from ratchet.engine.runner import sandbox, supervision
from ratchet.engine.workspace.layout import TRAIN, Workspace

LAUNCHER = Path(__file__).with_name("warm_child.py")
READY_TIMEOUT_S = 120.0  # for the imports of a process started (just) before its turn
_CHANGES = ("update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__")


# Started for each pause: on its closed stdin (the engine ended, however it did) it continues
# what is still stopped, which would otherwise wait, stopped, for an engine long gone.
_GUARD = """import os, signal, sys
stopped = set()
for line in sys.stdin:
    (stopped.add if line[0] == "+" else stopped.discard)(int(line[1:]))
for pid in stopped:
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        pass
"""


class Pause:
    """Processes getting ready in the background, paused while a training runs on the CPU."""

    def __init__(self):
        self.lock = threading.Lock()
        self.training = 0  # trainings on the CPU now
        self.ready: list[supervision.Child] = []  # children getting ready, or waiting
        self.stopped: dict[supervision.Child, list[psutil.Process]] = {}
        self.guard: subprocess.Popen | None = None

    def getting_ready(self, child: supervision.Child) -> None:
        with self.lock:
            self.ready.append(child)
            if self.training:
                self._stop(child)

    def needed(self, child: supervision.Child) -> None:
        """The child is wanted now (or stopped): it goes on, paused no more."""
        with self.lock:
            if child in self.ready:
                self.ready.remove(child)
                self._go_on(child)

    @contextlib.contextmanager
    def training_on(self, device: str):
        if device != "cpu":
            yield
            return
        with self.lock:
            self.training += 1
            for child in self.ready:
                self._stop(child)
        try:
            yield
        finally:
            with self.lock:
                self.training -= 1
                if not self.training:
                    for child in self.ready:
                        self._go_on(child)
                    self._end_guard()

    def _stop(self, child: supervision.Child) -> None:
        """SIGSTOP the child and everything under it (a sandboxed child is in a session of
        its own), once its guardian knows them; without a guardian, no pause."""
        if child.proc is None or child.proc.poll() is not None or child in self.stopped:
            return
        procs: list[psutil.Process] = []
        # a process forks while it is listed (bwrap sets up its sandbox just now): list again
        # until a second look a moment later finds nothing new; a stopped process forks no more
        for _ in range(50):
            try:
                root = psutil.Process(child.proc.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            new = [proc for proc in tree if proc not in procs]
            if not new and procs:
                break
            if not self._tell("".join(f"+{proc.pid}\n" for proc in new)):
                break
            for proc in new:
                with contextlib.suppress(psutil.Error):
                    proc.suspend()
            procs += new
            time.sleep(0.01)
        if procs:
            self.stopped[child] = procs

    def _go_on(self, child: supervision.Child) -> None:
        procs = self.stopped.pop(child, [])
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.resume()
        if procs:
            self._tell("".join(f"-{proc.pid}\n" for proc in procs))

    def _tell(self, lines: str) -> bool:
        try:
            if self.guard is None:
                self.guard = subprocess.Popen(
                    [sys.executable, "-S", "-I", "-c", _GUARD], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            self.guard.stdin.write(lines.encode())
            self.guard.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def _end_guard(self) -> None:
        if self.guard is not None:
            with contextlib.suppress(OSError, ValueError):
                self.guard.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.guard.wait(timeout=5.0)
            self.guard = None


PAUSE = Pause()


def suits(ws: Workspace) -> bool:
    """Whether train.py can run in a process that imported torch before it ran: it must not
    set environment variables (reading them is fine)."""
    try:
        tree = ast.parse((ws.root / TRAIN).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return False  # a cold start reports the problem as train.py's own
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load) \
                and _is_environ(node.value):
            return False  # os.environ["X"] = ... or del os.environ["X"]
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("putenv", "unsetenv"):
                return False
            if isinstance(func, ast.Attribute) and name in _CHANGES and _is_environ(func.value):
                return False
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None \
                and _is_environ(node.value):
            return False  # an alias could be changed later, out of sight
    return True


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id == "environ")


class WarmTrainer:
    """A sandboxed interpreter in a worker's tree, torch imported, waiting for its experiment.

    Its output folder is a stage of its own (the experiment is not known when it starts); `run`
    moves the model and the log into the experiment's folder afterwards.
    """

    def __init__(self, ws: Workspace, stage: Path, limits: supervision.Limits,
                 readable: list[Path], hidden: list[Path], cache: Path, env: dict[str, str],
                 devices: bool = True):
        self.stage = stage
        (stage / "model").mkdir(parents=True)
        self.on_log: Callable[[dict], None] | None = None
        argv, self.sandboxed = sandbox.wrap(
            [sys.executable, "-c", LAUNCHER.read_text()], cwd=ws.root,
            readable=[ws.root, *readable], writable=[stage, cache], hidden=hidden,
            held_out=sandbox.HELD_OUT, devices=devices)
        self.ready_file = stage / "model" / ".ready"  # in a folder the child may write
        self.child = supervision.Child(
            argv, ws.root, sandbox.child_env({**env, "RATCHET_READY": str(self.ready_file)}),
            stage / "train.log", self._log, stdin=True, limits=limits)
        PAUSE.getting_ready(self.child)

    def wait_ready(self, timeout: float,
                   should_kill: Callable[[], bool] | None = None) -> str:
        """Wait until the process has done its imports: "ready", or "gone" if it died or
        took too long, or "killed" if a kill was asked for meanwhile."""
        PAUSE.needed(self.child)
        end = time.monotonic() + timeout
        while not self.ready_file.exists():
            if should_kill and should_kill():
                return schema.KILLED
            if self.child.proc is None or self.child.proc.poll() is not None \
                    or time.monotonic() > end:
                return "gone"
            time.sleep(0.02)
        self.ready_file.unlink(missing_ok=True)
        return "ready"

    def _log(self, record: dict) -> None:
        if self.on_log is not None:
            self.on_log(record)

    def run(self, env: dict[str, str], out_dir: Path, deadline: float,
            on_log: Callable[[dict], None] | None,
            should_kill: Callable[[], bool] | None, cpu_allowance: float = 0.0,
            ) -> tuple[str, str, supervision.Child] | None:
        """Run train.py with the experiment's environment until it hands over its model or
        its allowance (`deadline` s, and `cpu_allowance` CPU seconds of its tree where not 0)
        runs out; None if the process is gone (the caller then starts one cold)."""
        self.on_log = on_log
        ready = self.wait_ready(READY_TIMEOUT_S, should_kill)
        if ready == schema.KILLED:
            self.child.stop()
            return schema.KILLED, "killed on request", self.child
        if ready == "gone":
            return None
        # its clock starts with this line: the deadline is the allowance from now
        env = {**env, "RATCHET_OUT": str(self.stage / "model"),
               "RATCHET_DEADLINE": repr(time.time() + deadline)}
        with PAUSE.training_on(env.get("RATCHET_DEVICE", "")):
            # its imports are not its run's: the CPU clock starts here too
            tree = self.child.meter() if cpu_allowance and self.child.proc else None
            if not self.child.send(json.dumps(env)):
                return None
            status, error = self.child.watch(
                deadline, should_kill,
                handed_over=supervision.model_handed_over(self.stage / "model"),
                late=schema.OVER_BUDGET, cpu=tree, cpu_allowance=cpu_allowance)
        shutil.rmtree(out_dir / "model", ignore_errors=True)
        for name in ("model", "train.log"):  # a missing model is reported by the caller
            if (self.stage / name).is_symlink():
                continue  # the trainer could write its stage: a link is never followed
            with contextlib.suppress(OSError):
                os.replace(self.stage / name, out_dir / name)
        return status, error, self.child

    def close(self) -> None:
        """Stop the process if it still waits (it exits on its closed stdin) and drop its stage."""
        PAUSE.needed(self.child)
        self.child.stop()
        shutil.rmtree(self.stage, ignore_errors=True)
