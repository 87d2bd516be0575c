"""val_bpb of a byte workspace beside BPE workspaces on the same corpus and validation text.

Each workspace is made by `ratchet init` (CPU profile unless --device cuda) on the same corpus
(default: the stdlib corpus; --dataset NAME for a named one), then one experiment of --budget
seconds runs on each, in turn, through the real engine and harness. Prints one row per
tokenizer: vocabulary, steps, training tokens and bytes, val_bpb and the text it was scored on.

    .venv/bin/python bench/tokenizer_bpb.py --budget 60 --vocab 8192 2048
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ratchet.engine.runner import experiment
from ratchet.engine.workspace import layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--vocab", type=int, nargs="*", default=[8192],
                        help="BPE vocabulary sizes to compare with bytes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", help="a named dataset instead of the stdlib corpus")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    os.environ.setdefault("RATCHET_PROBE_SECONDS", "0")  # the probe is not what is measured
    root = Path(tempfile.mkdtemp(prefix="ratchet-tokbench-"))
    rows = []
    for vocab in [256, *args.vocab]:
        kind = "bytes" if vocab == 256 else "bpe"
        ws = layout.init(root / f"ws-{vocab}", device=args.device, dataset=args.dataset,
                         tokenizer_kind=kind, vocab_size=None if vocab == 256 else vocab,
                         echo=lambda *_: None)
        config = ws.config()
        meta = ws.corpus(config).meta
        load = os.getloadavg()[0]  # the machine is shared: say how busy it was
        result = experiment.run(ws, config, root / f"exp-{vocab}", seed=args.seed,
                                budget=args.budget)
        rows.append((kind, vocab, result, load))
    print(f"budget {args.budget:g} s on {args.device}, corpus {meta['source']} ({meta['key']}), "
          f"validation scored: first {config.data.eval_tokens:,} bytes of its text")
    print(f"{'tokenizer':<10} {'vocab':>6} {'status':<7} {'steps':>6} {'tokens':>9} "
          f"{'val_bpb':>8} {'params_M':>8} {'load':>5}")
    for kind, vocab, result, load in rows:
        bpb = f"{result.val_bpb:.4f}" if result.val_bpb is not None else "-"
        print(f"{kind:<10} {vocab:>6} {result.status:<7} {result.steps:>6} {result.tokens:>9,} "
              f"{bpb:>8} {result.params / 1e6:>8.2f} {load:>5.1f}")


if __name__ == "__main__":
    main()
