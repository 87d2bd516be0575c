"""Training processes started before their turn, so an experiment's start-up costs no device time.

While one experiment trains, its worker starts the process for the next: the sandbox, the
interpreter, torch and its compiler front end are ready when the next experiment begins, which
then only sends its environment (budget, seed, output folder) and train.py runs at once. A
train.py that touches environment variables starts cold instead, since torch reads some of them
at import; so does every one where `warm_start = false`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ratchet.engine.runner import sandbox, supervision
from ratchet.engine.workspace.layout import TRAIN, Workspace

LAUNCHER = Path(__file__).with_name("warm_child.py")
READY_TIMEOUT_S = 120.0  # for the imports of a process started (just) before its turn
_CHANGES = ("update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__")


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
                 readable: list[Path], hidden: list[Path], cache: Path, env: dict[str, str]):
        self.stage = stage
        (stage / "model").mkdir(parents=True)
        self.on_log: Callable[[dict], None] | None = None
        argv, self.sandboxed = sandbox.wrap(
            [sys.executable, "-c", LAUNCHER.read_text()], cwd=ws.root,
            readable=[ws.root, *readable], writable=[stage, cache], hidden=hidden,
            held_out=sandbox.HELD_OUT)
        self.ready_file = stage / "model" / ".ready"  # in a folder the child may write
        self.child = supervision.Child(
            argv, ws.root, sandbox.child_env({**env, "RATCHET_READY": str(self.ready_file)}),
            stage / "train.log", self._log, stdin=True, limits=limits)

    def wait_ready(self, timeout: float,
                   should_kill: Callable[[], bool] | None = None) -> str:
        """Wait until the process has done its imports: "ready", or "gone" if it died or
        took too long, or "killed" if a kill was asked for meanwhile."""
        end = time.monotonic() + timeout
        while not self.ready_file.exists():
            if should_kill and should_kill():
                return "killed"
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
            should_kill: Callable[[], bool] | None,
            ) -> tuple[str, str, supervision.Child] | None:
        """Run train.py with the experiment's environment until it hands over its model or
        its allowance (`deadline` s) runs out; None if the process is gone (the caller then
        starts one cold)."""
        self.on_log = on_log
        ready = self.wait_ready(READY_TIMEOUT_S, should_kill)
        if ready == "killed":
            self.child.stop()
            return "killed", "killed on request", self.child
        if ready == "gone":
            return None
        # its clock starts with this line: the deadline is the allowance from now
        env = {**env, "RATCHET_OUT": str(self.stage / "model"),
               "RATCHET_DEADLINE": repr(time.time() + deadline)}
        if not self.child.send(json.dumps(env)):
            return None
        status, error = self.child.watch(
            deadline, should_kill, handed_over=supervision.model_handed_over(self.stage / "model"),
            late="over_budget")
        shutil.rmtree(out_dir / "model", ignore_errors=True)
        for name in ("model", "train.log"):  # a missing model is reported by the caller
            if (self.stage / name).is_symlink():
                continue  # the trainer could write its stage: a link is never followed
            with contextlib.suppress(OSError):
                os.replace(self.stage / name, out_dir / name)
        return status, error, self.child

    def close(self) -> None:
        """Stop the process if it still waits (it exits on its closed stdin) and drop its stage."""
        self.child.stop()
        shutil.rmtree(self.stage, ignore_errors=True)
