"""How big the Claude agent's request for proposal N of a long session is.

    .venv/bin/python bench/agent_context.py [--experiments 500] [--notes 150] [--show]

Builds a synthetic session of N finished experiments (a mix of constant changes and code edits,
about 1 in 12 kept, 1 in 15 crashed, every run with a 24-point loss curve, an output tail and a
diff) and a research journal of --notes notes, then the request the Claude agent sends for the
next proposal: the system blocks (instructions and program.md), the tool definitions and the
user message (diagnostics table, journal, the workspace's real train.py). It prints characters
and two token figures for each part:

- `pieces`: the count of a GPT-style pre-tokenizer's pieces (words, 1-3 digit groups,
  punctuation runs, whitespace runs). A byte-pair tokenizer never merges across pieces, so
  each costs at least one token: a lower bound.
- `estimate`: the larger of `pieces` and characters / 3.5 (Anthropic's rule of thumb for
  English; tables of numbers run nearer to `pieces`).

No Claude tokenizer is available offline (the API's count_tokens needs the network), so these
are estimates; `--show` prints the user message to check it by eye.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from ratchet.engine.agents.base import Context, HistoryEntry, JournalNote  # noqa: E402
from ratchet.engine.agents.claude.agent import ALL_TOOLS  # noqa: E402
from ratchet.engine.agents.claude.prompt import system_blocks, user_message  # noqa: E402

PIECES = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]+|\s+""")
CONSTANTS = {"LEARNING_RATE": 0.0015, "WARMUP_FRAC": 0.02, "WEIGHT_DECAY": 0.1, "N_LAYER": 8,
             "N_EMBD": 768, "MLP_RATIO": 4, "BATCH_SIZE": 32, "GRAD_CLIP": 1.0,
             "INIT_STD": 0.02, "MIN_LR_FRAC": 0.0, "ROPE_BASE": 10000.0}
EDITS = ["use SwiGLU in the MLP", "tie the input and output embeddings", "add QK-norm",
         "replace GELU with ReLU squared", "use a cosine schedule to zero",
         "scale residual branches by 1/sqrt(2*N_LAYER)", "add value embeddings",
         "drop the bias of the final norm", "use Muon for the matrices"]


def curve(rng: random.Random, budget: float, start: float, rate: float) -> list[list[float]]:
    return [[round(budget * k / 24, 3), 40 * k, round(start - rate * (k / 24) ** 0.5
                                                       + rng.uniform(-0.01, 0.01), 5)]
            for k in range(1, 25)]


def synthetic_history(n: int, seed: int = 0) -> tuple[list[HistoryEntry], dict]:
    rng = random.Random(seed)
    budget, best = 300.0, 1.05
    history = []
    for exp in range(2, n + 2):
        if rng.random() < 0.7:
            name = rng.choice(list(CONSTANTS))
            old = CONSTANTS[name]
            new = round(old * rng.choice([0.5, 0.8, 1.25, 2.0]), 6)
            description = f"change {name} from {old} to {new}"
            diff = (f"--- a/train.py\n+++ b/train.py\n@@ -29,1 +29,1 @@\n-{name} = {old}  # x\n"
                    f"+{name} = {new}  # x\n")
        else:
            description = rng.choice(EDITS)
            diff = ("--- a/train.py\n+++ b/train.py\n@@ -120,4 +120,6 @@\n"
                    "-        x = F.gelu(self.fc(x))\n+        a, b = self.fc(x).chunk(2, dim=-1)\n"
                    "+        x = F.silu(a) * b\n+        # gated\n")
        crash = rng.random() < 1 / 15
        kept = not crash and rng.random() < 1 / 12
        val = None if crash else round(best + rng.uniform(-0.004, 0.02), 6)
        decision = "crash" if crash else "keep" if kept else rng.choice(
            ["discard"] * 5 + ["near_miss"])
        result = {"steps": rng.randint(900, 1100), "tokens": rng.randint(250, 300) * 10**6,
                  "training_seconds": budget, "trainer_seconds": round(budget + 14.2, 1),
                  "budget_seconds": budget, "peak_memory_mb": rng.uniform(40000, 70000),
                  "mfu": rng.uniform(35, 45),
                  "curve": curve(rng, budget * (0.3 if crash else 1.0), 3.2, 1.9),
                  "tail": "step 1000 loss 1.31\n" * 40,
                  "error": "CUDA out of memory" if crash else ""}
        if kept:
            best = val
        history.append(HistoryEntry(exp, description, "crash" if crash else "ok", decision, val,
                                    None if val is None else round(val - best, 6),
                                    margin=0.0012, diff=diff, result=result))
    return history, history[-1].result


def count(text: str) -> dict:
    pieces = len(PIECES.findall(text))
    return {"chars": len(text), "pieces": pieces, "estimate": max(pieces, round(len(text) / 3.5))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=500)
    parser.add_argument("--notes", type=int, default=150)
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    history, best = synthetic_history(args.experiments)
    journal = [JournalNote(2 + i * 3, f"Exp {2 + i * 3}: the loss curve flattens after 60% of "
               "the budget; the schedule, not the width, limits us. Next: a longer warmup.")
               for i in range(args.notes)]
    context = Context(files={"train.py": (ROOT / "model" / "train.py").read_text()},
                      program=(ROOT / "model" / "program.md").read_text(), history=history,
                      best_bpb=1.04, margin=0.0012, journal=journal, best_result=best)
    user = user_message(context)
    if args.show:
        print(user)
    table = user.split("## Results so far", 1)[1].split("## Your research journal", 1)[0]
    notes = user.split("## Your research journal", 1)[1].split("## Editable files", 1)[0]
    parts = {"system (instructions + program.md)": "\n".join(b["text"] for b in
                                                             system_blocks(context.program)),
             "tools": json.dumps(ALL_TOOLS), "diagnostics table": table, "journal": notes,
             "user message (all of it)": user}
    print(f"request for proposal {args.experiments + 2} after {args.experiments} experiments "
          f"and {args.notes} journal notes")
    for name, text in parts.items():
        c = count(text)
        print(f"{name:36s} {c['chars']:8d} chars {c['pieces']:8d} pieces "
              f"{c['estimate']:8d} tokens (estimate)")
    whole = count(parts["system (instructions + program.md)"] + parts["tools"] + user)
    print(f"{'whole request':36s} {whole['chars']:8d} chars {whole['pieces']:8d} pieces "
          f"{whole['estimate']:8d} tokens (estimate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
