"""Commands that read a session's log: status, ls, report."""

from __future__ import annotations

import os
import sys

from ratchet.cli import headless, report, study_report
from ratchet.cli.arguments import UserError
from ratchet.cli.session_commands import find_session
from ratchet.engine.protocol import paths
from ratchet.engine.workspace import catalog


def cmd_status(args) -> int:
    ws = catalog.locate(args.workspace)
    folder = find_session(ws, args.session)
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
    folder = find_session(ws, args.session)
    log = catalog.load(folder, on_warning=catalog.warn_stderr)
    if study_report.is_study(log):
        return _study_report(args, log, paths.is_running(folder))
    fig = report.figures(log)
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


def _study_report(args, log: list[dict], running: bool) -> int:
    """A validate or ablate study: its tables (and its chart with --png)."""
    if args.png:
        try:
            study_report.write_png(log, args.png)
        except report.ReportError as exc:
            raise UserError(str(exc)) from None
    if args.md:
        print(study_report.markdown(log, png=str(args.png) if args.png else None,
                                    running=running), end="")
    else:
        width = min(max(os.get_terminal_size(sys.stdout.fileno()).columns, 60), 120) \
            if sys.stdout.isatty() else 80
        print(study_report.text(log, width=width, running=running))
    if args.png:
        print(f"chart written to {args.png}", file=sys.stderr)
    return 0
