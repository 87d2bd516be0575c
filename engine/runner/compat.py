"""Driving an existing autoresearch checkout: its own train.py, prepare.py and program.md.

autoresearch's train.py trains for prepare.py's TIME_BUDGET, evaluates itself and prints a summary
block after a `---` line (`val_bpb:`, `peak_vram_mb:`, ...). Ratchet runs it under the same
supervision as its own experiments (own process group, hard deadline, bounded output) and reads
the metric from that block; every record marks it as self-reported, since train.py could print
anything. The printed block is the hand-off: a run that printed it is done, whatever it does
after. The checkout's prepare.py is still guarded: a run that changes it is undone and counted
as a crash.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import git

from ratchet.engine.protocol import schema
from ratchet.engine.runner import supervision
from ratchet.engine.runner.result import Result
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace.autoresearch import time_budget
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import HARNESS, PROGRAM, TRAIN, Workspace

KIND = "autoresearch"
DEFAULT_BUDGET_S = 300.0  # autoresearch's TIME_BUDGET, when prepare.py does not say plainly
# What a change must gain when train.py fixes its own seed and noise cannot be measured
MIN_IMPROVEMENT = 0.01
SEED_VARIABLE = "RATCHET_SEED"  # a train.py that reads it takes Ratchet's seed
HANDOFF_S = 5.0  # after its summary, the seconds a run gets to exit before it is stopped
EXCLUDED = ("ratchet.toml", "runs/")  # kept out of the checkout's `git status`
STEP_EVERY_S = 0.5  # progress lines become train_log records at most this often
_STEP = re.compile(rb"step\s+(\d+).*?loss:\s*([-+0-9.eE]+)")
_TOK_S = re.compile(rb"tok/sec:\s*([0-9,]+)")
_SUMMARY_VAL = re.compile(rb"\s*val_bpb:\s*\S")
SUMMARY_LINES = 200  # lines of the summary block kept
_CUT = b"\n[ratchet: output beyond this point not stored]\n"
# train.py with a budget of its own: prepare.TIME_BUDGET set as train.py imports prepare, before
# train.py reads it, so the file on disk stays as it is and train.py's imports keep their order
_WITH_BUDGET = """import importlib.machinery, runpy, sys
budget = float(sys.argv[1])
class Budget:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "prepare":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module
            def exec_module(module):
                load(module)
                module.TIME_BUDGET = budget
            spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Budget)
sys.argv = ["train.py"]
runpy.run_path("train.py", run_name="__main__")
"""


class CompatError(Exception):
    """The folder cannot be driven in compat mode; one line."""


def takes_seed(train_source: str) -> bool:
    """Whether train.py reads the seed Ratchet gives each run (RATCHET_SEED)."""
    return SEED_VARIABLE in train_source


def checkout_config(root: Path) -> Config:
    """Settings for driving this checkout: its budget, generous grace, and the native statistics
    where train.py takes a seed.

    autoresearch's train.py fixes its own seed, so extra baseline seeds and further runs of a
    candidate on other seeds would only repeat the same run: then the margin rule with one
    baseline and no confirmation (each candidate runs once), and a change must gain
    MIN_IMPROVEMENT, since the noise cannot be measured.
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
    if not takes_seed((root / TRAIN).read_text(errors="replace")):
        ex.min_improvement = MIN_IMPROVEMENT
        config.loop.baseline_seeds = 1
        config.loop.confirm = False
        config.loop.rule = "margin"  # the paired rule would run a winner on seeds it ignores
    return config


def statistics_note(root: Path, config: Config) -> str:
    """One line on how this checkout's runs are judged, as the settings will judge them."""
    ex, loop = config.experiment, config.loop
    if not takes_seed((root / TRAIN).read_text(errors="replace")):
        keeps = (f"only gains above min_improvement = {ex.min_improvement:g} are kept"
                 + (f" (ratchet.toml; compat's default is {MIN_IMPROVEMENT:g})"
                    if ex.min_improvement < MIN_IMPROVEMENT else ""))
        line = f"compat: {TRAIN} takes no seed ({SEED_VARIABLE}); its noise cannot be measured"
        if loop.rule == "paired":  # settings from an earlier release, or by hand
            return (f'{line}; ratchet.toml sets rule = "paired", which runs a promising candidate '
                    f'again on seeds {TRAIN} ignores (rule = "margin" fits it); {keeps}')
        if loop.confirm or loop.baseline_seeds > 1:
            return (f"{line}; ratchet.toml asks for repeated runs (baseline_seeds, confirm), "
                    f"which its fixed seed makes identical; {keeps}")
        return f"{line}: each candidate runs once and {keeps}"
    if loop.rule == "paired":
        return (f"compat: {TRAIN} reads {SEED_VARIABLE}: the paired rule, {loop.baseline_seeds} "
                f"baseline seeds measure its noise and a promising candidate runs on the best's "
                f"seeds in turn")
    return (f"compat: {TRAIN} reads {SEED_VARIABLE}: the margin rule, {loop.baseline_seeds} "
            f"baseline seeds measure its noise" + (
                ", and each winner is confirmed with another seed" if loop.confirm else ""))


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
    if _own_python(root) is None:
        echo(f"compat: no .venv/bin/python in {root}; {TRAIN} runs with Ratchet's interpreter, "
             f"{sys.executable}")
    echo(statistics_note(root, configmod.load(root)))
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
    """Reads autoresearch's `\\rstep 00042 (12.3%) | loss: 3.21 | ... | tok/sec: 1,234` lines,
    and the summary block after the last `---` line (`summary_at`: when its val_bpb came)."""

    def __init__(self, stream, log_path: Path, on_line):
        super().__init__(stream, log_path, on_line)
        self._since = time.monotonic()
        self._last = -math.inf
        self._line = b""
        self.block: deque[bytes] = deque(maxlen=SUMMARY_LINES)
        self.marked = False  # a `---` line came
        self.summary_at: float | None = None

    def run(self) -> None:
        """OutputPump's, written unbuffered: each chunk is on disk as it arrives, so train.log
        can be followed live (`tail -f`), as autoresearch users follow its run.log."""
        with open(self.log_path, "wb", buffering=0) as log:
            while chunk := self.stream.read1(65536):
                room = supervision.LOG_CAP_BYTES - self.total
                self.total += len(chunk)
                if room > 0:
                    log.write(chunk[:room] + (_CUT if len(chunk) > room else b""))
                self._keep_tail(chunk)
                self._parse(chunk)

    def _parse(self, chunk: bytes) -> None:
        lines = (self._line + chunk.replace(b"\r", b"\n")).split(b"\n")
        self._line = lines.pop()[-supervision.MAX_LOG_LINE:]
        for line in lines:
            self._summary(line[:supervision.MAX_LOG_LINE])
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

    def _summary(self, line: bytes) -> None:
        if self.summary_at is not None:  # what follows the summary never pushes it out
            if len(self.block) < SUMMARY_LINES and line.strip() != b"---":
                self.block.append(line)
        elif line.strip() == b"---":
            self.block.clear()  # a block begins
            self.marked = True
        else:
            self.block.append(line)
            if self.marked and _SUMMARY_VAL.match(line):
                self.summary_at = time.monotonic()

    def summary_text(self) -> str:
        """The summary block's lines (all output, when there was no `---` line)."""
        return b"\n".join([*self.block, self._line]).decode("utf-8", errors="replace")


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


def checkout_root(tree: Path) -> Path:
    """The checkout a tree belongs to: its main working tree when the tree is one of its git
    worktrees (where experiments run, under runs/), else the tree itself."""
    try:
        common = Path(git.Repo(tree).common_dir).resolve()
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return tree
    return common.parent if common.name == ".git" else tree


def _own_python(root: Path) -> Path | None:
    """The checkout's own environment, which uv makes in .venv; None where there is none."""
    own = checkout_root(root) / ".venv" / "bin" / "python"
    return own if own.is_file() and os.access(own, os.X_OK) else None


def _argv(ws: Workspace, budget: float) -> list[str]:
    """train.py, under the checkout's own Python, training for `budget` seconds."""
    python = str(_own_python(ws.root) or sys.executable)
    if time_budget((ws.root / HARNESS).read_text(errors="replace")) == budget:
        return [python, TRAIN]
    return [python, "-c", _WITH_BUDGET, repr(budget)]


def train_and_report(ws: Workspace, config: Config, out_dir: Path, result: Result,
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
    on_phase(schema.PHASE_TRAINING)
    child = supervision.Child(_argv(ws, result.budget_seconds), ws.root, env,
                              out_dir / "train.log", on_log, pump_class=_ProgressPump)
    pump: _ProgressPump = child.pump

    def summary_done() -> bool:  # printed its summary a while ago: stop it, keep the result
        return pump.summary_at is not None and time.monotonic() - pump.summary_at >= HANDOFF_S

    status, error = child.watch(deadline, should_kill, handed_over=summary_done)
    if pump.summary_at is not None:  # whatever came after the summary: the run was done
        status, error = schema.OK, ""
    pump.record_into(result)
    if before is not None and (not harness.is_file() or harness.read_bytes() != before):
        harness.write_bytes(before)  # the next experiment gets the checkout's own prepare.py
        result.status, result.error = schema.CRASHED, f"train.py modified {HARNESS}; restored it"
        return
    if status != "ok":
        result.status, result.error = status, error
        return
    summary = parse_summary(pump.summary_text())
    result.reported = summary
    val = summary.get("val_bpb")
    if val is None:
        result.status, result.error = schema.CRASHED, "train.py printed no `val_bpb:` line"
        return
    if not math.isfinite(val):
        result.status, result.error = schema.CRASHED, "val_bpb is not finite (the model diverged)"
        return
    result.status, result.val_bpb = schema.OK, val
    for name in ("training_seconds", "startup_seconds", "compile_seconds", "eval_seconds"):
        setattr(result, name, round(summary.get(name, 0.0), 3))  # 0 where it prints none
    result.peak_memory_mb = round(summary.get("peak_vram_mb", 0.0), 1)
    result.mfu = summary.get("mfu_percent")
    result.tokens = int(summary.get("total_tokens_M", 0.0) * 1e6)
    result.steps = int(summary.get("num_steps", 0))
    result.params = int(summary.get("num_params_M", 0.0) * 1e6)

