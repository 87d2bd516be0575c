"""`ratchet` command line: every user error ends as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import NoReturn

from ratchet.cli import arguments as a
from ratchet.cli import session_commands as session
from ratchet.cli import study_commands as study
from ratchet.cli import view_commands as view
from ratchet.cli import workspace_commands as workspace
from ratchet.cli.arguments import UserError
from ratchet.engine.agents import registry
from ratchet.engine.loop.gitops import GitError
from ratchet.engine.runner import compat
from ratchet.engine.workspace import config as configmod
from ratchet.engine.workspace import layout

BROKEN_PIPE = 141  # 128 + SIGPIPE: the status `git log | head` leaves


class Parser(argparse.ArgumentParser):
    """A bad argument ends as one line, as every other user error does; the usage stays on
    --help. The commands' parsers are of this class too (add_subparsers makes them so)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ratchet: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ratchet", description="An autonomous ML research loop on your own "
                    "GPUs, shown in the terminal.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a research workspace and prepare its data")
    p.add_argument("dir", nargs="?", default=".", help="folder to create (default: here)")
    p.add_argument("--device", choices=configmod.DEVICES, default="auto")
    p.add_argument("--budget", type=a.positive, help="training seconds per experiment "
                   "(default: 20 on CPU, 300 on CUDA)")
    a.add_data_options(p)
    p.set_defaults(func=workspace.cmd_init)

    p = sub.add_parser("prepare", help="build or switch the workspace's data")
    p.add_argument("-C", "--workspace", type=Path, help="workspace folder (default: here)")
    p.add_argument("--stdlib", action="store_true", help="use the Python stdlib corpus")
    p.add_argument("--val-percent", type=float, help="share of documents for validation")
    a.add_data_options(p)
    p.set_defaults(func=workspace.cmd_prepare)

    p = sub.add_parser("experiment", help="run one experiment on the workspace as it is")
    p.add_argument("-C", "--workspace", type=Path, help="workspace folder (default: here)")
    p.add_argument("--budget", type=a.positive, help="training seconds (default: from config)")
    p.add_argument("--seed", type=int, help="training seed (default: from config)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-step lines")
    p.set_defaults(func=workspace.cmd_experiment)

    p = sub.add_parser("run", help="start the research loop (engine runs detached)")
    p.add_argument("-C", "--workspace", type=Path, help="workspace folder (default: here)")
    p.add_argument("--headless", action="store_true", help="print progress instead of the "
                   "dashboard")
    p.add_argument("--agent", choices=registry.NAMES, help="default: from config, or "
                   f"{registry.DEFAULT} where that agent's API key is not set")
    p.add_argument("--budget", type=a.positive, help="training seconds per experiment "
                   "(default: from ratchet.toml)")
    p.add_argument("--max-experiments", type=a.count, help="stop after N proposals")
    p.add_argument("--tag", type=a.tag, help="branch ratchet/TAG (default: today's date)")
    p.add_argument("--resume", action="store_true", help="continue the latest session "
                   "(with --tag: that tag's)")
    p.add_argument("--compat", choices=[compat.KIND], help="drive an existing autoresearch "
                   "checkout (its train.py, prepare.py, program.md; val_bpb self-reported)")
    p.add_argument("--gpus", type=a.devices, metavar="0,1,...", help="one experiment at a time "
                   "on each of these devices (default: [loop] gpus)")
    p.add_argument("--backend", choices=configmod.BACKENDS, help="local workers, or Ray tasks "
                   "on a Ray cluster (default: [loop] backend)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address for --backend ray")
    p.set_defaults(func=session.cmd_run)

    p = sub.add_parser("attach", help="open the dashboard on a running session")
    p.add_argument("session", nargs="?", help="session id (default: the newest running one)")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--web", action="store_true", help="serve it to a browser on 127.0.0.1")
    p.add_argument("--port", type=a.port, default=8000, help="port for --web (default: 8000)")
    p.add_argument("--allow-control", action="store_true", help="with --web: allow pause, "
                   "steer, kill and stop from the browser")
    p.set_defaults(func=session.cmd_attach)

    p = sub.add_parser("replay", help="the dashboard over a recorded session, on a clock you "
                       "control")
    p.add_argument("session", nargs="?", help="session id, or an events.jsonl file (default: "
                   "the newest session)")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--speed", type=a.positive, default=10.0, help="times real time (default: "
                   "10); long idle gaps are skipped")
    p.set_defaults(func=session.cmd_replay)

    p = sub.add_parser("status", help="one-screen summary of a session")
    p.add_argument("session", nargs="?", help="session id (default: the newest)")
    p.add_argument("-C", "--workspace", type=Path)
    p.set_defaults(func=view.cmd_status)

    p = sub.add_parser("ls", help="list the sessions: state, experiments, best, cost")
    p.add_argument("-C", "--workspace", type=Path)
    p.set_defaults(func=view.cmd_ls)

    p = sub.add_parser("report", help="progress report of a session, with a val_bpb chart")
    p.add_argument("session", nargs="?", help="session id (default: the newest)")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--png", type=Path, metavar="FILE", help="also write the chart as a PNG "
                   "(needs the report extra: matplotlib)")
    p.add_argument("--md", action="store_true", help="print markdown instead of text")
    p.add_argument("--no-chart", action="store_true", help="leave the terminal chart out")
    p.set_defaults(func=view.cmd_report)

    study.add_parsers(sub)

    p = sub.add_parser("import", help="turn an autoresearch run (results.tsv + git history) "
                       "into a session")
    p.add_argument("path", type=Path, help="autoresearch checkout, or a results.tsv file")
    p.add_argument("-C", "--workspace", type=Path, help="workspace to import into (default: "
                   "this one, else PATH/runs/)")
    p.add_argument("--force", action="store_true", help="replace an earlier import of PATH")
    p.set_defaults(func=workspace.cmd_import)

    p = sub.add_parser("stop", help="stop the running engine")
    p.add_argument("session", nargs="?")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for it to exit")
    p.set_defaults(func=session.cmd_stop)

    p = sub.add_parser("ctl", help="send pause, resume, steer TEXT, kill or stop to the engine")
    p.add_argument("cmd", choices=["pause", "resume", "steer", "kill", "stop"])
    p.add_argument("text", nargs="*", help="the note, for steer")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--session")
    p.set_defaults(func=session.cmd_ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()  # a reader gone shows here, not in the interpreter's last flush
        return code
    except (UserError, configmod.ConfigError, layout.WorkspaceError, GitError,
            registry.AgentUnavailable, compat.CompatError) as exc:
        print(f"ratchet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ratchet report | head`): stop quietly, as `git log | head`
        # does; what is still buffered goes to /dev/null, so the exit's flush cannot fail
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
