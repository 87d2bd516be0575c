"""`ratchet` command line: every user error ends as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ratchet.engine import config as configmod
from ratchet.engine import experiment, sandbox, workspace


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, configmod.ConfigError, workspace.WorkspaceError) as exc:
        print(f"ratchet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
