"""`python -m ratchet.tui SESSION_FOLDER_OR_LOG [--read-only]`: the dashboard on its own.

`ratchet attach --web` serves this command through textual-serve, one process per browser tab.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ratchet.tui.launch import run_dashboard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ratchet.tui")
    parser.add_argument("path", type=Path, help="a session folder, or an events.jsonl file")
    parser.add_argument("--read-only", action="store_true", help="hide pause/steer/kill/stop")
    args = parser.parse_args(argv)
    run_dashboard(args.path, read_only=args.read_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
