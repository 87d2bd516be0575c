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
    "HANDOFF_RESERVE_S": 2.0,
}

CUDA: dict = {}  # the template's own values

# Evaluation windows (batch, sequence length) and validation bytes per device. On CPU the
# slice is small enough that evaluation takes a fifth of a 20 s budget or less; on GPU it is
# large enough that evaluations of one model agree and the spread between seeds stays small.
EVAL = {
    "cpu": {"eval_batch": 32, "eval_seq": 128, "eval_tokens": 262_144},
    "cuda": {"eval_batch": 16, "eval_seq": 2048, "eval_tokens": 8_388_608},
}
