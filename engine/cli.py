"""`ratchet` command line: every user error ends as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from ratchet.engine import (
    agents_registry,
    control,
    daemon,
    experiment,
    gitops,
    headless,
    sandbox,
    workspace,
)
from ratchet.engine import config as configmod
from ratchet.engine.gitops import GitError
from ratchet.engine.session import RunOptions


class UserError(Exception):
    """A one-line error for the user."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _devices(text: str) -> list[int]:
    """--gpus 0,1,2 as device numbers."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected device numbers such as 0,1,2, got {text!r}")
    if len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"a device is listed twice in {text!r}")
    return [int(p) for p in parts]


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text", nargs="+", metavar="PATH",
                       help="train on these text files or folders instead of the stdlib corpus")
    group.add_argument("--parquet", nargs="+", metavar="PATH",
                       help="train on the text column of these parquet files")
    parser.add_argument("--column", default=None, help="parquet text column (default: text)")


def _data_source(args) -> tuple[str | None, list[str] | None]:
    if args.text:
        return "text", args.text
    if args.parquet:
        return "parquet", args.parquet
    return None, None


def cmd_init(args) -> int:
    source, paths = _data_source(args)
    workspace.init(Path(args.dir), device=args.device, budget=args.budget,
                   source=source or "stdlib", paths=paths, column=args.column or "text")
    _warn_if_unsandboxed()
    return 0


def cmd_prepare(args) -> int:
    ws = workspace.find(args.workspace)
    source, paths = _data_source(args)
    if args.stdlib:
        source, paths = "stdlib", []
    workspace.prepare_data(ws, source, paths, column=args.column, val_percent=args.val_percent)
    return 0


def cmd_experiment(args) -> int:
    ws = workspace.find(args.workspace)
    config = ws.config()
    _warn_if_unsandboxed()
    budget = args.budget or config.experiment.budget_seconds
    out = ws.runs_dir() / "experiments" / time.strftime("%Y%m%d-%H%M%S")
    print(f"experiment: training {budget:g} s on {config.experiment.device} "
          f"(output in {out.relative_to(ws.root)})", flush=True)

    def show(record: dict) -> None:
        if not args.quiet:
            print(f"  step {record.get('step', 0):>6}  loss {record.get('loss', float('nan')):.4f}"
                  f"  {record.get('tok_s', 0):>9.0f} tok/s  {record.get('elapsed', 0):6.1f} s",
                  flush=True)

    result = experiment.run(ws, config, out, seed=args.seed, budget=budget, on_log=show)
    if result.status != "ok" and result.tail:
        print("--- output tail ---\n" + "\n".join(result.tail.splitlines()[-20:]))
    print(experiment.summary_text(result))
    return 0 if result.status == "ok" else 1


def _tag(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_." for c in text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"tags use letters, digits, '-', '_' and '.', "
                                         f"got {text!r}")
    return text


def _find_session(ws: workspace.Workspace, name: str | None, running_only: bool = False):
    found = daemon.sessions(ws)
    if name:
        match = [p for p in found if p.name == name] or [p for p in found
                                                          if p.name.startswith(name)]
        if not match:
            raise UserError(f"no session {name!r} in {ws.runs_dir()}")
        return match[-1]
    if running_only:
        found = [p for p in found if daemon.is_running(p)]
    if not found:
        raise UserError("no running session in this workspace" if running_only
                        else "no sessions in this workspace yet; start one with `ratchet run`")
    return found[-1]


def _free_tag(ws: workspace.Workspace, base: str) -> str:
    """Today's date as the tag, with -2, -3, ... when that branch is taken already."""
    heads = {h.name for h in gitops.open_repo(ws.root).heads}
    tag, n = base, 1
    while gitops.branch_name(tag) in heads:
        n += 1
        tag = f"{base}-{n}"
    return tag


def cmd_run(args) -> int:
    ws = workspace.find(args.workspace)
    config = ws.config()
    agent = args.agent or agents_registry.default_kind(config)
    if agent == "claude" and not os.environ.get("ANTHROPIC_API_KEY"):
        raise UserError("--agent claude needs ANTHROPIC_API_KEY; without it use --agent offline")
    agents_registry.create(agent, config)  # fail here, not in the detached engine
    if (args.backend or config.loop.backend) == "ray":
        from ratchet.engine import ray_backend

        try:
            ray_backend.import_ray()
        except ray_backend.RayUnavailable as exc:
            raise UserError(str(exc)) from None
    elif args.address:
        raise UserError("--address is for --backend ray")
    _warn_if_unsandboxed()
    tag = args.tag or _free_tag(ws, time.strftime("%b%d").lower())
    if args.resume:
        previous = [p for p in daemon.sessions(ws) if daemon.session_tag(p) == tag] \
            if args.tag else daemon.sessions(ws)
        if not previous:
            raise UserError("nothing to resume: no earlier session" +
                            (f" with tag {tag!r}" if args.tag else ""))
        folder = previous[-1]
        if daemon.is_running(folder):
            raise UserError(f"session {folder.name} is still running (pid "
                            f"{daemon.engine_pid(folder)})")
        session, tag = folder.name, daemon.session_tag(folder) or tag
    else:
        running = [p for p in daemon.sessions(ws) if daemon.is_running(p)]
        if running:
            raise UserError(f"session {running[-1].name} is already running in this workspace; "
                            f"attach to it, or `ratchet stop` it first")
        session = daemon.new_session_id(tag)
    # the engine checks again; checking here too reports the problem before it detaches
    gitops.check_can_start(gitops.open_repo(ws.root), tag, args.resume,
                           tuple(config.experiment.editable))
    options = RunOptions(session=session, tag=tag, agent=agent, budget=args.budget,
                         max_experiments=args.max_experiments, resume=args.resume,
                         gpus=args.gpus, backend=args.backend, address=args.address)
    folder, pid = daemon.spawn(ws, options)
    print(f"engine started: session {session} (pid {pid}, agent {agent}, branch ratchet/{tag})",
          flush=True)
    if not args.headless:
        print("the dashboard is not available yet; following in headless mode", flush=True)
    return headless.follow(folder)


def cmd_status(args) -> int:
    ws = workspace.find(args.workspace)
    folder = _find_session(ws, args.session)
    print(headless.status_text(folder))
    return 0


def cmd_ctl(args) -> int:
    ws = workspace.find(args.workspace)
    folder = _find_session(ws, args.session, running_only=True)
    extra = {"text": " ".join(args.text)} if args.cmd == "steer" else {}
    if args.cmd == "steer" and not extra["text"].strip():
        raise UserError("steer needs a note, e.g. ratchet ctl steer 'try a wider model'")
    try:
        reply = control.send(folder / "control.sock", args.cmd, **extra)
    except control.ControlError as exc:
        raise UserError(str(exc)) from None
    if not reply.get("ok"):
        raise UserError(reply.get("error", "the engine refused the command"))
    print(f"{args.cmd}: sent to session {folder.name}")
    return 0


def cmd_stop(args) -> int:
    ws = workspace.find(args.workspace)
    folder = _find_session(ws, args.session, running_only=True)
    pid = daemon.engine_pid(folder)
    try:
        control.send(folder / "control.sock", "stop")
    except control.ControlError:
        os.kill(pid, signal.SIGTERM)  # no socket answer: fall back to the signal
    deadline = time.monotonic() + args.wait
    while daemon.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if daemon.pid_alive(pid):
        raise UserError(f"engine (pid {pid}) is still stopping; check `ratchet status`")
    print(f"stopped session {folder.name}")
    return 0


_warned = False


def _warn_if_unsandboxed() -> None:
    global _warned
    if not _warned and sandbox.bwrap_path() is None:
        print(f"ratchet: warning: training runs without a sandbox ({sandbox.unavailable_reason()})"
              "; train.py could read validation files", file=sys.stderr)
        _warned = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratchet", description="An autonomous ML research "
                                     "loop on your own GPUs, shown in the terminal.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a research workspace and prepare its data")
    p.add_argument("dir", nargs="?", default=".", help="folder to create (default: here)")
    p.add_argument("--device", choices=configmod.DEVICES, default="auto")
    p.add_argument("--budget", type=_positive, help="training seconds per experiment "
                   "(default: 20 on CPU, 300 on CUDA)")
    _add_data_options(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("prepare", help="build or switch the workspace's data")
    p.add_argument("-C", "--workspace", type=Path, help="workspace folder (default: here)")
    p.add_argument("--stdlib", action="store_true", help="use the Python stdlib corpus")
    p.add_argument("--val-percent", type=float, help="share of documents for validation")
    _add_data_options(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("experiment", help="run one experiment on the workspace as it is")
    p.add_argument("-C", "--workspace", type=Path, help="workspace folder (default: here)")
    p.add_argument("--budget", type=_positive, help="training seconds (default: from config)")
    p.add_argument("--seed", type=int, help="training seed (default: from config)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-step lines")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("run", help="start the research loop (engine runs detached)")
    p.add_argument("-C", "--workspace", type=Path, help="workspace folder (default: here)")
    p.add_argument("--headless", action="store_true", help="print progress instead of the "
                   "dashboard")
    p.add_argument("--agent", choices=agents_registry.KINDS, help="default: offline without "
                   "an API key, else from config")
    p.add_argument("--budget", type=_positive, help="training seconds per experiment "
                   "(default: from ratchet.toml)")
    p.add_argument("--max-experiments", type=_count, help="stop after N proposals")
    p.add_argument("--tag", type=_tag, help="branch ratchet/TAG (default: today's date)")
    p.add_argument("--resume", action="store_true", help="continue the latest session "
                   "(with --tag: that tag's)")
    p.add_argument("--gpus", type=_devices, metavar="0,1,...", help="one experiment at a time "
                   "on each of these devices (default: [loop] gpus)")
    p.add_argument("--backend", choices=configmod.BACKENDS, help="local workers, or Ray tasks "
                   "on a Ray cluster (default: [loop] backend)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address for --backend ray")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="one-screen summary of a session")
    p.add_argument("session", nargs="?", help="session id (default: the newest)")
    p.add_argument("-C", "--workspace", type=Path)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stop", help="stop the running engine")
    p.add_argument("session", nargs="?")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for it to exit")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("ctl", help="send pause, resume, steer TEXT, kill or stop to the engine")
    p.add_argument("cmd", choices=["pause", "resume", "steer", "kill", "stop"])
    p.add_argument("text", nargs="*", help="the note, for steer")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--session")
    p.set_defaults(func=cmd_ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, configmod.ConfigError, workspace.WorkspaceError, GitError,
            agents_registry.AgentUnavailable) as exc:
        print(f"ratchet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
