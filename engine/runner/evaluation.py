"""The frozen evaluation: Ratchet's own prepare.py measures val_bpb of an exported model.

The evaluator starts while train.py trains, in its own sandbox that shows only the validation
split. It imports torch and warms up its loader, then waits; once training hands over a model,
the model is copied in and the evaluator told to go. An experiment's evaluation then costs the
measurement alone, not another interpreter start-up (seconds per experiment, on every one).
On a CPU device it waits paused while train.py trains (`warm_trainer.PAUSE`).

Its private folder (its copy of the harness, the model, its result) is `eval-tmp/` in the
experiment's folder, never the system's temp folder: what an engine killed mid-evaluation
leaves there is the session's own, and the next engine in the workspace removes it
(`lock.remove_leftovers`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ratchet.engine.data.tokenizer import Tokens
from ratchet.engine.protocol import schema
from ratchet.engine.runner import cpu_clock, sandbox, supervision
from ratchet.engine.runner.warm_trainer import PAUSE
from ratchet.engine.workspace.config import Config
from ratchet.engine.workspace.layout import HARNESS, harness_path

if TYPE_CHECKING:
    from ratchet.engine.runner.result import Result

PRIVATE = "eval-tmp"  # the evaluator's folder, in the experiment's folder (beside its log)


class Evaluator:
    """One evaluation, started ahead of need; `evaluate` or `close` ends it."""

    def __init__(self, config: Config, corpus, tokens: Tokens, device: str, log_path: Path,
                 extra_env: dict[str, str]):
        data = config.data
        self.timeout = config.experiment.eval_timeout_seconds
        # the same clock as training: on the CPU clock a busy machine slows the evaluation
        # but takes none of its time, so load never makes an honest run a crash
        self.clock = cpu_clock.resolve(config.experiment.clock, device)
        self.source, self.eval_bytes = tokens, data.eval_tokens
        self.private = log_path.parent / PRIVATE
        shutil.rmtree(self.private, ignore_errors=True)  # an earlier try's, never followed
        self.private.mkdir(parents=True)
        self.model = self.private / "model.pt2"
        self.out = self.private / "eval.json"
        shutil.copy(harness_path(), self.private / HARNESS)
        # --tokens is an upper bound: eval_tokens counts bytes of validation text, and the tokens
        # piped in spell those bytes (fewer tokens than bytes with BPE); it reads to the pipe's end
        command = [sys.executable, "-I", str(self.private / HARNESS), "evaluate", "--wait",
                   "--model", str(self.model), "--val", "-",
                   "--tokens", str(data.eval_tokens), "--device", device,
                   "--shape", f"{data.eval_batch},{data.eval_seq}", "--out", str(self.out)]
        if tokens.bpe:  # the frozen tokenizer, so the harness counts the bytes of each token
            shutil.copy(tokens.tokenizer_path, self.private / "tokenizer.json")
            command += ["--tokenizer", str(self.private / "tokenizer.json")]
        # it sees no corpus at all: the engine reads the validation slice and pipes it in
        argv, _ = sandbox.wrap(command, cwd=self.private, readable=[],
                               writable=[self.private], hidden=[corpus.root.parent])
        env = sandbox.child_env({**extra_env, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"})
        # the evaluator runs no code of the candidate's, but a model can still ask for memory
        self.child = supervision.Child(argv, self.private, env, log_path, stdin=True,
                                       limits=supervision.Limits(max_processes=16))
        PAUSE.getting_ready(self.child)

    def evaluate(self, model_dir: Path, result: Result) -> None:
        """Measure the model train.py saved in `model_dir`; the outcome goes into `result`."""
        try:
            if not supervision.regular_file(model_dir / "model.pt2"):
                result.status, result.error = schema.CRASHED, "model.pt2 is not a regular file"
                return
            shutil.copy(model_dir / "model.pt2", self.model)
            data = self.source.validation_slice(self.eval_bytes)
            PAUSE.needed(self.child)
            wall, cpu = cpu_clock.allowance(self.clock, self.timeout)
            meter = self.child.meter() if cpu else None  # from now: its warm-up is not counted
            self.child.send("go", data)  # one that died while waiting is reported by watch
            error = self.child.watch(wall, name="the evaluation", limit="eval_timeout_seconds",
                                     cpu=meter, cpu_allowance=cpu)[1]
            self._read(result, error)
        finally:
            self.close()

    def _read(self, result: Result, error: str) -> None:
        evaluation = supervision.read_json(self.out)
        if evaluation is None:
            detail = error or supervision.last_error_line(self.child.pump.tail_text()) or \
                "no result"
            result.status, result.error = schema.CRASHED, f"evaluation failed: {detail}"
            result.tail = (result.tail + "\n--- evaluation ---\n" +
                           self.child.pump.tail_text()).strip()
            return
        if "error" in evaluation:
            result.status, result.error = schema.CRASHED, f"model rejected: {evaluation['error']}"
            return
        val_bpb = supervision.number(evaluation, "val_bpb", float, None)
        result.eval_seconds = round(supervision.number(evaluation, "eval_seconds"), 3)
        result.device_name = str(evaluation.get("device_name", ""))[:100]
        if val_bpb is None:
            result.status = schema.CRASHED
            result.error = "val_bpb is not finite (the model diverged)"
            return
        result.status, result.val_bpb = schema.OK, val_bpb

    def close(self) -> None:
        """Stop the evaluator (a cancelled one exits on its closed stdin) and remove its files."""
        PAUSE.needed(self.child)
        self.child.stop()
        shutil.rmtree(self.private, ignore_errors=True)
