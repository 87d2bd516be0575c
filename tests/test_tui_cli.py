"""`ratchet attach`: its errors, and `--web` serving the dashboard on 127.0.0.1 only."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from dashboard_helpers import RECORDED
from test_loop import ratchet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_attach_errors_are_one_line(make_workspace):
    ws = make_workspace("attach-errors")
    for args, message in ((["attach"], "no running session in this workspace"),
                          (["attach", "nope"], "no session 'nope'"),
                          (["attach", "--port", "0"], "ports are 1 to 65535"),
                          (["attach", "--allow-control"], "no running session")):
        done = ratchet(*args, cwd=ws.root, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr
        last = done.stderr.strip().splitlines()[-1]  # argparse prints its usage above
        assert last.startswith(("ratchet: error:", "ratchet attach: error:"))


def test_attach_web_serves_on_localhost_only(make_workspace):
    ws = make_workspace("web")
    session = ws.runs_dir() / "20261125-120000-demo-0001"
    session.mkdir(parents=True)
    shutil.copy(RECORDED, session / "events.jsonl")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ratchet.cli.main", "attach", session.name,
                             "--web", "--port", str(port)], cwd=ws.root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert b"textual" in page.lower()
        # nothing listens on the machine's other addresses
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((other, port)) != 0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port} (without control)" in out
    assert "ssh -L" in out


def test_attach_to_a_finished_session_points_to_replay(make_workspace):
    ws = make_workspace("attach-finished")
    names = [f"2026112{i}-120000-demo-000{i}" for i in range(1, 6)]
    for name in names:
        (ws.runs_dir() / name).mkdir(parents=True)
        shutil.copy(RECORDED, ws.runs_dir() / name / "events.jsonl")
    done = ratchet("attach", cwd=ws.root, timeout=60)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("ratchet: error: no running session in this workspace")
    assert "ratchet replay" in line
    assert all(name in line for name in names[-3:])  # the newest few, newest first
    assert line.index(names[-1]) < line.index(names[-2]) and names[0] not in line
