"""`ratchet` command line: every user error ends as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from ratchet.cli import headless, report
from ratchet.engine.agents import registry
from ratchet.engine.loop import daemon, gitops
from ratchet.engine.loop.gitops import GitError
from ratchet.engine.loop.session import RunOptions
from ratchet.engine.protocol import control, paths
from ratchet.engine.runner import compat, experiment, sandbox
from ratchet.engine.workspace import catalog, importer, layout
from ratchet.engine.workspace import config as configmod


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


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"ports are 1 to 65535, got {text}")
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
    layout.init(Path(args.dir), device=args.device, budget=args.budget,
                   source=source or "stdlib", paths=paths, column=args.column or "text")
    _warn_if_unsandboxed()
    return 0


def cmd_prepare(args) -> int:
    ws = layout.find(args.workspace)
    source, paths = _data_source(args)
    if args.stdlib:
        source, paths = "stdlib", []
    layout.prepare_data(ws, source, paths, column=args.column, val_percent=args.val_percent)
    return 0


def cmd_experiment(args) -> int:
    ws = layout.find(args.workspace)
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


def _find_session(ws: layout.Workspace, name: str | None, running_only: bool = False):
    found = paths.sessions(ws.runs_dir())
    if name:
        match = [p for p in found if p.name == name] or [p for p in found
                                                          if p.name.startswith(name)]
        if not match:
            raise UserError(f"no session {name!r} in {ws.runs_dir()}")
        return match[-1]
    if running_only:
        found = [p for p in found if paths.is_running(p)]
    if not found:
        raise UserError("no running session in this workspace" if running_only
                        else "no sessions in this workspace yet; start one with `ratchet run`")
    return found[-1]


def _free_tag(ws: layout.Workspace, base: str) -> str:
    """Today's date as the tag, with -2, -3, ... when that branch is taken already."""
    heads = {h.name for h in gitops.open_repo(ws.root).heads}
    tag, n = base, 1
    while gitops.branch_name(tag) in heads:
        n += 1
        tag = f"{base}-{n}"
    return tag


def cmd_run(args) -> int:
    if args.compat:
        ws = compat.prepare_checkout(args.workspace or Path.cwd())
    else:
        ws = layout.find(args.workspace)
    config = ws.config()
    agent = args.agent or registry.default_kind(config)
    if agent == "claude" and not os.environ.get("ANTHROPIC_API_KEY"):
        raise UserError("--agent claude needs ANTHROPIC_API_KEY; without it use --agent offline")
    registry.create(agent, config)  # fail here, not in the detached engine
    if config.experiment.compat:
        print(f"ratchet: note: {config.experiment.compat} compat mode: val_bpb is self-reported "
              f"by train.py, which runs unsandboxed", file=sys.stderr)
    else:
        _warn_if_unsandboxed()
    if (args.backend or config.loop.backend) == "ray":
        from ratchet.engine.workers import ray_backend

        try:
            ray_backend.import_ray()
        except ray_backend.RayUnavailable as exc:
            raise UserError(str(exc)) from None
    elif args.address:
        raise UserError("--address is for --backend ray")
    tag = args.tag or _free_tag(ws, time.strftime("%b%d").lower())
    if args.resume:
        previous = [p for p in paths.sessions(ws.runs_dir()) if paths.session_tag(p) == tag] \
            if args.tag else paths.sessions(ws.runs_dir())
        if not previous:
            raise UserError("nothing to resume: no earlier session" +
                            (f" with tag {tag!r}" if args.tag else ""))
        folder = previous[-1]
        if paths.is_running(folder):
            raise UserError(f"session {folder.name} is still running (pid "
                            f"{paths.engine_pid(folder)})")
        session, tag = folder.name, paths.session_tag(folder) or tag
    else:
        running = [p for p in paths.sessions(ws.runs_dir()) if paths.is_running(p)]
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
        if sys.stdin.isatty() and sys.stdout.isatty():
            return _dashboard(folder)
        print("stdout is not a terminal; following in headless mode", flush=True)
    return headless.follow(folder)


def _dashboard(folder: Path) -> int:
    """Open the dashboard on a session; after `q`, say what the engine is doing."""
    from ratchet.tui import launch  # the engine itself never imports the dashboard

    launch.run_dashboard(folder)
    if paths.is_running(folder):
        print(f"dashboard closed; the engine keeps running (session {folder.name}): "
              f"`ratchet attach` to reattach, `ratchet stop` to stop it")
    else:
        print(f"dashboard closed; session {folder.name} is not running "
              f"(`ratchet status {folder.name}` for its summary)")
    return 0


def cmd_attach(args) -> int:
    ws = layout.find(args.workspace)
    folder = _find_session(ws, args.session, running_only=args.session is None)
    if args.web:
        from ratchet.tui import launch

        print(f"serving the dashboard of session {folder.name} on http://127.0.0.1:{args.port} "
              f"({'with' if args.allow_control else 'without'} control); from your machine: "
              f"ssh -L {args.port}:127.0.0.1:{args.port} <this host>", flush=True)
        launch.serve_web(folder, args.port, args.allow_control)
        return 0
    if args.allow_control:
        raise UserError("--allow-control goes with --web (the terminal dashboard always has it)")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("attach needs a terminal; use `ratchet attach --web` or `ratchet status`")
    return _dashboard(folder)


def cmd_replay(args) -> int:
    target = args.session
    if target and target.endswith(".jsonl") and Path(target).is_file():
        log_path = Path(target)  # a log file on its own, e.g. one copied from another machine
    else:
        ws = catalog.locate(args.workspace)
        log_path = _find_session(ws, target) / "events.jsonl"
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("replay needs a terminal; `ratchet report` prints a session's summary")
    from ratchet.tui import replay_app  # the engine itself never imports the dashboard

    replay_app.run_replay(log_path, args.speed)
    return 0


def cmd_status(args) -> int:
    ws = catalog.locate(args.workspace)
    folder = _find_session(ws, args.session)
    print(headless.status_text(folder, on_warning=catalog.warn_stderr))
    return 0


def cmd_ls(args) -> int:
    ws = catalog.locate(args.workspace)
    rows = catalog.summarise_all(ws, on_warning=catalog.warn_stderr)
    if not rows:
        print(f"no sessions in {ws.runs_dir()} yet; start one with `ratchet run` or bring one "
              f"in with `ratchet import`")
        return 0
    print(catalog.table(rows))
    return 0


def cmd_report(args) -> int:
    ws = catalog.locate(args.workspace)
    folder = _find_session(ws, args.session)
    fig = report.figures(catalog.load(folder, on_warning=catalog.warn_stderr))
    if args.png:
        try:
            report.write_png(fig, args.png)
        except report.ReportError as exc:
            raise UserError(str(exc)) from None
    if args.md:
        print(report.markdown(fig, png=str(args.png) if args.png else None), end="")
    else:
        width = min(max(os.get_terminal_size(sys.stdout.fileno()).columns, 60), 120) \
            if sys.stdout.isatty() else 80
        print(report.text(fig, width=width, chart=not args.no_chart))
    if args.png:
        print(f"chart written to {args.png}", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    try:
        runs = importer.destination(args.path, args.workspace)
        folder, count = importer.import_run(args.path, runs, force=args.force,
                                            on_warning=catalog.warn_stderr)
    except importer.ImportFailed as exc:
        raise UserError(str(exc)) from None
    print(f"imported {count} experiments as session {folder.name} (in {runs})")
    return 0


def cmd_ctl(args) -> int:
    ws = layout.find(args.workspace)
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
    ws = layout.find(args.workspace)
    folder = _find_session(ws, args.session, running_only=True)
    pid = paths.engine_pid(folder)
    try:
        control.send(folder / "control.sock", "stop")
    except control.ControlError:
        os.kill(pid, signal.SIGTERM)  # no socket answer: fall back to the signal
    deadline = time.monotonic() + args.wait
    while paths.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if paths.pid_alive(pid):
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
    p.add_argument("--agent", choices=registry.KINDS, help="default: offline without "
                   "an API key, else from config")
    p.add_argument("--budget", type=_positive, help="training seconds per experiment "
                   "(default: from ratchet.toml)")
    p.add_argument("--max-experiments", type=_count, help="stop after N proposals")
    p.add_argument("--tag", type=_tag, help="branch ratchet/TAG (default: today's date)")
    p.add_argument("--resume", action="store_true", help="continue the latest session "
                   "(with --tag: that tag's)")
    p.add_argument("--compat", choices=[compat.KIND], help="drive an existing autoresearch "
                   "checkout (its train.py, prepare.py, program.md; val_bpb self-reported)")
    p.add_argument("--gpus", type=_devices, metavar="0,1,...", help="one experiment at a time "
                   "on each of these devices (default: [loop] gpus)")
    p.add_argument("--backend", choices=configmod.BACKENDS, help="local workers, or Ray tasks "
                   "on a Ray cluster (default: [loop] backend)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address for --backend ray")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("attach", help="open the dashboard on a running session")
    p.add_argument("session", nargs="?", help="session id (default: the newest running one)")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--web", action="store_true", help="serve it to a browser on 127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="port for --web (default: 8000)")
    p.add_argument("--allow-control", action="store_true", help="with --web: allow pause, "
                   "steer, kill and stop from the browser")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("replay", help="the dashboard over a recorded session, on a clock you "
                       "control")
    p.add_argument("session", nargs="?", help="session id, or an events.jsonl file (default: "
                   "the newest session)")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--speed", type=_positive, default=10.0, help="times real time (default: "
                   "10); long idle gaps are skipped")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("status", help="one-screen summary of a session")
    p.add_argument("session", nargs="?", help="session id (default: the newest)")
    p.add_argument("-C", "--workspace", type=Path)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ls", help="list the sessions: state, experiments, best, cost")
    p.add_argument("-C", "--workspace", type=Path)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("report", help="progress report of a session, with a val_bpb chart")
    p.add_argument("session", nargs="?", help="session id (default: the newest)")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--png", type=Path, metavar="FILE", help="also write the chart as a PNG "
                   "(needs the report extra: matplotlib)")
    p.add_argument("--md", action="store_true", help="print markdown instead of text")
    p.add_argument("--no-chart", action="store_true", help="leave the terminal chart out")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("import", help="turn an autoresearch run (results.tsv + git history) "
                       "into a session")
    p.add_argument("path", type=Path, help="autoresearch checkout, or a results.tsv file")
    p.add_argument("-C", "--workspace", type=Path, help="workspace to import into (default: "
                   "this one, else PATH/runs/)")
    p.add_argument("--force", action="store_true", help="replace an earlier import of PATH")
    p.set_defaults(func=cmd_import)

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
    except (UserError, configmod.ConfigError, layout.WorkspaceError, GitError,
            registry.AgentUnavailable, compat.CompatError) as exc:
        print(f"ratchet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
