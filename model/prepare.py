"""Frozen harness for a Ratchet workspace. Do not edit: Ratchet checks this file's hash.

train.py reads its tokens, budget, device and seed here and hands its model to `save_model`
(torch.export). `prepare.py evaluate` (Ratchet's, in its own sandbox) checks the exported graph
of ATen operators is a plain causal next-token model, running nothing train.py wrote, and
measures val_bpb: nats over the tokens (bytes, or a BPE workspace's frozen tokenizer's ids) /
(ln 2 x bytes of the text they spell), the same text either way.
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

VOCAB_SIZE = int(os.environ.get("RATCHET_VOCAB_SIZE", "256"))  # 256: byte tokens
_START = time.time()  # close to process start: train.py imports this module first
_CPU_MARK = float(os.environ.get("RATCHET_CPU_MARK", "0"))  # a warm start's imports, not the run's


# --- What train.py uses ------------------------------------------------------------------------
def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"prepare.py: {name} is not set; run it through `ratchet experiment`")
    return value


def budget_seconds() -> float:
    """The run's whole allowance in seconds, on its clock (`clock`): from the start of train.py
    to the hand-off of its model (`save_model`), start-up, compilation and export included."""
    return float(_env("RATCHET_BUDGET_S", "20"))


def time_left() -> float:
    """Seconds to the deadline for `save_model` on the run's `clock`: later is over_budget."""
    cpu = os.environ.get("RATCHET_CPU_ALLOWANCE")
    if cpu is not None:
        return float(cpu) / _cores() - clock()
    deadline = os.environ.get("RATCHET_DEADLINE")
    if deadline is None:  # run by hand: the budget, from import
        return _START + budget_seconds() - time.time()
    return float(deadline) - time.time()


def clock() -> float:
    """Seconds of the run so far on its budget's clock: wall seconds, or on the CPU clock this
    process's CPU time over its cores (a busy machine slows the run, takes none of its budget)."""
    if os.environ.get("RATCHET_CLOCK") != "cpu":
        return time.time() - _START
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system - _CPU_MARK) / _cores()


def _cores() -> int:
    return max(1, int(_env("RATCHET_CORES", "1")))


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
    """The training split as a read-only array of tokens: bytes (uint8), or BPE ids (uint16)."""
    return np.memmap(_env("RATCHET_TRAIN_DATA"), dtype=np.uint8 if VOCAB_SIZE <= 256 else "<u2",
                     mode="r")


def seconds_since_start() -> float:
    return clock()


class Batches:
    """Random windows of the training split: x is (B, T) int64, y is x shifted by one token."""

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, dev: str, seed_: int):
        if len(data) <= seq_len + 1:
            raise SystemExit(f"prepare.py: training data ({len(data)} tokens) shorter than SEQ_LEN")
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
    """Export the model (idx (B, T) int64 -> logits (B, T, VOCAB_SIZE)), in float32 on its
    device, and `summary` (steps, tokens, ...: for information; the harness measures the metric)."""
    out = _env("RATCHET_OUT")
    batch, seq = eval_shape()
    model = model.float().eval()
    example = torch.zeros(batch, seq, dtype=torch.long, device=next(model.parameters()).device)
    t0 = time.time()
    with torch.no_grad():
        program = torch.export.export(model, (example,))
    torch.export.save(program, os.path.join(out, "model.pt2"))
    summary = dict(summary, export_seconds=round(time.time() - t0, 3))
    partial = os.path.join(out, "summary.json.partial")
    with open(partial, "w") as f:
        json.dump(summary, f)
    os.replace(partial, os.path.join(out, "summary.json"))  # the hand-off: the engine stops here


# --- Evaluation (run by Ratchet, never by train.py) ---------------------------------------------
_ALLOWED_PYTHON_TARGETS = {operator.getitem}
# Pure, deterministic ATen operators (no file, random, printing or in-place one): no other is
# allowed in an exported graph, so a model can only compute from its input.
_ALLOWED_OP_NAMES = """
    abs add addmm alias amax amin arange argmax argmin atan atan2 baddbmm bitwise_and bitwise_not
    bitwise_or bmm cat ceil chunk clamp clamp_max clamp_min clone constant_pad_nd contiguous conv1d
    conv2d convolution cos cosh cumprod cumsum detach div dropout einsum elu embedding eq erf exp
    expand expand_as expm1 flatten flip floor fmod full full_like gather ge gelu group_norm gt
    hardtanh index index_select layer_norm le leaky_relu lift_fresh_copy linear log log1p log2
    log_softmax logical_and logical_not logical_or logsumexp lt masked_fill matmul max maximum mean
    min minimum mish mm mul narrow native_group_norm native_layer_norm ne neg norm
    linalg_vector_norm ones ones_like outer pad permute pow prod reciprocal relu remainder repeat
    repeat_interleave reshape rms_norm roll round rsqrt rsub scalar_tensor
    scaled_dot_product_attention _scaled_dot_product_flash_attention_for_cpu select sigmoid sign
    silu sin sinh slice softmax softplus split split_with_sizes sqrt square squeeze stack std sub
    sum t tanh to topk transpose tril triu trunc type_as unbind unflatten unsqueeze var view where
    zeros zeros_like _log_softmax _softmax _safe_softmax _to_copy _unsafe_view
    _assert_tensor_metadata sym_size sym_numel one_hot sort argsort any all isfinite isnan
    nan_to_num lerp addcmul addcdiv hardswish hardsigmoid tan exp2 floor_divide bitwise_xor
    logical_xor new_zeros new_ones new_full index_put scatter scatter_add unfold diagonal movedim
    mv dot tensordot glu softsign logit
"""
_ALLOWED_OPS = frozenset(_ALLOWED_OP_NAMES.split())
# Allowed operators with a dropout argument must not use it: dropout is random.
_DROPOUT_ARGS = {"dropout": ("train", 2), "scaled_dot_product_attention": ("dropout_p", 4)}


class ModelRejected(Exception):
    """The artifact is not a plain next-token model the harness can trust."""


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
    _check_stateless(program)
    for node in program.graph.nodes:
        if node.op == "call_function":
            _check_operator(node)
        elif node.op not in ("placeholder", "output", "get_attr"):
            raise ModelRejected(f"exported model has a {node.op} node ({node.target})")
    return program


def _check_stateless(program: torch.export.ExportedProgram) -> None:
    """Refuse a program that writes its buffers or input: it could tell checks from scored rows."""
    signature = program.graph_signature
    if mutated := {**signature.buffers_to_mutate, **signature.user_inputs_to_mutate}:
        raise ModelRejected(f"exported model mutates state: {sorted(mutated.values())}")
    if extra := [s.kind.name for s in signature.output_specs if s.kind.name != "USER_OUTPUT"]:
        raise ModelRejected(f"exported model has outputs besides its logits: {extra}")


def _check_operator(node) -> None:
    target = node.target
    if target in _ALLOWED_PYTHON_TARGETS:
        return
    if getattr(target, "namespace", None) != "aten":
        raise ModelRejected(f"exported model calls a non-ATen operator: {target}")
    name = target.overloadpacket.__name__
    if name not in _ALLOWED_OPS:
        raise ModelRejected(f"exported model calls aten.{name}, which is not on the harness's "
                            "list of pure operators")
    if name in _DROPOUT_ARGS:
        key, index = _DROPOUT_ARGS[name]
        value = node.kwargs.get(key, node.args[index] if len(node.args) > index else 0)
        if value:
            raise ModelRejected(f"exported model uses random dropout in aten.{name}")


PROBE_TOLERANCE = 1e-3  # nats: what a probe's log-probabilities may differ by (float rounding)


class _CausalityProbes:
    """Checks logits at t depend on tokens 0..t only: each call carries probe rows (an earlier,
    for the first a later, call's row cut at random and continued with other text), which a
    stateless model cannot tell from scored rows; log-probs before the cut must match (nats)."""

    def __init__(self, xs: torch.Tensor, calls: list[range], per_call: int, vocab: int):
        self.xs, self.vocab = xs, vocab
        rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
        seq = xs.shape[1]
        self.plan: list[list[tuple[int, int, int]]] = []  # per call: (row, cut, filler row)
        self.wanted: dict[int, list[int]] = {}  # row -> cuts whose logits to keep
        for k in range(len(calls)):
            source = calls[k - 1] if k else calls[min(1, len(calls) - 1)]
            probes = []
            while len(probes) < per_call:
                row, cut = int(rng.choice(source)), int(rng.integers(1, seq))
                if cut in self.wanted.get(row, ()):
                    continue  # each (row, cut) is one pair: the row's logits and one probe's
                probes.append((row, cut, int(rng.integers(0, len(xs)))))
                self.wanted.setdefault(row, []).append(cut)
            self.plan.append(probes)
        self.seen: dict[tuple[int, int], torch.Tensor] = {}  # (row, cut) -> logits[:cut]

    def rows(self, k: int) -> torch.Tensor:  # the probe rows of call k
        out = []
        for row, cut, filler in self.plan[k]:
            probe = self.xs[row].clone()
            probe[cut:] = torch.roll(self.xs[filler], 1 + cut)[cut:]  # text, not noise
            if probe[cut] == self.xs[row][cut]:  # the first token after the cut must differ
                probe[cut] = (probe[cut] + 1) % self.vocab
            out.append(probe)
        return torch.stack(out)

    def compare(self, k: int, rows: range, scored: torch.Tensor, probed: torch.Tensor) -> None:
        """Match call k's log-probabilities (scored rows, then probe rows) with their pairs'."""
        for i, row in enumerate(rows):
            for cut in self.wanted.get(row, ()):
                self._match(row, cut, scored[i, :cut])
        for i, (row, cut, _) in enumerate(self.plan[k]):
            self._match(row, cut, probed[i, :cut])

    def _match(self, row: int, cut: int, logp: torch.Tensor) -> None:
        other = self.seen.pop((row, cut), None)
        if other is None:
            self.seen[(row, cut)] = logp.clone()  # a copy: not a view that pins the whole call
            return
        changed = (logp - other).abs().max().item()
        if not changed <= PROBE_TOLERANCE:  # NaN fails too
            raise ModelRejected(f"model is not causal: log-probabilities before position {cut} "
                                f"changed by {changed:.3g} nats when later tokens or other rows "
                                f"changed")


def _read_validation(path: str, size: int, dtype: np.dtype) -> np.ndarray:
    """The first `size` tokens of the validation split, from a file or (for "-") from stdin."""
    if path != "-":
        return np.fromfile(path, dtype=dtype)[:size]
    data = sys.stdin.buffer.read(size * dtype.itemsize)  # buffered: all of it, or up to EOF
    return np.frombuffer(data[: len(data) - len(data) % dtype.itemsize], dtype=dtype)


def token_lengths(tokenizer: str | None) -> np.ndarray:
    """Bytes of text per token id: 1 for byte tokens; for BPE, the length of each token of the
    tokenizer.json's byte-level vocabulary, which spells each byte as one character."""
    if tokenizer is None:
        return np.ones(256, dtype=np.int64)
    with open(tokenizer, encoding="utf-8") as f:
        vocab = sorted(json.load(f)["model"]["vocab"].items(), key=lambda item: item[1])
    return np.array([len(token) for token, _ in vocab], dtype=np.int64)


def evaluate_bpb(model_path: str, val_path: str, tokens: int, dev: str,
                 shape: tuple[int, int], tokenizer: str | None = None) -> dict:
    """Bits per byte of the exported model on the first `tokens` tokens (+1) of the validation
    split, in windows of the workspace's fixed shape, so every experiment sees the same contexts."""
    torch.manual_seed(0)
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    t0 = time.time()
    lengths = token_lengths(tokenizer)
    vocab = len(lengths)
    dtype = np.dtype(np.uint8 if vocab <= 256 else "<u2")
    data = _read_validation(val_path, tokens + 1, dtype)  # before the model: it is a pipe
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
    windows = (len(data) - 1) // seq
    if windows < 1:
        raise ModelRejected(f"validation slice ({len(data)} tokens) shorter than one window")
    xs = torch.from_numpy(data[: windows * seq].astype(np.int64)).view(windows, seq)
    ys = torch.from_numpy(data[1 : windows * seq + 1].astype(np.int64)).view(windows, seq)
    per_call = max(1, batch // 16) if batch > 1 else 0
    scored = batch - per_call
    # call k scores windows k, k + n, ...: no row of a call continues another of the batch
    n = -(-windows // scored)
    calls = [range(k, windows, n) for k in range(n)]
    probes = _CausalityProbes(xs, calls, per_call, vocab) if per_call else None
    total_nats, counted, text_bytes = 0.0, 0, 0
    with torch.no_grad():
        for k, rows in enumerate(calls):
            x, y = xs[k::n], ys[k::n]
            parts = [x, probes.rows(k)] if probes else [x]
            filled = sum(len(p) for p in parts)
            if filled < batch:  # pad the last call to the exported shape, score real rows only
                parts.append(x[:1].expand(batch - filled, seq))
            logits = model(torch.cat(parts).to(dev))
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, seq, vocab):
                raise ModelRejected(f"model must return logits of shape ({batch}, {seq}, {vocab})")
            # scored and probe rows, normalised once; a log-probability is at most 0, so the sum
            # is finite exactly when every logit was: -inf or NaN would make checks vacuous
            logp = torch.log_softmax(logits[: len(rows) + per_call].double().cpu(), dim=-1)
            if not math.isfinite(logp.sum().item()):
                raise ModelRejected("model returned logits that are not finite (inf or NaN)")
            if probes:
                probes.compare(k, rows, logp[: len(rows)], logp[len(rows):])
            total_nats -= logp[: len(rows)].gather(-1, y.unsqueeze(-1)).sum().item()
            counted += y.numel()
            text_bytes += int(lengths[y.numpy()].sum())
    return {"val_bpb": total_nats / (text_bytes * math.log(2)), "eval_tokens": counted,
            "device_name": torch.cuda.get_device_name() if dev == "cuda" else platform.machine(),
            "eval_bytes": text_bytes, "eval_seconds": time.time() - t0}


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
    for name in ("--model", "--val", "--shape", "--out"):  # --shape BATCH,SEQ; --out: JSON
        ev.add_argument(name, required=True)
    ev.add_argument("--tokens", type=int, required=True)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--tokenizer", help="tokenizer.json of a BPE workspace (default: bytes)")
    ev.add_argument("--wait", action="store_true",
                    help="get ready, then evaluate once a line 'go' arrives on stdin")
    args = parser.parse_args(argv)
    if args.wait:  # started while train.py trains: imports and first-use costs are paid now
        _warm_up()
        if sys.stdin.buffer.readline().strip() != b"go":
            return 0  # training handed over no model: nothing to measure
    try:
        batch, seq = (int(v) for v in args.shape.split(","))
        result = evaluate_bpb(args.model, args.val, args.tokens, args.device, (batch, seq),
                              args.tokenizer)
    except ModelRejected as exc:
        result = {"error": str(exc)}
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0 if "error" not in result else 3


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the result is written; tearing torch down would only cost a second or so
