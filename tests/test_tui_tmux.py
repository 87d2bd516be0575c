"""`ratchet run` and `ratchet attach` in a real terminal (tmux): the panes, a val_bpb read off
the screen, and `q` closing the dashboard while the engine keeps running."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from test_tui_engine import bigram_workspace, end_engine, log_of

from ratchet.engine.protocol import paths

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(server: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def wait_screen(server: str, predicate, timeout: float = 120.0, target: str = "dash") -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux(server, "capture-pane", "-p", "-t", target)
        if predicate(screen):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"timed out; the screen shows:\n{screen}")


def test_run_and_attach_in_tmux_show_panes_and_results_and_q_detaches(make_workspace):
    ws = bigram_workspace(make_workspace, "tmux", hold=0.0, baseline_seeds=1)
    ratchet = f"{shlex.quote(sys.executable)} -m ratchet.cli.main"
    command = (f"cd {shlex.quote(str(ws.root))} && {ratchet} run --tag tmux; "
               f"echo RUN-EXIT=$?; read _; {ratchet} attach; echo ATTACH-EXIT=$?; sleep 120")
    server = f"ratchet-test-{os.getpid()}"
    folder, pid = None, 0
    try:
        subprocess.run(["tmux", "-L", server, "new-session", "-d", "-s", "dash", "-x", "120",
                        "-y", "40", command], check=True, timeout=30,
                       env={**os.environ, "TERM": "xterm-256color"})
        # `ratchet run` spawns the engine and opens the dashboard on it
        wait_screen(server, lambda s: "5 Experiments" in s and "1 Agent" in s)
        deadline = time.monotonic() + 120
        while not paths.sessions(ws.runs_dir()):  # the dashboard may draw before the first event
            assert time.monotonic() < deadline, "the engine wrote no event log"
            time.sleep(0.1)
        folder = paths.sessions(ws.runs_dir())[-1]
        pid = paths.engine_pid(folder)
        while not any(e["type"] == "exp_end" for e in log_of(folder)):
            assert time.monotonic() < deadline and paths.pid_alive(pid)
            time.sleep(0.3)
        # a second dashboard on the same engine, at 80x24, while the first stays open
        val = next(e for e in log_of(folder) if e["type"] == "exp_end")["val_bpb"]
        tmux(server, "new-session", "-d", "-s", "second", "-x", "80", "-y", "24",
             f"cd {shlex.quote(str(ws.root))} && {ratchet} attach; echo SECOND-EXIT=$?; sleep 60")
        wait_screen(server, lambda s: "5 Experiments" in s, target="second")
        tmux(server, "send-keys", "-t", "second", "5")
        wait_screen(server, lambda s: f"{val:.4f}" in s, target="second")
        tmux(server, "send-keys", "-t", "second", "q")
        screen = wait_screen(server, lambda s: "SECOND-EXIT=0" in s, timeout=30, target="second")
        assert "the engine keeps running" in screen
        tmux(server, "send-keys", "-t", "dash", "q")
        screen = wait_screen(server, lambda s: "RUN-EXIT=" in s, timeout=30)
        assert "RUN-EXIT=0" in screen
        assert f"the engine keeps running (session {folder.name})" in screen
        # then `ratchet attach` opens it again, and the baseline's result is on screen
        tmux(server, "send-keys", "-t", "dash", "Enter")
        # (waiting for the whole screen: a capture may land between two frames of the redraw)
        titles = ("1 Agent", "2 Diff", "3 CPU", "4 Loss", "5 Experiments")
        row = re.compile(rf"\b1\s+\w{{7}}\s+{val:.4f}\s+baseline")
        wait_screen(server, lambda s: "RUN-EXIT" not in s and all(t in s for t in titles)
                    and row.search(s) is not None)
        tmux(server, "send-keys", "-t", "dash", "q")
        screen = wait_screen(server, lambda s: "ATTACH-EXIT=" in s, timeout=30)
        assert "RUN-EXIT=0" in screen and "ATTACH-EXIT=0" in screen
        assert screen.count(f"the engine keeps running (session {folder.name})") == 2
        assert paths.pid_alive(pid)
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=30)
        if folder is not None:
            end_engine(folder, pid)
    assert log_of(folder)[-1]["type"] == "session_end"
