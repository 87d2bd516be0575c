"""How long a session takes to read its workspace's earlier sessions (memory across sessions).

    .venv/bin/python bench/earlier_index.py [--sessions 200] [--experiments 20] [--commits 2000]

Writes a synthetic `runs/` of that many finished sessions, each of that many experiments in the
realistic event mix of `bench/tui_ingest.py` (about a thousand events an experiment: mostly
train_log, agent_delta and resources, which the index skips unparsed), and times
`engine.workspace.earlier.read`:

1. first read: every log folded, and a cache written beside each (`memory.json`);
2. next read: from the caches (what every later session start costs);
3. without the cache: every log folded again, nothing written.

The logs were just written, so they are in the page cache: a read from a cold disk adds the
time to read their bytes once (the first read only). Then `files_at`, the offline agent's one
git look-up per earlier run, on a repository of `--commits` commits.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tui_ingest import experiment_events  # noqa: E402 - the same event mix as the ingest bench

from ratchet.engine.workspace import earlier  # noqa: E402


def session_bytes(experiments: int) -> bytes:
    """One session's log after its first line: baseline, experiments, journal notes, end."""
    rng = random.Random(0)
    lines, t = [], 1.7e9
    lines.append({"t": t, "type": "exp_end", "exp": 0, "kind": "baseline", "status": "ok",
                  "decision": "baseline", "val_bpb": 1.0, "commit": "0" * 40,
                  "description": "baseline", "result": {}})
    for n in range(1, experiments + 1):
        lines += experiment_events(n, t, rng)
        lines.append({"t": t, "type": "journal", "exp": n, "text": f"note {n}: " + "x" * 200})
        t += 320
    lines.append({"t": t, "type": "session_end", "reason": "stopped", "experiments": experiments})
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in lines)


def write_runs(runs: Path, sessions: int, experiments: int) -> int:
    body = session_bytes(experiments)
    for i in range(sessions):
        folder = runs / f"2026{i:05d}-night-bench"
        folder.mkdir(parents=True)
        start = {"t": 1.7e9 + i, "type": "session_start", "session": folder.name, "tag": "b",
                 "branch": "b", "base_commit": "0" * 40, "config": {}, "hardware": {},
                 "agent": "offline", "resumed": False, "pid": 0}
        (folder / "events.jsonl").write_bytes(json.dumps(start).encode() + b"\n" + body)
    return sessions * (len(body) + 200)


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def make_repo(root: Path, commits: int) -> list[str]:
    """A repository of `commits` commits, each changing train.py's constant (git fast-import)."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    stream = []
    for i in range(commits):
        text = f"LEARNING_RATE = {0.001 * (i + 1):.4f}\nprint('training')\n".encode()
        stream.append(b"commit refs/heads/main\nmark :%d\ncommitter b <b@b> %d +0000\n"
                      b"data 2\nc\n" % (i + 1, 1_700_000_000 + i))
        if i:
            stream.append(b"from :%d\n" % i)
        stream.append(b"M 644 inline train.py\ndata %d\n%s\n" % (len(text), text))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(stream),
                   check=True)
    out = subprocess.run(["git", "rev-list", "main"], cwd=root, capture_output=True,
                         check=True, text=True).stdout.split()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ratchet-earlier-"))
    try:
        runs = folder / "runs"
        size = write_runs(runs, args.sessions, args.experiments)
        first_s, found = timed(lambda: earlier.read(runs, exclude="current"))
        again_s, again = timed(lambda: earlier.read(runs, exclude="current"))
        plain_s, _ = timed(lambda: earlier.read(runs, exclude="current", cache=False))
        assert again.entries == found.entries and len(found.sessions) == args.sessions
        cache_mb = sum(p.stat().st_size for p in runs.glob("*/memory.json")) / 2**20
        print(f"{args.sessions} sessions x {args.experiments} experiments: "
              f"{size / 2**20:.0f} MiB of logs, {len(found.entries)} entries, "
              f"{len(found.journal)} notes")
        print(f"first read (fold every log, write the caches): {first_s:.2f} s")
        print(f"next read (the caches, {cache_mb:.1f} MiB):          {again_s:.2f} s")
        print(f"without the cache (fold every log):          {plain_s:.2f} s")
        shas = make_repo(folder / "repo", args.commits)
        files_s, texts = timed(lambda: earlier.files_at(folder / "repo", shas, "train.py"))
        assert len(texts) == len(shas)
        print(f"files_at: train.py at {len(shas)} commits:            {files_s:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
