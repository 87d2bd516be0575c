"""Record tests/data/session_events.jsonl: a short real session the dashboard tests replay.

Run from the repository root: `.venv/bin/python tests/data/record_session.py`. It creates a
throwaway CPU workspace, commits a bigram trainer that logs a loss curve, and runs the offline
agent for a few experiments, steering it once into a crash (SMOOTHING=-1) and once into a real
gain (SMOOTHING=1.0, kept after confirmation); the rest are the agent's own discards.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import git

from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout

TRAINER = '''
import time

import numpy as np
import torch

import prepare

SMOOTHING = 50.0  # added to every bigram count
STEPS = 24  # logged steps of the (simulated) loss curve
UNUSED_WIDTH = 64  # changes nothing

assert SMOOTHING > 0, "SMOOTHING must be positive"
start = (prepare.seed() % 7) * 150_000
data = np.asarray(prepare.load_train_data()[start:start + 150_000])
counts = np.bincount(data[:-1].astype(np.int64) * 256 + data[1:], minlength=65536)
table = torch.tensor(np.log(counts.reshape(256, 256) + SMOOTHING), dtype=torch.float32)
floor = 2.0 + SMOOTHING / 100
for step in range(1, STEPS + 1):
    prepare.log_step(step=step * 10, loss=floor + 3.5 / step ** 0.7, lr=1e-3, tok_s=5e4,
                     elapsed=0.04 * step)
    time.sleep(0.04)
model = torch.nn.Embedding.from_pretrained(table, freeze=False)
prepare.save_model(model, {"steps": STEPS * 10, "tokens": len(data), "params": 65536})
'''

OUT = Path(__file__).with_name("session_events.jsonl")
KEEP_RESOURCES_EVERY = 3  # trim resource samples to keep the fixture small


def wait(path: Path, predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and predicate(list(events.iter_events(path))):
            return
        time.sleep(0.2)
    raise SystemExit("timed out waiting for the session")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ratchet-record-"))
    try:
        root = tmp / "ws"
        layout.init(root, device="cpu", echo=lambda *_: None)
        ws = layout.Workspace(root)
        config = ws.config()
        config.experiment.budget_seconds = 2.0
        config.experiment.grace_seconds = 90.0
        config.experiment.min_improvement = 0.0
        config.data.eval_tokens = 65536
        config.loop.baseline_seeds = 2
        configmod.save(root, config)
        (root / "train.py").write_text(TRAINER)
        repo = git.Repo(root)
        repo.index.add(["train.py", "ratchet.toml"])
        repo.index.commit("bigram trainer")
        options = RunOptions(session="20261125-120000-demo-0001", tag="demo", max_experiments=5)
        session = Session(ws, ws.config(), options, OfflineAgent(seed=1))
        thread = threading.Thread(target=session.run)
        thread.start()
        path = session.events_path
        wait(path, lambda log: any(e["type"] == "exp_end" for e in log))
        session.handle({"cmd": "steer", "text": "SMOOTHING=-1"})
        wait(path, lambda log: sum(e["type"] == "proposal" for e in log) >= 1)
        session.handle({"cmd": "steer", "text": "SMOOTHING=1.0"})
        thread.join()
        lines = path.read_text().splitlines(keepends=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kept, n = [], 0
    for line in lines:
        if '"type":"resources"' in line:
            n += 1
            if n % KEEP_RESOURCES_EVERY:
                continue
        kept.append(line)
    OUT.write_text("".join(kept))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(kept)} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
