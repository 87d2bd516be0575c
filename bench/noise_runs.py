"""The default CPU workspace's noise: baseline seeds, idle or with cores kept busy, on either clock.

    python bench/noise_runs.py [--seeds 3] [--replicates 2] [--clock cpu|wall] [--busy 0]
                               [--budget 20] [--eval]

Runs the default train.py of a throwaway copy of the default CPU workspace, one run after the
other, `--replicates` times per seed, through the engine's own experiment runner (its clock,
sandbox and frozen evaluation). `--busy N` keeps N other processes spinning meanwhile, as a
shared machine does. Prints each run, then:
- the seed spread (stdev of the first replicate of each seed) and the margin rule's keep margin
  from it (noise_k = 2 x spread, what Ratchet 1 required of a change);
- from the replicates: a run's own noise at a fixed seed (E) and the seed's own luck (U), the
  two figures bench/keep_rules.py simulates with;
- with `--eval`, the evaluation's own noise: the standard error of a model's val_bpb over the
  slice's windows, and of the difference of two models (what a paired comparison sees).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ratchet.engine.protocol import noise
from ratchet.engine.runner import experiment
from ratchet.engine.workspace import layout

SPIN = "while True:\n    pass\n"


def window_bits(model_dir: Path, val: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bits per byte of each evaluation window (a bench's own reading of the exported model,
    the harness's windows without its probes)."""
    batch, seq = shape
    program = torch.export.load(str(model_dir / "model.pt2"))
    model = program.module()
    windows = (len(val) - 1) // seq
    xs = torch.from_numpy(val[: windows * seq].astype(np.int64)).view(windows, seq)
    ys = torch.from_numpy(val[1: windows * seq + 1].astype(np.int64)).view(windows, seq)
    bits = []
    with torch.no_grad():
        for start in range(0, windows, batch):
            x, y = xs[start: start + batch], ys[start: start + batch]
            rows = len(x)
            if rows < batch:
                x = torch.cat([x, x[:1].expand(batch - rows, seq)])
            logp = torch.log_softmax(model(x)[:rows].double(), dim=-1)
            nats = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)
            bits.append(nats / (seq * math.log(2)))
    return torch.cat(bits).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes meanwhile")
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--eval", action="store_true", help="measure the evaluation's noise")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ratchet-noise-"))
    ws = layout.init(tmp / "ws", device="cpu", echo=lambda *_: None)
    config = ws.config()
    config.experiment.clock, config.experiment.budget_seconds = args.clock, args.budget
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    print(f"clock {args.clock}, budget {args.budget:g} s, {args.busy} busy process(es), "
          f"{args.seeds} seeds x {args.replicates}")
    runs: dict[tuple[int, int], tuple[float, Path]] = {}
    try:
        for rep, k in itertools.product(range(args.replicates), range(args.seeds)):
            seed = config.experiment.seed + k
            out = tmp / f"run-{seed}-{rep}"
            result = experiment.run(ws, config, out, seed=seed)
            print(f"seed {seed} rep {rep}: {result.status} val_bpb {result.val_bpb} "
                  f"steps {result.steps} trainer {result.trainer_seconds} s "
                  f"cpu {result.trainer_cpu_seconds} s", flush=True)
            if result.status == "ok":
                runs[(k, rep)] = (result.val_bpb, out / "model")
    finally:
        for proc in spinners:
            proc.kill()
    firsts = [runs[(k, 0)][0] for k in range(args.seeds) if (k, 0) in runs]
    if len(firsts) >= 2:
        spread = statistics.stdev(firsts)
        print(f"\nseed spread {spread:.4f}; margin rule's keep margin (2 x spread) "
              f"{2 * spread:.4f}; the paired rule, with no pairing measured yet (sqrt 2 x "
              f"spread), detects gains of "
              f"{noise.detectable(2 ** 0.5 * spread, len(firsts) - 1, 4):.4f} on 4 seeds")
    pairs = [(runs[(k, 0)][0], runs[(k, r)][0]) for k in range(args.seeds)
             for r in range(1, args.replicates) if (k, 0) in runs and (k, r) in runs]
    if pairs and len(firsts) >= 2:
        run_noise = (sum((a - b) ** 2 for a, b in pairs) / (2 * len(pairs))) ** 0.5
        luck = max(0.0, spread ** 2 - run_noise ** 2) ** 0.5
        print(f"a run's own noise at a fixed seed (E) {run_noise:.4f}; a seed's own luck (U) "
              f"{luck:.4f}  [{len(pairs)} same-seed pairs]")
    if args.eval and len(firsts) >= 2:
        data = config.data
        val = np.fromfile(ws.corpus(config).val_path, dtype=np.uint8)[: data.eval_tokens + 1]
        shape = (data.eval_batch, data.eval_seq)
        bits = [window_bits(runs[(k, 0)][1], val, shape) for k in range(args.seeds)
                if (k, 0) in runs]
        one = statistics.fmean(float(b.std(ddof=1)) / math.sqrt(len(b)) for b in bits)
        two = statistics.fmean(float((a - b).std(ddof=1)) / math.sqrt(len(a))
                               for a, b in itertools.combinations(bits, 2))
        print(f"evaluation ({len(bits[0])} windows of {data.eval_seq} bytes): standard error "
              f"of one model's val_bpb {one:.4f}, of the difference of two models {two:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
