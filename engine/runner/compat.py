"""Driving an existing autoresearch checkout: its own train.py, prepare.py and program.md.

autoresearch's train.py trains for prepare.py's TIME_BUDGET, evaluates itself and prints a summary
block after a `---` line (`val_bpb:`, `peak_vram_mb:`, ...). Ratchet runs it under the same
supervision as its own experiments (own process group, hard deadline, bounded output) and reads
the metric from that block; every record marks it as self-reported, since train.py could print
anything. The checkout's prepare.py is still guarded: a run that changes it is undone and counted
as a crash.
"""

from __future__ import annotations

import ast
import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import git

from ratchet.engine.runner import experiment, supervision
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import HARNESS, PROGRAM, TRAIN, Workspace

KIND = "autoresearch"
DEFAULT_BUDGET_S = 300.0  # autoresearch's TIME_BUDGET, when prepare.py does not say plainly
EXCLUDED = ("ratchet.toml", "runs/")  # kept out of the checkout's `git status`
STEP_EVERY_S = 0.5  # progress lines become train_log records at most this often
_STEP = re.compile(rb"step\s+(\d+).*?loss:\s*([-+0-9.eE]+)")
_TOK_S = re.compile(rb"tok/sec:\s*([0-9,]+)")


class CompatError(Exception):
    """The folder cannot be driven in compat mode; one line."""


def time_budget(prepare_source: str) -> float | None:
    """prepare.py's `TIME_BUDGET = <number>`, or None when it is not a plain constant."""
    try:
        tree = ast.parse(prepare_source)
    except SyntaxError:
        return None
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else getattr(node, "target", None) if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "TIME_BUDGET":
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
            return None
    return None


def checkout_config(root: Path) -> Config:
    """Settings for driving this checkout: its budget, generous grace, one baseline, no confirm.

    autoresearch's train.py fixes its own seed, so extra baseline seeds and a confirmation run
    with another seed would only repeat the same run.
    """
    config = Config()
    ex = config.experiment
    ex.compat = KIND
    ex.device = "auto"
    ex.editable = [TRAIN]
    ex.budget_seconds = time_budget((root / HARNESS).read_text(errors="replace")) \
        or DEFAULT_BUDGET_S
    # start-up, compilation and the final evaluation all happen inside train.py
    ex.grace_seconds = max(180.0, ex.budget_seconds)
    ex.min_improvement = 0.0
    config.loop.baseline_seeds = 1
    config.loop.confirm = False
    return config


def prepare_checkout(root: Path, echo: Callable[[str], None] = print) -> Workspace:
    """Make an autoresearch checkout drivable: write ratchet.toml on first use, keep it and
    runs/ out of git, and check the files the loop needs are there."""
    root = root.resolve()
    missing = [name for name in (TRAIN, HARNESS, PROGRAM) if not (root / name).is_file()]
    if missing:
        raise CompatError(f"{root} is not an autoresearch checkout: no {', '.join(missing)}")
    try:
        repo = git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise CompatError(f"{root} is not the root of a git repository; autoresearch "
                          f"checkouts are") from None
    path = root / configmod.CONFIG_NAME
    if path.is_file():
        if configmod.load(root).experiment.compat != KIND:
            raise CompatError(f"{root} is a Ratchet workspace, not an autoresearch checkout; "
                              f"run without --compat")
    else:
        configmod.save(root, checkout_config(root))
        echo(f"compat: wrote {path.name} for this checkout (budget "
             f"{configmod.load(root).experiment.budget_seconds:g} s from {HARNESS}); it and runs/ "
             f"are listed in .git/info/exclude")
    _exclude(repo, EXCLUDED)
    return Workspace(root)


def _exclude(repo: git.Repo, patterns: tuple[str, ...]) -> None:
    exclude = Path(repo.git_dir) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    new = [p for p in patterns if p not in lines]
    if new:
        with open(exclude, "a") as f:
            f.write(("\n" if lines and lines[-1] else "") + "\n".join(new) + "\n")


class _ProgressPump(supervision.OutputPump):
    """Reads autoresearch's `\\rstep 00042 (12.3%) | loss: 3.21 | ... | tok/sec: 1,234` lines."""

    def __init__(self, stream, log_path: Path, on_line):
        super().__init__(stream, log_path, on_line)
        self._since = time.monotonic()
        self._last = -math.inf
        self._line = b""

    def _parse(self, chunk: bytes) -> None:
        lines = (self._line + chunk.replace(b"\r", b"\n")).split(b"\n")
        self._line = lines.pop()[-supervision.MAX_LOG_LINE:]
        for line in lines:
            match = _STEP.search(line[:supervision.MAX_LOG_LINE])
            now = time.monotonic()
            if match is None or now - self._last < STEP_EVERY_S:
                continue
            try:
                record = {"step": int(match.group(1)), "loss": float(match.group(2))}
            except ValueError:
                continue
            if not math.isfinite(record["loss"]):
                continue
            tok_s = _TOK_S.search(line)
            if tok_s:
                record["tok_s"] = float(tok_s.group(1).replace(b",", b""))
            record["elapsed"] = round(now - self._since, 3)
            self._last = now
            self.records.append(record)
            if self.on_line:
                self.on_line(record)


def parse_summary(text: str) -> dict[str, float]:
    """The `key: number` lines after the last `---` line of train.py's output."""
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() == "---"]
    summary: dict[str, float] = {}
    for line in lines[marks[-1] + 1:] if marks else lines:
        key, sep, value = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            continue
        try:
            summary[key.strip()] = float(value.strip().replace(",", ""))
        except ValueError:
            continue
    return summary


def _python(root: Path) -> str:
    """The checkout's own environment (uv makes .venv there), else Ratchet's interpreter."""
    own = root / ".venv" / "bin" / "python"
    return str(own) if own.is_file() and os.access(own, os.X_OK) else sys.executable


def train_and_report(ws: Workspace, config: Config, out_dir: Path, result: experiment.Result,
                     on_log, should_kill, on_phase) -> None:
    """Fill `result` from one run of the checkout's train.py and its printed summary."""
    result.metric_source = "self_reported"
    harness = ws.root / HARNESS
    if not (ws.root / TRAIN).is_file():
        result.error = f"{TRAIN} is missing from the checkout"
        return
    before = harness.read_bytes() if harness.is_file() else None
    env = dict(os.environ, PYTHONUNBUFFERED="1", RATCHET_SEED=str(result.seed),
               RATCHET_BUDGET_S=repr(result.budget_seconds))
    deadline = result.budget_seconds + config.experiment.grace_seconds
    on_phase("training")
    status, error, pump = supervision.supervise(
        [_python(ws.root), TRAIN], ws.root, env, out_dir / "train.log", deadline, on_log,
        should_kill, pump_class=_ProgressPump)
    pump.record_into(result)
    if before is not None and (not harness.is_file() or harness.read_bytes() != before):
        harness.write_bytes(before)  # the next experiment gets the checkout's own prepare.py
        result.status, result.error = "crash", f"train.py modified {HARNESS}; restored it"
        return
    if status != "ok":
        result.status, result.error = status, error
        return
    summary = parse_summary(result.tail)
    result.reported = summary
    val = summary.get("val_bpb")
    if val is None:
        result.status, result.error = "crash", "train.py printed no `val_bpb:` line"
        return
    if not math.isfinite(val):
        result.status, result.error = "crash", "val_bpb is not finite (the model diverged)"
        return
    result.status, result.val_bpb = "ok", val
    result.training_seconds = round(summary.get("training_seconds", 0.0), 3)
    result.peak_memory_mb = round(summary.get("peak_vram_mb", 0.0), 1)
    result.mfu = summary.get("mfu_percent")
    result.tokens = int(summary.get("total_tokens_M", 0.0) * 1e6)
    result.steps = int(summary.get("num_steps", 0))
    result.params = int(summary.get("num_params_M", 0.0) * 1e6)

