"""Commands that read a session's log: status, ls, report."""

from __future__ import annotations

import os
import sys

from ratchet.cli import headless, report
from ratchet.cli.arguments import UserError
from ratchet.cli.session_commands import find_session
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
