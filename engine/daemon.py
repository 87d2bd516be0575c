"""Start the engine as its own detached process, and find engines that are already running.

`ratchet run` calls `spawn`; the child runs `python -m ratchet.engine.daemon`, which builds the
agent and runs the Session. The child is in a new session (no controlling terminal), so closing
the terminal or losing SSH does not reach it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from ratchet.engine import agents_registry, events
from ratchet.engine.session import RunOptions, Session, session_dir
from ratchet.engine.workspace import Workspace


def new_session_id(tag: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{tag}-{secrets.token_hex(2)}"


def spawn(ws: Workspace, options: RunOptions) -> tuple[Path, int]:
    """Start the engine detached; returns its session folder and pid."""
    folder = session_dir(ws, options.session)
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ratchet.engine.daemon", "--workspace", str(ws.root),
            "--session", options.session, "--tag", options.tag, "--agent", options.agent]
    if options.max_experiments is not None:
        argv += ["--max-experiments", str(options.max_experiments)]
    if options.resume:
        argv.append("--resume")
    if options.budget:
        argv += ["--budget", repr(options.budget)]
    if options.gpus is not None:
        argv += ["--gpus", ",".join(str(d) for d in options.gpus)]
    if options.backend:
        argv += ["--backend", options.backend]
    if options.address is not None:
        argv += ["--address", options.address]
    with open(folder / "engine.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=ws.root, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (folder / "engine.pid").write_text(str(proc.pid))
    return folder, proc.pid


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still answers kill(0); its /proc state says Z
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


def engine_pid(folder: Path) -> int:
    try:
        return int((folder / "engine.pid").read_text().strip())
    except (OSError, ValueError):
        return 0


def is_running(folder: Path) -> bool:
    return pid_alive(engine_pid(folder))


def sessions(ws: Workspace) -> list[Path]:
    """Session folders, oldest first."""
    runs = ws.runs_dir()
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if (p / "events.jsonl").exists()]
    return sorted(found, key=lambda p: (p / "events.jsonl").stat().st_mtime)


def session_tag(folder: Path) -> str:
    """The tag the session started with, from its first event."""
    first = next(events.iter_events(folder / "events.jsonl"), {})
    return first.get("tag", "") if first.get("type") == "session_start" else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ratchet-engine")
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--agent", default="offline")
    parser.add_argument("--max-experiments", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--budget", type=float)
    parser.add_argument("--gpus", type=lambda text: [int(d) for d in text.split(",") if d])
    parser.add_argument("--backend")
    parser.add_argument("--address")
    args = parser.parse_args(argv)
    ws = Workspace(args.workspace)
    config = ws.config()
    options = RunOptions(session=args.session, tag=args.tag, agent=args.agent, budget=args.budget,
                         max_experiments=args.max_experiments, resume=args.resume,
                         gpus=args.gpus, backend=args.backend, address=args.address)
    agent = agents_registry.create(args.agent, config)
    session = Session(ws, config, options, agent)
    session.install_signal_handlers()
    return session.run()


if __name__ == "__main__":
    sys.exit(main())
