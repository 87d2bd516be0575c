"""For the studies' tests (validate, ablate): a train.py whose val_bpb its constants and the budget
set in a known way, and a finished research session of kept changes to it, written as the engine
would have logged it.

The model is the bigram of the training data mixed with a uniform guess; the share of the guess
(`mix`) sets val_bpb (more is worse) and each constant moves it by a known gain:

- STEADY helps at every budget;
- FADES helps at the session's budget, half as much at 2x, not at all at 4x (the very same
  model), and hurts at 8x: its gain falls by half a gain per doubling of the budget;
- TWIN_A and TWIN_B give the same gain, once: either one is enough;
- HARMFUL hurts; UNUSED changes nothing (the very same model).

The seed moves the mix and the gain a little, so paired differences have a spread (and a
standard error) while their signs stay known. HOLD_SECONDS keeps a run in flight for kill tests.
"""

from __future__ import annotations

import math
import time

import git

from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout

TRAINER = '''
import math
import os
import time

import numpy as np
import torch

import prepare

STEADY = 0
FADES = 0
TWIN_A = 0
TWIN_B = 0
HARMFUL = 0
UNUSED = 0

BASE_BUDGET = {base}
HOLD_SECONDS = {hold}

multiple = float(os.environ["RATCHET_BUDGET_S"]) / BASE_BUDGET
jitter = (prepare.seed() * 7919 % 13) / 13.0
gain = 0.1 + 0.01 * jitter
mix = 0.5 + 0.02 * jitter
if STEADY:
    mix -= gain
if FADES:
    mix -= gain * (1.0 - math.log2(multiple) / 2.0)
if TWIN_A or TWIN_B:
    mix -= gain
if HARMFUL:
    mix += gain
time.sleep(HOLD_SECONDS)
data = np.asarray(prepare.load_train_data()[:300_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
counts = counts.reshape(256, 256) + 1.0
p = counts / counts.sum(axis=1, keepdims=True)
table = torch.tensor(np.log((1.0 - mix) * p + mix / 256.0), dtype=torch.float32)
model = torch.nn.Embedding.from_pretrained(table, freeze=False)
prepare.log_step(step=1, loss=1.0, lr=0.0, tok_s=1.0, elapsed=0.1)
prepare.save_model(model, {{"steps": 1, "tokens": len(data), "params": 65536}})
'''


def trainer(base: float, hold: float = 0.0) -> str:
    return TRAINER.format(base=base, hold=hold)


def set_constant(source: str, name: str, value: int) -> str:
    old = next(line for line in source.splitlines() if line.startswith(f"{name} = "))
    return source.replace(old + "\n", f"{name} = {value}\n", 1)


def studied_session(ws: layout.Workspace, keeps: list[str], tag: str = "t",
                    hold: float = 0.0, budget: float = 10.0,
                    baseline_seeds: int = 2) -> str:
    """Commit the trainer, then each of `keeps` (a constant set to 1, or `NAME=2`, in order) on
    the branch ratchet/<tag>, and write the session that kept them: its log as the engine writes
    one. Returns the session id. The workspace is left on its main branch."""
    config = ws.config()
    config.experiment.budget_seconds = budget
    config.loop.baseline_seeds = baseline_seeds
    configmod.save(ws.root, config)
    repo = git.Repo(ws.root)
    source = trainer(budget, hold)
    (ws.root / "train.py").write_text(source)
    repo.index.add(["train.py", "ratchet.toml"])
    base = repo.index.commit("study trainer").hexsha
    start = repo.active_branch
    branch = repo.create_head(f"ratchet/{tag}", base)
    branch.checkout()
    commits = []
    for keep in keeps:
        name, value = (keep.split("=") + ["1"])[:2]
        source = set_constant(source, name, int(value))
        (ws.root / "train.py").write_text(source)
        repo.index.add(["train.py"])
        commits.append(repo.index.commit(f"{name} = {value}").hexsha)
    start.checkout()
    session = f"20250101-000000-{tag}-abcd"
    folder = ws.runs_dir() / session
    log = events.EventLog(folder / paths.EVENTS)
    t = time.time() - 1000
    log.record({"t": t, "type": schema.SESSION_START, "session": session, "tag": tag,
                "branch": f"ratchet/{tag}", "base_commit": base, "config": config.to_dict(),
                "hardware": {}, "agent": "offline", "resumed": False, "pid": 0,
                "options": {"budget": budget, "max_experiments": len(keeps), "gpus": [],
                            "backend": "local", "address": None}})
    for n, (keep, commit) in enumerate(zip(keeps, commits, strict=True), 1):
        name, value = (keep.split("=") + ["1"])[:2]
        log.record({"t": t + n, "type": schema.EXP_END, "exp": n, "kind": schema.CONFIRM,
                    "status": schema.OK, "decision": schema.KEEP, "val_bpb": 3.0 - n / 10,
                    "best_before": 3.1 - n / 10, "delta": -0.1, "margin": 0.0, "commit": commit,
                    "description": f"{name} -> {value}", "changes": {name: int(value)},
                    "result": {}})
    log.record({"t": t + 100, "type": schema.SESSION_END, "reason": schema.STOP_MAX_EXPERIMENTS,
                "experiments": len(keeps), "kept": len(keeps), "best_bpb": 2.5,
                "baseline_bpb": 3.0, "best_commit": commits[-1] if commits else base})
    log.close()
    return session


def expected_fade(multiple: float) -> float:
    """FADES's gain at a budget multiple, in gains (1 at 1x, 0 at 4x, -0.5 at 8x)."""
    return 1.0 - math.log2(multiple) / 2.0
