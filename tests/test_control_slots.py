"""Idle control connections cannot starve the engine's control: they time out, and a command
always finds a connection (the one idle longest makes room for it)."""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from fault_checks import (
    keeping_workspace,
    log_of,
    ratchet,
    session_folder,
    start,
    wait_for,
)

from ratchet.engine.protocol import control, paths
from ratchet.engine.protocol.control import ControlServer, send

IDLE = 40  # more than control.MAX_CONNECTIONS


@pytest.fixture
def sock_dir():
    # pytest's tmp_path can be too long for a Unix socket; /tmp is not.
    with tempfile.TemporaryDirectory(prefix="rc-", dir="/tmp") as d:
        yield Path(d)


@contextlib.contextmanager
def idle_clients(path: Path, n: int = IDLE):
    """`n` connections that send nothing, held open (from this side) while the block runs."""
    clients = []
    try:
        for _ in range(n):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            with control._address(path) as address:  # a session's path may be a long one
                client.connect(address)  # blocking: waits while the backlog is full
            client.settimeout(5)
        time.sleep(0.2)  # the server has taken them all
        yield clients
    finally:
        for client in clients:
            client.close()


def test_commands_are_served_while_idle_connections_fill_every_slot(sock_dir):
    calls = []
    srv = ControlServer(sock_dir / "control.sock", lambda r: calls.append(r) or {})
    with srv, idle_clients(srv.path):
        for cmd, extra in (("pause", {}), ("resume", {}), ("steer", {"text": "wider"}),
                           ("stop", {})):
            assert send(srv.path, cmd, **extra) == {"ok": True}, cmd
        serving = [t for t in threading.enumerate() if t.name == "ratchet-control-conn"]
        assert len(serving) <= control.MAX_CONNECTIONS + 1
    assert [c["cmd"] for c in calls] == ["pause", "resume", "steer", "stop"]


def test_an_idle_connection_times_out_and_a_busy_one_does_not(sock_dir, monkeypatch):
    monkeypatch.setattr(control, "IDLE_SECONDS", 0.5)
    srv = ControlServer(sock_dir / "control.sock", lambda r: {})
    with srv, idle_clients(srv.path, 2) as (silent, halfway), \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as talker:
        halfway.sendall(b'{"cmd": "pa')  # a request that never ends
        talker.connect(str(srv.path))
        talker.settimeout(5)
        reader = talker.makefile("rb")
        for _ in range(5):  # a request every 0.25 s keeps it open past the timeout
            talker.sendall(b'{"cmd": "ping"}\n')
            assert json.loads(reader.readline()) == {"ok": True}
            time.sleep(0.25)
        for client in (silent, halfway):
            said = client.makefile("rb").read()  # closed by the server
            assert said == b"" or "idle" in json.loads(said)["error"], said
        talker.sendall(b'{"cmd": "ping"}\n')
        assert json.loads(reader.readline()) == {"ok": True}
        reader.close()


def test_ratchet_ctl_and_stop_work_while_40_connections_sit_idle(tmp_path, template_workspace):
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    run = start("--tag", "busy", cwd=ws.root)
    try:
        folder = session_folder(ws)
        assert wait_for(folder, "exp_start")
        sock = folder / paths.SOCKET
        for args in (["ctl", "pause"], ["ctl", "resume"], ["ctl", "steer", "try", "wider"],
                     ["stop"]):
            with idle_clients(sock):
                done = ratchet(*args, cwd=ws.root, timeout=120)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    log = log_of(folder)
    assert [e["cmd"] for e in log if e["type"] == "control"] == ["pause", "resume", "steer",
                                                                  "stop"]
    assert [e for e in log if e["type"] == "session_end"][-1]["reason"] == "stopped"
    assert not paths.is_running(folder)
