"""One experiment: train.py in a child process under a hard deadline, then the frozen evaluation.

Nothing the experiment does can fail the caller: a crash, NaN, hang, flood of output, tampered
harness or rejected model is a recorded status with the tail of the output.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from ratchet.engine.protocol import schema
from ratchet.engine.runner import compat, cpu_clock, devices, sandbox, supervision, warm_trainer
from ratchet.engine.runner.evaluation import Evaluator
from ratchet.engine.runner.result import Result
from ratchet.engine.runner.warm_trainer import WarmTrainer
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import HARNESS, TRAIN, Workspace


def run(ws: Workspace, config: Config, out_dir: Path, *, seed: int | None = None,
        budget: float | None = None, on_log: Callable[[dict], None] | None = None,
        should_kill: Callable[[], bool] | None = None,
        on_phase: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None, warm: WarmTrainer | None = None) -> Result:
    """Run one experiment of the workspace as it is on disk; the result is also in out_dir.

    `env` adds variables to the training and evaluation children (e.g. CUDA_VISIBLE_DEVICES for
    a worker that owns one GPU). `warm`, from `prestart` on the same tree, is used (where
    train.py suits it) and closed either way.
    """
    ex = config.experiment
    result = Result(seed=ex.seed if seed is None else seed,
                    budget_seconds=ex.budget_seconds if budget is None else budget,
                    device=ex.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        if ex.compat:  # an existing autoresearch checkout, its metric self-reported
            compat.train_and_report(ws, config, out_dir, result, on_log, should_kill,
                                    on_phase or (lambda _phase: None))
        else:
            _train_and_evaluate(ws, config, out_dir, result, on_log, should_kill,
                                on_phase or (lambda _phase: None), env or {}, warm)
    finally:
        if warm is not None:
            warm.close()
        result.total_seconds = round(time.time() - started, 3)
        (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
        with open(out_dir / "train_log.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in result.train_log)
    return result


def _train_and_evaluate(ws, config, out_dir, result, on_log, should_kill, on_phase,
                        extra_env, warm) -> None:
    if not ws.harness_intact():
        result.error = f"{HARNESS} differs from Ratchet's frozen harness; restore it"
        return
    if not (ws.root / TRAIN).is_file():
        result.error = f"{TRAIN} is missing from the workspace"
        return
    # from here on the time is the trainer's, its sandbox's set-up too
    on_phase(schema.PHASE_TRAINING)
    corpus, tokens = ws.corpus(config), ws.tokens(config)
    data = config.data
    device = result.device = devices.resolve(config.experiment.device)
    clock = result.clock = run_clock(config)
    model_dir = out_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir()
    cache = _fresh_cache(out_dir / "compile-cache")
    job_env = {
        "RATCHET_BUDGET_S": repr(result.budget_seconds),
        "RATCHET_DEVICE": device,
        "RATCHET_SEED": str(result.seed),
        "RATCHET_EVAL_SHAPE": f"{data.eval_batch},{data.eval_seq}",
        "RATCHET_TRAIN_DATA": str(tokens.train_path),
        "RATCHET_VOCAB_SIZE": str(tokens.vocab_size),
        "RATCHET_OUT": str(model_dir),
    }
    # The trainer's whole allowance is its budget, on the engine's clock: from its start (or,
    # warm, from being told to go) to the hand-off of its model, start-up, compilation and
    # export included. Nothing it reports can stretch it. On the CPU clock it is CPU seconds of
    # every process the trainer starts, the wall clock a backstop.
    wall, cpu = cpu_clock.allowance(clock, result.budget_seconds)
    job_env.update(cpu_clock.trainer_env(clock))
    if cpu:
        job_env["RATCHET_CPU_ALLOWANCE"] = repr(cpu)
    # the evaluator gets ready (imports, warm-up) while training runs
    evaluator = Evaluator(config, corpus, tokens, device, out_dir / "eval.log", extra_env)
    summary, own = None, None
    try:
        ran = None
        if warm_trainer.suits(ws):
            # every run that can starts its clock after its imports, started ahead or not
            if warm is None:
                warm = own = prestart(ws, config, out_dir / "trainer", extra_env, ahead=False)
            ran = warm.run(job_env, out_dir, wall, on_log, should_kill, cpu)
            result.sandboxed = warm.sandboxed
        if ran is None:  # it sets environment variables: its imports count in its allowance
            job_env["RATCHET_DEADLINE"] = repr(time.time() + wall)
            argv, result.sandboxed = sandbox.wrap(
                [sys.executable, TRAIN], cwd=ws.root,
                readable=[ws.root, corpus.train_path.parent], writable=[model_dir, cache],
                hidden=_unseen(ws, corpus), held_out=sandbox.HELD_OUT,
                devices=clock != cpu_clock.CPU)
            env = sandbox.child_env({**_cache_env(cache), **extra_env, **job_env})
            child = supervision.Child(argv, ws.root, env, out_dir / "train.log", on_log,
                                      limits=limits(config))
            tree = child.meter() if cpu else None
            ran = (*child.watch(wall, should_kill,
                                handed_over=supervision.model_handed_over(model_dir),
                                late=schema.OVER_BUDGET, cpu=tree, cpu_allowance=cpu), child)
        status, error, trainer = ran
        trainer.pump.record_into(result)
        if trainer.handoff_seconds is not None:
            result.trainer_seconds = round(trainer.handoff_seconds, 3)
        result.trainer_cpu_seconds = trainer.cpu_seconds
        summary = _handed_over(ws, model_dir, result, status, error)
        if summary is not None:
            on_phase(schema.PHASE_EVALUATING)
            evaluator.evaluate(model_dir, result)
    finally:
        evaluator.close()
        if own is not None:
            own.close()
        shutil.rmtree(cache, ignore_errors=True)
    if summary is not None and result.status == schema.OK and device == "cuda":
        flops = supervision.number(summary, "flops_per_token") * result.tokens
        result.mfu = devices.mfu(flops, result.training_seconds, result.device_name)


def prestart(ws: Workspace, config: Config, stage: Path,
             env: dict[str, str] | None = None, ahead: bool = True) -> WarmTrainer | None:
    """Start the training process for the tree's next experiment ahead of time (see
    warm_start); None where warm starts are off. `env` as for `run`. With `ahead=False`, the
    process for the experiment about to run (warm starts on or off)."""
    ex = config.experiment
    if ex.compat or (ahead and not ex.warm_start):
        return None
    corpus = ws.corpus(config)
    cache, clock = _fresh_cache(stage / "compile-cache"), run_clock(config)
    return WarmTrainer(ws, stage, limits(config), readable=[corpus.train_path.parent],
                       hidden=_unseen(ws, corpus), cache=cache,
                       env={**_cache_env(cache), **cpu_clock.trainer_env(clock), **(env or {})},
                       devices=clock != cpu_clock.CPU)


def run_clock(config: Config) -> str:
    """What the workspace's budget counts for its runs (`cpu_clock.resolve`)."""
    return cpu_clock.resolve(config.experiment.clock, devices.resolve(config.experiment.device))


def limits(config: Config) -> supervision.Limits:
    """The process and memory limits of a trainer's tree."""
    ex = config.experiment
    memory_gb = ex.memory_limit_gb or 0.9 * psutil.virtual_memory().total / 2**30
    return supervision.Limits(ex.max_processes, memory_gb * 1024)


def _unseen(ws: Workspace, corpus) -> list[Path]:
    """What a trainer must not see: every prepared corpus (the training split is shown again),
    and the workspace's runs, where earlier experiments left their models and logs."""
    return [corpus.root.parent, ws.runs_dir()]


def _fresh_cache(folder: Path) -> Path:
    """torch.compile's caches for one training process, empty at its start: a cache that
    outlived an experiment would be a channel from one to the next (bench/compile_cache.py
    measures what that costs)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _cache_env(cache: Path) -> dict[str, str]:
    return {"TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
            "TRITON_CACHE_DIR": str(cache / "triton")}


def _handed_over(ws: Workspace, model_dir: Path, result: Result, status: str,
                 error: str) -> dict | None:
    """The run's summary if training ended well and handed over a model; else None, and the
    result says why."""
    if not ws.harness_intact():  # whatever happened, the next experiment gets a clean harness
        ws.restore_harness()
        result.status, result.error = schema.CRASHED, f"train.py modified {HARNESS}; restored it"
        return None
    if status != "ok":
        result.status, result.error = status, error
        return None
    summary = supervision.read_json(model_dir / "summary.json")
    if not supervision.regular_file(model_dir / "model.pt2") or summary is None:
        result.error = "train.py finished without handing a model to the harness " \
                       "(prepare.save_model was not called)"
        return None
    result.steps = supervision.number(summary, "steps", int)
    result.tokens = supervision.number(summary, "tokens", int)
    result.params = supervision.number(summary, "params", int)
    for name in ("training_seconds", "startup_seconds", "compile_seconds", "export_seconds",
                 "peak_memory_mb"):
        setattr(result, name, round(supervision.number(summary, name), 3))
    return summary


def summary_text(result: Result) -> str:
    """autoresearch-style summary block, one value per line."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    rows = [
        ("val_bpb", fmt(result.val_bpb, ".6f")),
        ("trainer_seconds", fmt(result.trainer_seconds, ".1f") + "  (measured)"),
        ("training_seconds", f"{result.training_seconds:.1f}  (reported by train.py)"),
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
