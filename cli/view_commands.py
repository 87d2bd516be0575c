"""Commands that read a session's log: status, ls, report."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

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
        running = paths.is_running(folder)
        return _write(args, lambda path: study_report.write_png(log, path),
                      lambda png: study_report.markdown(log, png=png, running=running),
                      lambda width: study_report.text(log, width=width, running=running))
    fig = report.figures(log)
    return _write(args, lambda path: report.write_png(fig, path),
                  lambda png: report.markdown(fig, png=png),
                  lambda width: report.text(fig, width=width, chart=not args.no_chart))


def _write(args, png: Callable[[str], None], markdown: Callable[[str | None], str],
           text: Callable[[int], str]) -> int:
    """A report's chart to --png, then the report as markdown (--md) or text to the terminal's
    width."""
    if args.png:
        try:
            png(args.png)
        except report.ReportError as exc:
            raise UserError(str(exc)) from None
    if args.md:
        print(markdown(str(args.png) if args.png else None), end="")
    else:
        width = min(max(os.get_terminal_size(sys.stdout.fileno()).columns, 60), 120) \
            if sys.stdout.isatty() else 80
        print(text(width))
    if args.png:
        print(f"chart written to {args.png}", file=sys.stderr)
    return 0
