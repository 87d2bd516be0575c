"""Start the engine as its own detached process, and find engines that are already running.

`ratchet run` calls `spawn`; the child runs `python -m ratchet.engine.loop.daemon`, which builds the
agent and runs the Session. The child is in a new session (no controlling terminal), so closing
the terminal or losing SSH does not reach it. It inherits the workspace's engine lock when
`ratchet run` took it (`options.lock_fd`), and holds it until it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import time
from pathlib import Path

from ratchet.engine.agents import registry
from ratchet.engine.loop import gitops, lock
from ratchet.engine.loop.session import RunOptions, Session, session_dir
from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.workspace.layout import Workspace, WorkspaceError


def new_session_id(tag: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{tag}-{secrets.token_hex(2)}"


def spawn(ws: Workspace, options: RunOptions) -> tuple[Path, int]:
    """Start the engine detached; returns its session folder and pid."""
    folder = session_dir(ws, options.session)
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ratchet.engine.loop.daemon", "--workspace", str(ws.root),
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
    handed = () if options.lock_fd is None else (options.lock_fd,)
    if handed:
        argv += ["--lock-fd", str(options.lock_fd)]
    with open(folder / paths.ENGINE_LOG, "ab") as log:
        proc = subprocess.Popen(argv, cwd=ws.root, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=handed)
    paths.write_pid(folder, proc.pid)
    return folder, proc.pid


def wait_started(folder: Path, pid: int, since: int = 0, log_since: int = 0) -> str:
    """Wait until the engine `spawn` started has begun its session (a session_start past byte
    `since` of the log): '' then. If it exits first, it refused to start: why, in one line
    (its own line in engine.log past byte `log_since`, or where to look)."""
    tail = events.LogTail(folder / paths.EVENTS, offset=since, on_warning=lambda _: None)
    while True:
        gone = paths.engine_alive(folder) != pid  # before reading: a start written, then exit
        if any(e.get("type") == schema.SESSION_START for e in tail.poll()):
            return ""
        if gone:
            return _refusal(folder / paths.ENGINE_LOG, log_since)
        time.sleep(0.1)


def _refusal(log: Path, since: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(since)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    said = [line.strip() for line in lines if line.strip()]
    prefix = "ratchet-engine: error: "
    if said and said[-1].startswith(prefix):
        return said[-1][len(prefix):]
    return f"the engine exited before its session started; see {log}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ratchet-engine")
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--agent", default=registry.DEFAULT, choices=registry.NAMES)
    parser.add_argument("--max-experiments", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--budget", type=float)
    parser.add_argument("--gpus", type=lambda text: [int(d) for d in text.split(",") if d])
    parser.add_argument("--backend")
    parser.add_argument("--address")
    parser.add_argument("--lock-fd", type=int)
    args = parser.parse_args(argv)
    ws = Workspace(args.workspace)
    config = ws.config()
    options = RunOptions(session=args.session, tag=args.tag, agent=args.agent, budget=args.budget,
                         max_experiments=args.max_experiments, resume=args.resume,
                         gpus=args.gpus, backend=args.backend, address=args.address,
                         lock_fd=args.lock_fd)
    agent = registry.create(args.agent, config)
    agent.start_session(args.session)  # a resume keeps its id, so its search stays the same
    try:
        session = Session(ws, config, options, agent)
        session.install_signal_handlers()
        code = session.run()
    except (lock.Busy, gitops.GitError, WorkspaceError) as exc:  # refused before it started
        return say(f"ratchet-engine: error: {exc}", 2)
    except OSError as exc:
        if not lock.is_full(exc):
            raise
        return say(f"ratchet-engine: error: {lock.full_message(ws.runs_dir())}", 2)
    full = session.recorder.full
    return say(f"ratchet-engine: error: {full}", code) if full else code


def say(line: str, code: int) -> int:
    """One line on stderr (engine.log), where the disk still has room for it."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
