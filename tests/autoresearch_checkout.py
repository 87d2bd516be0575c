"""An autoresearch checkout as uv and autoresearch leave it, for the compat and import tests.

- `.venv/bin/python`, the checkout's own interpreter: a script that runs this one with a package
  only that environment has (`rustbpe`, a stub, as autoresearch's prepare.py needs it) and notes
  the folder of each use in `.venv/used`;
- `prepare.py` with a plain `TIME_BUDGET`, importing rustbpe;
- `train.py` shaped like autoresearch's: environment set before its imports, constants at the
  top, `from prepare import TIME_BUDGET, ...`, `\\r` progress lines and the summary block after
  `---`; its metric is a plain function of the constants and its seed is fixed in the file;
  `REAL` adds the real file's other shapes: constants written as expressions
  (`TOTAL_BATCH_SIZE = 2**11`), a tuple, a string, `H100_BF16_PEAK_FLOPS`, and the divisibility
  assert on the batch sizes;
- `program.md`, and `.gitignore` keeping `.venv/` and `results.tsv` out of git.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import git

TRAIN = '''import os
import time

os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"

from prepare import TIME_BUDGET, evaluate_bpb

DEPTH = 4
MATRIX_LR = 0.02
WARMUP_RATIO = 0.0
SEED = 42

t0 = time.time()
for step in range(4):
    print(f"\\rstep {step:05d} ({step * 25:.1f}%) | loss: {3.0 - step * 0.1:.6f} | lrm: 1.00 | "
          f"dt: 10ms | tok/sec: 12,345 | mfu: 1.0% | epoch: 1 | remaining: 0s    ",
          end="", flush=True)
    time.sleep(0.3)
print()
val_bpb = evaluate_bpb(MATRIX_LR, DEPTH)
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {TIME_BUDGET:.1f}")
print(f"total_seconds:    {time.time() - t0:.1f}")
print("peak_vram_mb:     45060.2")
print("mfu_percent:      39.80")
print("total_tokens_M:   499.6")
print("num_steps:        953")
print("num_params_M:     50.3")
print(f"depth:            {DEPTH}")
'''

# autoresearch's other shapes, between the constants and the training: what a change to one of
# them meets (an expression, a tuple, the assert that the batch divides evenly)
REAL_SHAPES = '''ASPECT_RATIO = 64  # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128
WINDOW_PATTERN = "SSSL"
TOTAL_BATCH_SIZE = 2**11  # tokens per optimizer step
DEVICE_BATCH_SIZE = 8
ADAM_BETAS = (0.8, 0.95)
WEIGHT_DECAY = 0.2
H100_BF16_PEAK_FLOPS = 989.5e12
assert TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0
grad_accum_steps = TOTAL_BATCH_SIZE // (DEVICE_BATCH_SIZE * MAX_SEQ_LEN)

'''

REAL = TRAIN.replace("from prepare import TIME_BUDGET, evaluate_bpb",
                     "from prepare import MAX_SEQ_LEN, TIME_BUDGET, evaluate_bpb") \
    .replace("t0 = time.time()", REAL_SHAPES + "t0 = time.time()")

PREPARE = '''"""Frozen data and evaluation (tiny)."""
import rustbpe  # noqa: F401 - only the checkout's .venv has it

MAX_SEQ_LEN = 64
TIME_BUDGET = 2  # training seconds


def evaluate_bpb(lr, depth):
    return 1.0 + (lr - 0.04) ** 2 * 100 + abs(depth - 6) * 0.01
'''

SHIM = '''#!/bin/sh
here="$(cd "$(dirname "$0")/.." && pwd)"
pwd >> "$here/used"
PYTHONPATH="$here/site${PYTHONPATH:+:$PYTHONPATH}" exec "REAL" "$@"
'''


def expected_bpb(source: str) -> float:
    """The val_bpb a train.py of this shape prints, from its constants."""
    scope: dict = {"MAX_SEQ_LEN": 64}  # prepare.py's
    head = source.split("t0 = time.time()")[0]
    exec("\n".join(line for line in head.splitlines() if not line.startswith("from prepare")),
         scope)
    value = 1.0 + (scope["MATRIX_LR"] - 0.04) ** 2 * 100 + abs(scope["DEPTH"] - 6) * 0.01
    return float(f"{value:.6f}")


def make(root: Path, train: str = TRAIN, venv: bool = True) -> Path:
    """The checkout at `root`, committed on master; with `venv`, its own `.venv`."""
    root.mkdir(parents=True)
    (root / "train.py").write_text(train)
    (root / "prepare.py").write_text(PREPARE)
    (root / "program.md").write_text("# autoresearch\nImprove val_bpb by editing train.py.\n")
    (root / ".gitignore").write_text(".venv/\nresults.tsv\n")
    if venv:
        python = root / ".venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text(SHIM.replace("REAL", sys.executable))
        python.chmod(0o755)
        (root / ".venv" / "site").mkdir()
        (root / ".venv" / "site" / "rustbpe.py").write_text("VERSION = 'stub'\n")
    repo = git.Repo.init(root, initial_branch="master")
    repo.index.add(["train.py", "prepare.py", "program.md", ".gitignore"])
    repo.index.commit("autoresearch")
    return root


def venv_uses(root: Path) -> list[str]:
    """The folders train.py ran in with the checkout's own interpreter, in order."""
    used = root / ".venv" / "used"
    return used.read_text().splitlines() if used.is_file() else []


def write_results(path: Path, rows: list[tuple[str, ...]]) -> None:
    """A results.tsv as autoresearch writes it: tab-separated, one line a row."""
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")


def without_venv_python(root: Path) -> None:
    """Take the checkout's interpreter away (uv never ran here)."""
    os.remove(root / ".venv" / "bin" / "python")
