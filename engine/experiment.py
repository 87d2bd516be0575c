"""One experiment: train.py in a child process under a hard deadline, then the frozen evaluation.

Nothing the experiment does can fail the caller: a crash, NaN, hang, flood of output, tampered
harness or rejected model is a recorded status with the tail of the output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ratchet.engine import hardware, sandbox
from ratchet.engine.config import Config
from ratchet.engine.workspace import HARNESS, TRAIN, Workspace, harness_path, resolve_device

LOG_CAP_BYTES = 8 * 2**20  # stdout kept on disk per experiment; the rest is counted, not stored
TAIL_BYTES = 16 * 2**10  # output tail kept in the result
MAX_LOG_LINE = 4096  # longer lines are never parsed as training logs
KILL_WAIT_S = 3.0  # between SIGTERM and SIGKILL

STATUSES = ("ok", "crash", "timeout", "killed")


@dataclass
class Result:
    status: str = "crash"
    error: str = ""
    val_bpb: float | None = None
    training_seconds: float = 0.0
    total_seconds: float = 0.0
    startup_seconds: float = 0.0
    compile_seconds: float = 0.0
    export_seconds: float = 0.0
    eval_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    tokens: int = 0
    params: int = 0
    steps: int = 0
    mfu: float | None = None
    seed: int = 0
    budget_seconds: float = 0.0
    device: str = ""
    device_name: str = ""
    sandboxed: bool = False
    output_bytes: int = 0
    tail: str = ""
    metric_source: str = "harness"  # or "self_reported": read from train.py's own output
    reported: dict = field(default_factory=dict)  # train.py's printed summary (compat mode)
    train_log: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        del data["train_log"]  # kept in train_log.jsonl beside result.json
        return data


class _OutputPump(threading.Thread):
    """Drains the child's output so it can never block: log file (capped), tail, log lines."""

    def __init__(self, stream, log_path: Path, on_line: Callable[[dict], None] | None):
        super().__init__(daemon=True)
        self.stream, self.log_path, self.on_line = stream, log_path, on_line
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0
        self.records: list[dict] = []
        self._partial = b""

    def run(self) -> None:
        with open(self.log_path, "wb") as log:
            while chunk := self.stream.read1(65536):
                self.total += len(chunk)
                room = LOG_CAP_BYTES - log.tell()
                if room > 0:
                    log.write(chunk[:room])
                    if len(chunk) > room:
                        log.write(b"\n[ratchet: output beyond this point not stored]\n")
                self._keep_tail(chunk)
                self._parse(chunk)

    def _keep_tail(self, chunk: bytes) -> None:
        self.tail.append(chunk[-TAIL_BYTES:])
        self.tail_size += len(self.tail[-1])
        while self.tail_size - len(self.tail[0]) >= TAIL_BYTES:
            self.tail_size -= len(self.tail.popleft())

    def _parse(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LOG_LINE:
            self._partial = b""
        for line in lines:
            if not line.startswith(b"{") or len(line) > MAX_LOG_LINE:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                record = {k: v for k, v in record.items() if k in
                          ("step", "loss", "lr", "tok_s", "elapsed")
                          and isinstance(v, (int, float))}
                self.records.append(record)
                if self.on_line:
                    self.on_line(record)

    def record_into(self, result: Result) -> None:
        """Hand the training run's log records, output size and output tail to its result."""
        result.train_log = self.records
        result.output_bytes = self.total
        result.tail = self.tail_text()

    def tail_text(self) -> str:
        text = b"".join(self.tail)[-TAIL_BYTES:].decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-60:])


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, KILL_WAIT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
    # the group may outlive its leader (a grandchild): make sure it is gone
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _number(summary: dict, name: str, kind=float, default=0):
    value = summary.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return kind(value)


def run(ws: Workspace, config: Config, out_dir: Path, *, seed: int | None = None,
        budget: float | None = None, on_log: Callable[[dict], None] | None = None,
        should_kill: Callable[[], bool] | None = None,
        on_phase: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None) -> Result:
    """Run one experiment of the workspace as it is on disk; the result is also in out_dir.

    `env` adds variables to the training and evaluation children (e.g. CUDA_VISIBLE_DEVICES for
    a worker that owns one GPU).
    """
    ex = config.experiment
    result = Result(seed=ex.seed if seed is None else seed,
                    budget_seconds=ex.budget_seconds if budget is None else budget,
                    device=ex.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        if ex.compat:  # an existing autoresearch checkout, its metric self-reported
            from ratchet.engine import compat

            compat.train_and_report(ws, config, out_dir, result, on_log, should_kill,
                                    on_phase or (lambda _phase: None))
        else:
            _train_and_evaluate(ws, config, out_dir, result, on_log, should_kill,
                                on_phase or (lambda _phase: None), env or {})
    finally:
        result.total_seconds = round(time.time() - started, 3)
        (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
        with open(out_dir / "train_log.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in result.train_log)
    return result


def _train_and_evaluate(ws, config, out_dir, result, on_log, should_kill, on_phase,
                        extra_env) -> None:
    if not ws.harness_intact():
        result.error = f"{HARNESS} differs from Ratchet's frozen harness; restore it"
        return
    if not (ws.root / TRAIN).is_file():
        result.error = f"{TRAIN} is missing from the workspace"
        return
    corpus = ws.corpus(config)
    data = config.data
    device = result.device = resolve_device(config.experiment.device)
    model_dir = out_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir()
    compile_cache = corpus.root.parent.parent / "compile-cache"
    compile_cache.mkdir(parents=True, exist_ok=True)
    env = sandbox.child_env({
        "RATCHET_BUDGET_S": repr(result.budget_seconds),
        "RATCHET_DEVICE": device,
        "RATCHET_SEED": str(result.seed),
        "RATCHET_EVAL_SHAPE": f"{data.eval_batch},{data.eval_seq}",
        "RATCHET_TRAIN_DATA": str(corpus.train_path),
        "RATCHET_OUT": str(model_dir),
        "TORCHINDUCTOR_CACHE_DIR": str(compile_cache / "inductor"),
        "TRITON_CACHE_DIR": str(compile_cache / "triton"),
        **extra_env,
    })
    argv, result.sandboxed = sandbox.wrap(
        [sys.executable, TRAIN], cwd=ws.root,
        readable=[ws.root, corpus.train_path.parent],
        writable=[model_dir, compile_cache],
        hidden=[corpus.root.parent],
    )
    deadline = result.budget_seconds + config.experiment.grace_seconds
    on_phase("training")
    status, error, pump = _supervise(argv, ws.root, env, out_dir / "train.log", deadline,
                                     on_log, should_kill)
    pump.record_into(result)
    if not ws.harness_intact():  # whatever happened, the next experiment gets a clean harness
        ws.restore_harness()
        result.status, result.error = "crash", f"train.py modified {HARNESS}; restored it"
        return
    if status != "ok":
        result.status, result.error = status, error
        return
    summary = _read_summary(model_dir / "summary.json")
    if not (model_dir / "model.pt2").is_file() or summary is None:
        result.error = "train.py finished without handing a model to the harness " \
                       "(prepare.save_model was not called)"
        return
    result.steps = _number(summary, "steps", int)
    result.tokens = _number(summary, "tokens", int)
    result.params = _number(summary, "params", int)
    for name in ("training_seconds", "startup_seconds", "compile_seconds", "export_seconds",
                 "peak_memory_mb"):
        setattr(result, name, round(_number(summary, name), 3))
    on_phase("evaluating")
    _evaluate(config, corpus, model_dir, out_dir, result, extra_env)
    if result.status == "ok" and device == "cuda":
        flops = _number(summary, "flops_per_token") * result.tokens
        result.mfu = hardware.mfu(flops, result.training_seconds, result.device_name)


def _read_summary(path: Path) -> dict | None:
    try:
        if path.stat().st_size > 65536:
            return None
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _supervise(argv, cwd, env, log_path, deadline, on_log, should_kill,
               pump_class: type[_OutputPump] = _OutputPump):
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as exc:
        pump = pump_class(None, log_path, None)
        return "crash", f"cannot start training: {exc}", pump
    pump = pump_class(proc.stdout, log_path, on_log)
    pump.start()
    end = time.monotonic() + deadline
    status, error = "ok", ""
    while proc.poll() is None:
        if time.monotonic() > end:
            status, error = "timeout", f"training exceeded budget + grace ({deadline:g} s); killed"
            break
        if should_kill and should_kill():
            status, error = "killed", "killed on request"
            break
        time.sleep(0.05)
    _stop_group(proc)  # also reaps anything the trainer left behind in its group
    pump.join(timeout=5.0)
    proc.stdout.close()
    if status == "ok" and proc.returncode != 0:
        status = "crash"
        error = _last_error_line(pump.tail_text()) or f"train.py exited with {proc.returncode}"
    return status, error, pump


def _last_error_line(tail: str) -> str:
    for line in reversed(tail.splitlines()):
        line = line.strip()
        if line and not line.startswith("{"):
            return line[:300]
    return ""


def _evaluate(config: Config, corpus, model_dir: Path, out_dir: Path, result: Result,
              extra_env: dict[str, str]) -> None:
    """Run the frozen harness shipped with Ratchet (not the workspace copy) on the model."""
    data = config.data
    private = Path(tempfile.mkdtemp(prefix="ratchet-eval-"))
    try:
        shutil.copy(harness_path(), private / HARNESS)
        shutil.copy(model_dir / "model.pt2", private / "model.pt2")
        command = [sys.executable, "-I", str(private / HARNESS), "evaluate",
                   "--model", str(private / "model.pt2"), "--val", str(corpus.val_path),
                   "--tokens", str(data.eval_tokens), "--device", result.device,
                   "--shape", f"{data.eval_batch},{data.eval_seq}",
                   "--out", str(private / "eval.json")]
        argv, _ = sandbox.wrap(command, cwd=private, readable=[corpus.val_path.parent],
                               writable=[private], hidden=[corpus.root.parent])
        env = sandbox.child_env({**extra_env, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"})
        status, error, pump = _supervise(argv, private, env, out_dir / "eval.log",
                                         config.experiment.eval_timeout_seconds, None, None)
        evaluation = _read_summary(private / "eval.json")
        if evaluation is None:
            detail = error or _last_error_line(pump.tail_text()) or "no result"
            result.status, result.error = "crash", f"evaluation failed: {detail}"
            result.tail = (result.tail + "\n--- evaluation ---\n" + pump.tail_text()).strip()
            return
        if "error" in evaluation:
            result.status, result.error = "crash", f"model rejected: {evaluation['error']}"
            return
        val_bpb = _number(evaluation, "val_bpb", float, None)
        result.eval_seconds = round(_number(evaluation, "eval_seconds"), 3)
        result.device_name = str(evaluation.get("device_name", ""))[:100]
        if val_bpb is None:
            result.status, result.error = "crash", "val_bpb is not finite (the model diverged)"
            return
        result.status, result.val_bpb = "ok", val_bpb
    finally:
        shutil.rmtree(private, ignore_errors=True)


def summary_text(result: Result) -> str:
    """autoresearch-style summary block, one value per line."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    rows = [
        ("val_bpb", fmt(result.val_bpb, ".6f")),
        ("training_seconds", f"{result.training_seconds:.1f}"),
        ("total_seconds", f"{result.total_seconds:.1f}"),
        ("startup_seconds", f"{result.startup_seconds:.1f}"),
        ("compile_seconds", f"{result.compile_seconds:.1f}"),
        ("eval_seconds", f"{result.eval_seconds:.1f}"),
        ("peak_vram_mb" if result.device == "cuda" else "peak_memory_mb",
         f"{result.peak_memory_mb:.1f}"),
        ("mfu_percent", fmt(result.mfu, ".2f")),
        ("total_tokens_M", f"{result.tokens / 1e6:.1f}"),
        ("num_steps", str(result.steps)),
        ("num_params_M", f"{result.params / 1e6:.2f}"),
        ("status", result.status),
    ]
    if result.error:
        rows.append(("error", result.error))
    return "---\n" + "\n".join(f"{k + ':':<18}{v}" for k, v in rows)
