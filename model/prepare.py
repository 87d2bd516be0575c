"""Frozen harness for a Ratchet workspace. Do not edit: Ratchet checks this file's hash.

The harness owns the contract between train.py and the metric:

* train.py reads its training bytes, budget, device and seed from here, and hands the trained
  model back through `save_model`, which exports it with torch.export.
* `python prepare.py evaluate ...` (run by Ratchet in a separate, sandboxed process) loads the
  exported program, checks that it is a plain causal next-byte model, and measures val_bpb on the
  fixed validation slice. No code from train.py runs during evaluation: an exported program is a
  graph of ATen operators, and loading it executes nothing the trainer wrote.

Tokens are bytes (vocabulary 256), so bits per byte is the cross-entropy in bits.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import operator
import os
import platform
import sys
import time

import numpy as np
import torch

VOCAB_SIZE = 256
_START = time.time()  # close to process start: train.py imports this module first


# ---------------------------------------------------------------------------------------------
# What train.py uses
# ---------------------------------------------------------------------------------------------


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"prepare.py: {name} is not set; run it through `ratchet experiment`")
    return value


def budget_seconds() -> float:
    """Wall-clock seconds of training the harness grants (start-up and compile not counted)."""
    return float(_env("RATCHET_BUDGET_S", "20"))


def device() -> str:
    """'cuda' or 'cpu', as the workspace config chose."""
    wanted = _env("RATCHET_DEVICE", "auto")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def seed() -> int:
    return int(_env("RATCHET_SEED", "1337"))


def eval_shape() -> tuple[int, int]:
    """(batch, sequence length) of the evaluation windows; the exported model takes this shape."""
    batch, seq = _env("RATCHET_EVAL_SHAPE", "8,256").split(",")
    return int(batch), int(seq)


def load_train_data() -> np.ndarray:
    """The training split as a read-only array of byte tokens (uint8)."""
    return np.memmap(_env("RATCHET_TRAIN_DATA"), dtype=np.uint8, mode="r")


def seconds_since_start() -> float:
    return time.time() - _START


class Batches:
    """Random windows of the training split: x is (B, T) int64, y is x shifted by one byte."""

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, dev: str, seed_: int):
        if len(data) <= seq_len + 1:
            raise SystemExit(f"prepare.py: training data ({len(data)} bytes) shorter than SEQ_LEN")
        self.data, self.batch_size, self.seq_len, self.device = data, batch_size, seq_len, dev
        self.rng = np.random.default_rng(seed_)
        self.offsets = np.arange(seq_len + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, len(self.data) - self.seq_len - 1, size=self.batch_size)
        window = torch.from_numpy(self.data[starts[:, None] + self.offsets].astype(np.int64))
        if self.device == "cuda":
            window = window.pin_memory().to("cuda", non_blocking=True)
        return window[:, :-1], window[:, 1:]


def log_step(**fields: float) -> None:
    """One JSON line per logging step; Ratchet turns these into the loss chart."""
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in fields.items()}),
          flush=True)


def save_model(model: torch.nn.Module, summary: dict) -> None:
    """Export the trained model (idx (B, T) int64 -> logits (B, T, 256)) and the run summary.

    The model is exported in float32 on the training device. Everything in `summary` is
    informational (steps, tokens, params, ...); the metric is measured by the harness alone.
    """
    out = _env("RATCHET_OUT")
    batch, seq = eval_shape()
    model = model.float().eval()
    example = torch.zeros(batch, seq, dtype=torch.long, device=next(model.parameters()).device)
    t0 = time.time()
    with torch.no_grad():
        program = torch.export.export(model, (example,))
    torch.export.save(program, os.path.join(out, "model.pt2"))
    summary = dict(summary, export_seconds=round(time.time() - t0, 3))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f)


# ---------------------------------------------------------------------------------------------
# Evaluation (run by Ratchet, never by train.py)
# ---------------------------------------------------------------------------------------------

_ALLOWED_PYTHON_TARGETS = {operator.getitem}
_ALLOWED_NAMESPACES = {"aten"}


class ModelRejected(Exception):
    """The artifact is not a plain next-byte model the harness can trust."""


def _load_program(path: str | io.BytesIO) -> torch.export.ExportedProgram:
    # torch.export.load may fall back to full unpickling; a model file must never run code.
    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    torch.load = weights_only_load
    try:
        program = torch.export.load(path)
    except Exception as exc:  # any failure to deserialize means the artifact is rejected
        raise ModelRejected(f"cannot load exported model: {type(exc).__name__}: {exc}") from exc
    finally:
        torch.load = real_load
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if target in _ALLOWED_PYTHON_TARGETS:
            continue
        namespace = getattr(target, "namespace", None)
        if namespace not in _ALLOWED_NAMESPACES:
            raise ModelRejected(f"exported model calls a non-ATen operator: {target}")
    return program


def _check_causal(model, x: torch.Tensor) -> None:
    """Logits at position t may depend on bytes 0..t only; a model that peeks ahead is rejected."""
    base = model(x)
    if not torch.isfinite(base).all():
        return  # scored as a non-finite val_bpb, which the caller reports as divergence
    seq = x.shape[1]
    gen = torch.Generator().manual_seed(0)
    for cut in sorted({seq // 4, seq // 2, seq - seq // 8}):
        probe = x.clone()
        noise = torch.randint(0, VOCAB_SIZE, probe[:, cut:].shape, generator=gen)
        probe[:, cut:] = noise.to(probe.device)
        changed = (model(probe)[:, :cut] - base[:, :cut]).abs().max().item()
        scale = base[:, :cut].abs().max().item() + 1.0
        if not changed <= 1e-3 * scale:
            raise ModelRejected(f"model is not causal: logits before position {cut} changed by "
                                f"{changed:.3g} when later bytes changed")


def evaluate_bpb(model_path: str, val_path: str, tokens: int, dev: str,
                 shape: tuple[int, int]) -> dict:
    """Bits per byte of the exported model on the first `tokens` bytes of the validation split.

    The windows have the workspace's fixed shape, so every experiment sees the same contexts.
    """
    torch.manual_seed(0)
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    t0 = time.time()
    program = _load_program(model_path)
    user_inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        raise ModelRejected(f"exported model must take one input, takes {len(user_inputs)}")
    exported = next(n for n in program.graph.nodes if n.op == "placeholder"
                    and n.name == user_inputs[0].arg.name).meta["val"].shape
    batch, seq = shape
    if tuple(int(d) for d in exported) != (batch, seq):
        raise ModelRejected(f"exported model takes shape {tuple(exported)}, the harness "
                            f"evaluates ({batch}, {seq})")
    model = program.module()
    data = np.fromfile(val_path, dtype=np.uint8)[: tokens + 1]
    windows = (len(data) - 1) // seq
    if windows < 1:
        raise ModelRejected(f"validation slice ({len(data)} bytes) shorter than one window")
    xs = torch.from_numpy(data[: windows * seq].astype(np.int64)).view(windows, seq)
    ys = torch.from_numpy(data[1 : windows * seq + 1].astype(np.int64)).view(windows, seq)
    total_nats, counted = 0.0, 0
    with torch.no_grad():
        for start in range(0, windows, batch):
            x, y = xs[start : start + batch], ys[start : start + batch]
            rows = x.shape[0]
            if rows < batch:  # pad the last batch to the exported shape, score real rows only
                x = torch.cat([x, x[:1].expand(batch - rows, seq)])
            x = x.to(dev)
            if start == 0:
                _check_causal(model, x)
            logits = model(x)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, seq,
                                                                                 VOCAB_SIZE):
                raise ModelRejected(f"model must return logits of shape ({batch}, {seq}, "
                                    f"{VOCAB_SIZE})")
            logp = torch.log_softmax(logits[:rows].double().cpu(), dim=-1)
            total_nats -= logp.gather(-1, y.unsqueeze(-1)).sum().item()
            counted += y.numel()
    return {
        "val_bpb": total_nats / (counted * math.log(2)),
        "device_name": torch.cuda.get_device_name() if dev == "cuda" else platform.machine(),
        "eval_tokens": counted,
        "eval_seconds": time.time() - t0,
    }


def _warm_up() -> None:
    """Export and load a tiny program once, so loading the real one pays no first-use imports."""
    try:
        tiny = torch.nn.Embedding(VOCAB_SIZE, 4)
        buffer = io.BytesIO()
        with torch.no_grad():
            torch.export.save(torch.export.export(tiny, (torch.zeros(1, 2, dtype=torch.long),)),
                              buffer)
        buffer.seek(0)
        _load_program(buffer)
    except Exception:  # only a head start: the real load reports its own errors
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prepare.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="measure val_bpb of an exported model")
    ev.add_argument("--model", required=True)
    ev.add_argument("--val", required=True)
    ev.add_argument("--tokens", type=int, required=True)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--shape", required=True, help="BATCH,SEQ of the evaluation windows")
    ev.add_argument("--out", required=True, help="where to write the JSON result")
    ev.add_argument("--wait", action="store_true",
                    help="get ready, then evaluate once a line 'go' arrives on stdin")
    args = parser.parse_args(argv)
    if args.wait:  # started while train.py trains: imports and first-use costs are paid now
        _warm_up()
        if sys.stdin.readline().strip() != "go":
            return 0  # training handed over no model: nothing to measure
    try:
        batch, seq = (int(v) for v in args.shape.split(","))
        result = evaluate_bpb(args.model, args.val, args.tokens, args.device, (batch, seq))
    except ModelRejected as exc:
        result = {"error": str(exc)}
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0 if "error" not in result else 3


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the result is written; tearing torch down would only cost a second or so
