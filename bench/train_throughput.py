"""Throughput of the default train.py: tokens/s (and MFU on CUDA), val_bpb, seed spread.

    python bench/train_throughput.py [--device auto|cpu|cuda] [--budget S] [--seeds N]
                                     [--eval-tokens N]

Creates a throwaway workspace with the default profile for the device, runs N experiments with
different seeds exactly as the loop would, and prints one line per run plus a summary.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from ratchet.engine.runner import devices, experiment
from ratchet.engine.workspace import layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--budget", type=float, help="training seconds (default: profile's)")
    parser.add_argument("--seeds", type=int, default=1, help="runs with seeds 1..N")
    parser.add_argument("--eval-tokens", type=int,
                        help="validation bytes evaluated (default: profile's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        ws = layout.init(Path(tmp) / "ws", device=devices.resolve(args.device), budget=args.budget,
                            echo=lambda *_: None)
        config = ws.config()
        if args.eval_tokens:  # a shorter evaluation, for quick checks on a CPU
            config.data.eval_tokens = args.eval_tokens
        results = []
        for seed in range(1, args.seeds + 1):
            result = experiment.run(ws, config, Path(tmp) / f"run{seed}", seed=seed)
            rates = sorted(r["tok_s"] for r in result.train_log[1:] if "tok_s" in r)
            tok_s = statistics.median(rates) if rates else 0.0
            mfu = f"{result.mfu:.1f}%" if result.mfu is not None else "n/a"
            bpb = f"{result.val_bpb:.4f}" if result.val_bpb is not None else "-"
            print(f"seed {seed}: status {result.status}  val_bpb {bpb}  tokens/s {tok_s:,.0f}  "
                  f"MFU {mfu}  steps {result.steps}  params {result.params / 1e6:.2f}M  "
                  f"train {result.training_seconds:.1f}s  startup {result.startup_seconds:.1f}s  "
                  f"compile {result.compile_seconds:.1f}s  eval {result.eval_seconds:.1f}s  "
                  f"total {result.total_seconds:.1f}s  peak mem {result.peak_memory_mb:.0f}MB "
                  f"{result.error}", flush=True)
            results.append((result, tok_s))

    ok = [(r, t) for r, t in results if r.status == "ok"]
    print(f"device: {config.experiment.device} ({ok[0][0].device_name if ok else '?'}), "
          f"budget {config.experiment.budget_seconds:g}s, eval slice "
          f"{config.data.eval_tokens:,} bytes")
    if ok:
        bpbs = [r.val_bpb for r, _ in ok]
        print(f"tokens/s median {statistics.median(t for _, t in ok):,.0f}; "
              f"val_bpb mean {statistics.mean(bpbs):.4f}", end="")
        if len(bpbs) > 1:
            print(f", seed-to-seed std {statistics.stdev(bpbs):.4f}, "
                  f"range {max(bpbs) - min(bpbs):.4f}", end="")
        print()


if __name__ == "__main__":
    main()
