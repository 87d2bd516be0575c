"""A small GPT trained on the workspace's tokens (bytes, or BPE ids) for a fixed time budget.
This is the file to improve.

Read top to bottom: hyperparameters, model, optimizer, training loop, hand-off to the harness.
The harness (prepare.py, frozen) gives the budget, device, seed and training data, and measures
val_bpb on data this process never sees. Lower val_bpb is better.
"""

import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import prepare

# ---------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------

N_LAYER = 8  # transformer blocks
N_EMBD = 768  # model width
N_HEAD = 6  # attention heads (N_EMBD must divide by it)
MLP_RATIO = 4  # hidden width of the MLP, as a multiple of N_EMBD
SEQ_LEN = 2048  # training context in tokens (prepare.VOCAB_SIZE: 256 = bytes)
BATCH_SIZE = 32  # sequences per micro-batch
GRAD_ACCUM = 4  # micro-batches per optimizer step
LEARNING_RATE = 0.0015  # peak AdamW learning rate
MIN_LR_FRAC = 0.0  # final learning rate as a fraction of the peak
WARMUP_FRAC = 0.02  # fraction of the budget spent warming up the learning rate
WEIGHT_DECAY = 0.1  # decoupled weight decay on matrices
BETA1 = 0.9
BETA2 = 0.95
GRAD_CLIP = 1.0  # max gradient norm (0 turns clipping off)
ROPE_BASE = 10000.0  # rotary embedding base
INIT_STD = 0.02  # std of the weight initialisation
LOG_EVERY = 10  # optimizer steps between log lines
COMPILE = True  # torch.compile on CUDA (ignored on CPU)
HANDOFF_RESERVE_S = 5.0  # seconds of the budget kept at its end for exporting the model

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight)


def rotary_tables(seq_len: int, head_dim: int, base: float):
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    # x: (B, H, T, D); rotate pairs (first half, second half) by position-dependent angles
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False)
        self.proj = nn.Linear(N_EMBD, N_EMBD, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(N_EMBD, MLP_RATIO * N_EMBD, bias=False)
        self.down = nn.Linear(MLP_RATIO * N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.attn = RMSNorm(N_EMBD), Attention()
        self.norm2, self.mlp = RMSNorm(N_EMBD), MLP()

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, max_len: int):
        super().__init__()
        self.embed = nn.Embedding(prepare.VOCAB_SIZE, N_EMBD)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.norm = RMSNorm(N_EMBD)
        self.head = nn.Linear(N_EMBD, prepare.VOCAB_SIZE, bias=False)
        cos, sin = rotary_tables(max_len, N_EMBD // N_HEAD, ROPE_BASE)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # residual projections start smaller so deep stacks begin near the identity
                residual = name.endswith(("proj.weight", "down.weight"))
                std = INIT_STD / math.sqrt(2 * N_LAYER) if residual else INIT_STD
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx):
        T = idx.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))


# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------

device = prepare.device()
torch.manual_seed(prepare.seed())
if device == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
eval_batch, eval_seq = prepare.eval_shape()
model = GPT(max_len=max(SEQ_LEN, eval_seq)).to(device)
n_params = sum(p.numel() for p in model.parameters())

decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
    lr=LEARNING_RATE, betas=(BETA1, BETA2), fused=device == "cuda",
)
step_model = torch.compile(model) if device == "cuda" and COMPILE else model
batches = prepare.Batches(prepare.load_train_data(), BATCH_SIZE, SEQ_LEN, device, prepare.seed())
autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda")


def lr_at(progress: float) -> float:
    """Linear warm-up, then cosine decay to MIN_LR_FRAC, over the fraction of training done."""
    if progress < WARMUP_FRAC:
        return LEARNING_RATE * progress / WARMUP_FRAC
    decay_progress = min(1.0, (progress - WARMUP_FRAC) / max(1e-8, 1.0 - WARMUP_FRAC))
    cosine = 0.5 * (1.0 + math.cos(math.pi * decay_progress))
    return LEARNING_RATE * (MIN_LR_FRAC + (1.0 - MIN_LR_FRAC) * cosine)


def train_step(lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = 0.0
    for _ in range(GRAD_ACCUM):
        x, y = batches.next()
        with autocast:
            logits = step_model(x)
            loss = F.cross_entropy(logits.float().view(-1, prepare.VOCAB_SIZE), y.reshape(-1))
        (loss / GRAD_ACCUM).backward()
        total += loss.detach()
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(total) / GRAD_ACCUM


# ---------------------------------------------------------------------------------------------
# Training loop: the budget is the run's whole allowance, from start to hand-off, on the engine's
# clock; start-up and compilation are spent already, and training plans to the deadline
# prepare.time_left() gives, less what the export needs
# ---------------------------------------------------------------------------------------------

startup_seconds = prepare.seconds_since_start()
compile_seconds = 0.0
if device == "cuda" and COMPILE:
    t0 = time.time()
    train_step(0.0)  # compile and warm up (inside the budget); lr 0 leaves the weights alone
    torch.cuda.synchronize()
    compile_seconds = time.time() - t0

tokens_per_step = BATCH_SIZE * SEQ_LEN * GRAD_ACCUM
step, tokens, elapsed = 0, 0, 0.0
t_start = prepare.clock()  # the budget's clock: wall seconds, or CPU time on a CPU workspace
planned = max(1e-3, prepare.time_left() - HANDOFF_RESERVE_S)
t_log, tokens_log = t_start, 0
while elapsed < planned:
    lr = lr_at(elapsed / planned)
    loss = train_step(lr)
    step += 1
    tokens += tokens_per_step
    if not math.isfinite(loss):
        raise SystemExit(f"loss is {loss} at step {step}; stopping")
    elapsed = prepare.clock() - t_start
    if step % LOG_EVERY == 0 or elapsed >= planned:
        now = prepare.clock()
        tok_s = (tokens - tokens_log) / max(1e-9, now - t_log)
        prepare.log_step(step=step, loss=loss, lr=lr, tok_s=tok_s, elapsed=elapsed)
        t_log, tokens_log = now, tokens

# ---------------------------------------------------------------------------------------------
# Hand-off: the harness evaluates the exported model in its own process
# ---------------------------------------------------------------------------------------------

if device == "cuda":
    peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
else:
    peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
# FLOPs per token: 6 per parameter (forward + backward) plus attention over the context
flops_per_token = 6 * n_params + 12 * N_LAYER * N_EMBD * SEQ_LEN
prepare.save_model(model, {
    "steps": step,
    "tokens": tokens,
    "params": n_params,
    "training_seconds": elapsed,
    "startup_seconds": startup_seconds,
    "compile_seconds": compile_seconds,
    "peak_memory_mb": peak_memory_mb,
    "flops_per_token": flops_per_token,
})
