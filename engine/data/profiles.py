"""Hyperparameter profiles for the train.py template, by device.

train.py's defaults are the GPU profile (about 57M parameters, 2048-byte context, bf16): a
5-minute run on one H100 is a meaningful experiment at that scale. On a CPU the same file gets a
tiny configuration that still learns within a 20-60 second budget.
"""

CPU = {
    "N_LAYER": 2,
    "N_EMBD": 64,
    "N_HEAD": 2,
    "SEQ_LEN": 128,
    "BATCH_SIZE": 16,
    "GRAD_ACCUM": 1,
    "LEARNING_RATE": 0.01,
    "WARMUP_FRAC": 0.05,
    "LOG_EVERY": 10,
    "HANDOFF_RESERVE_S": 0.8,  # the tiny model exports in 0.25-0.45 s of the CPU clock
}

CUDA: dict = {}  # the template's own values

# A CUDA workspace with a BPE tokenizer: autoresearch's scale (8,192-token vocabulary, 2,048-token
# context, about 0.5M tokens per optimizer step) with AdamW settings known to work for GPT-2-small
# sized models at that batch. Where each number comes from is in the README ("GPU profile").
CUDA_BPE = {
    "SEQ_LEN": 2048,  # autoresearch's MAX_SEQ_LEN; GPT-2/GPT-3 small use 1024/2048
    "BATCH_SIZE": 32,  # x 2048 tokens x GRAD_ACCUM 8 = 524,288 tokens per step (2**19)
    "GRAD_ACCUM": 8,  # autoresearch's TOTAL_BATCH_SIZE, GPT-3 Small's 0.5M-token batch
    "LEARNING_RATE": 0.0018,  # 3 x GPT-3 Small's 6e-4: AdamW at 0.5M tokens (build-nanogpt, llm.c)
    "MIN_LR_FRAC": 0.1,  # cosine decay to 10% of the peak (GPT-3, nanoGPT)
    "WARMUP_FRAC": 0.04,  # build-nanogpt warms up over 715 of 19,073 steps (3.7%)
}


def train_constants(device: str, tokenizer: str) -> dict:
    """The train.py constants `ratchet init` writes for a device and tokenizer."""
    if device != "cuda":
        return CPU
    return CUDA_BPE if tokenizer == "bpe" else CUDA

# Evaluation windows (batch, sequence length) and validation bytes per device. On CPU the
# slice is small enough that evaluation takes a fifth of a 20 s budget or less; on GPU it is
# large enough that evaluations of one model agree and the spread between seeds stays small.
EVAL = {
    "cpu": {"eval_batch": 32, "eval_seq": 128, "eval_tokens": 262_144},
    "cuda": {"eval_batch": 16, "eval_seq": 2048, "eval_tokens": 8_388_608},
}
