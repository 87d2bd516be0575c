"""What torch.compile costs a run whose compile cache starts empty, against one that finds it warm.

    python bench/compile_cache.py [--runs N]

Ratchet gives every experiment a fresh, empty compile cache (nothing the agent's code writes may
reach the next experiment). This measures the price: the default CPU model is compiled and
stepped once in a new process, N times with an empty cache and N times with the cache the first
run filled, and the median seconds to the end of the first training step are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ratchet.engine.data import profiles
from ratchet.engine.workspace import layout

# One compiled forward and backward of the CPU profile's GPT, timed from just before the first
# call; the model's classes come from the workspace template's train.py.
STEP = r"""
import ast, sys, time, torch
source = open(sys.argv[1]).read()
tree = ast.parse(source)
keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.Import,
        ast.ImportFrom)) or (isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id.isupper())]
keep = [n for n in keep if not (isinstance(n, ast.Import) and n.names[0].name == "prepare")]
space = {"prepare": type("prepare", (), {"VOCAB_SIZE": 256})}
exec(compile(ast.Module(body=keep, type_ignores=[]), "train.py", "exec"), space)
model = space["GPT"](max_len=space["SEQ_LEN"])
step = torch.compile(model)
x = torch.randint(0, 256, (space["BATCH_SIZE"], space["SEQ_LEN"]))
t0 = time.perf_counter()
step(x).float().mean().backward()
print(time.perf_counter() - t0)
"""


def _first_step(train: Path, cache: Path) -> float:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
           "TRITON_CACHE_DIR": str(cache / "triton")}
    done = subprocess.run([sys.executable, "-c", STEP, str(train)], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"compile_cache: the compiled step failed: {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        train = Path(tmp) / "train.py"
        train.write_text(layout.with_constants(layout.template_text("train.py"), profiles.CPU))
        empty = [_first_step(train, Path(tempfile.mkdtemp(dir=tmp))) for _ in range(args.runs)]
        shared = Path(tmp) / "shared"
        _first_step(train, shared)  # fills it
        warm = [_first_step(train, shared) for _ in range(args.runs)]
    print(f"first compiled step, empty cache: median {statistics.median(empty):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in empty)})")
    print(f"first compiled step, warm cache:  median {statistics.median(warm):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in warm)})")
    print(f"cost of a fresh cache per experiment: "
          f"{statistics.median(empty) - statistics.median(warm):.2f} s")


if __name__ == "__main__":
    main()
