"""`ratchet report | head -3` and the like: a reader that goes away early ends the command
quietly, as `git log | head` does (exit status 141), never with a BrokenPipeError traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from dashboard_helpers import RECORDED

SESSIONS = 700  # rows enough for `ls` to fill a pipe (64 KiB) past its first line


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder of sessions (imported ones need no workspace): many short ones, and the
    recorded session as the newest."""
    root = tmp_path_factory.mktemp("piped")
    for n in range(SESSIONS):
        session = root / "runs" / f"20250101-{n:06d}-short-0000"
        session.mkdir(parents=True)
        events = [{"t": 1.0e9 + n, "type": "session_start", "session": session.name,
                   "tag": "short", "agent": "offline"},
                  {"t": 1.0e9 + n + 1, "type": "session_end", "reason": "stopped"}]
        (session / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        os.utime(session / "events.jsonl", (1.0e9 + n, 1.0e9 + n))
    newest = root / "runs" / "20261125-120000-demo-0001"
    newest.mkdir()
    shutil.copy(RECORDED, newest / "events.jsonl")
    return root


def read_then_close(args: list[str], cwd, lines: int) -> subprocess.CompletedProcess:
    """Run `ratchet ARGS` into a pipe whose reader takes `lines` lines (0: none) and goes."""
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                            stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    got = b""
    with os.fdopen(read, "rb") as reader:
        while got.count(b"\n") < lines:
            chunk = reader.read1(1 << 12)
            if not chunk:
                break
            got += chunk
    _, err = proc.communicate(timeout=120)
    assert got.count(b"\n") >= lines, got
    return subprocess.CompletedProcess(args, proc.returncode, got.decode(), err)


@pytest.mark.parametrize("args,lines", [
    (["report"], 0),
    (["report", "--md"], 0),
    (["status"], 0),
    (["ls"], 0),
    (["ls"], 1),  # more than a pipe holds: the writer meets the closed pipe mid-way
])
def test_a_reader_that_goes_away_ends_the_command_quietly(folder, args, lines):
    done = read_then_close(args, folder, lines)
    assert done.stderr == "", done.stderr
    assert done.returncode in (0, 141), done.returncode
