"""The control socket: round trips, request checks, several clients, stale and live sockets."""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ratchet.engine.protocol import control
from ratchet.engine.protocol.control import COMMANDS, ControlError, ControlServer, send


@pytest.fixture
def sock_dir():
    # pytest's tmp_path can be too long for a Unix socket; /tmp is not.
    with tempfile.TemporaryDirectory(prefix="rc-", dir="/tmp") as d:
        yield Path(d)


class Recorder:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.calls.append(request)
        if request["cmd"] == "ping":
            return {"paused": False}
        return {"cmd": request["cmd"]}


@pytest.fixture
def server(sock_dir):
    handler = Recorder()
    srv = ControlServer(sock_dir / "control.sock", handler)
    srv.start()
    srv.calls = handler.calls
    yield srv
    srv.close()


def raw(path, *payloads, read=True):
    """Send raw bytes on one connection; return the reply lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        replies = []
        with s.makefile("rb") as reader:
            for payload in payloads:
                s.sendall(payload)
                if read:
                    replies.append(json.loads(reader.readline()))
        return replies


def test_socket_is_owner_only(server):
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c != "steer"])
def test_round_trip(server, cmd):
    reply = send(server.path, cmd)
    expected = {"ok": True, "paused": False} if cmd == "ping" else {"ok": True, "cmd": cmd}
    assert reply == expected
    assert server.calls == [{"cmd": cmd}]


def test_steer_round_trip(server):
    assert send(server.path, "steer", text="try a bigger model") == {"ok": True, "cmd": "steer"}
    assert server.calls == [{"cmd": "steer", "text": "try a bigger model"}]


@pytest.mark.parametrize(
    "payload, error",
    [
        (b"not json\n", "invalid JSON"),
        (b"[1]\n", "JSON object"),
        (b'{"text":"x"}\n', '"cmd"'),
        (b'{"cmd":3}\n', '"cmd"'),
        (b'{"cmd":"reboot"}\n', "unknown command 'reboot'"),
        (b'{"cmd":"steer"}\n', "steer needs"),
        (b'{"cmd":"steer","text":"  "}\n', "steer needs"),
        (b'{"cmd":"steer","text":5}\n', "steer needs"),
    ],
)
def test_invalid_requests_never_reach_the_handler(server, payload, error):
    # The second request on the same connection shows it survived the bad one.
    bad, good = raw(server.path, payload, b'{"cmd":"pause"}\n')
    assert bad["ok"] is False and error in bad["error"]
    assert good == {"ok": True, "cmd": "pause"}
    assert server.calls == [{"cmd": "pause"}]


def test_unknown_command_through_send(server):
    reply = send(server.path, "reboot")
    assert reply["ok"] is False and "unknown command" in reply["error"]
    assert server.calls == []


def test_over_long_request_is_refused(server):
    text = "x" * (control.MAX_REQUEST_BYTES + 10)
    line = json.dumps({"cmd": "steer", "text": text}).encode() + b"\n"
    (reply,) = raw(server.path, line)
    assert reply["ok"] is False and "longer than" in reply["error"]
    assert server.calls == []
    # Just under the limit is fine.
    text = "x" * (control.MAX_REQUEST_BYTES - 40)
    assert send(server.path, "steer", text=text)["ok"] is True


def test_handler_errors_and_bad_replies_become_error_replies(sock_dir):
    def handler(request):
        if request["cmd"] == "kill":
            raise RuntimeError("no experiment is running")
        if request["cmd"] == "stop":
            return "stopping"
        return {"ok": False, "error": "already paused"}

    with ControlServer(sock_dir / "c.sock", handler) as srv:
        assert send(srv.path, "kill") == {"ok": False, "error": "no experiment is running"}
        assert send(srv.path, "stop")["ok"] is False
        assert send(srv.path, "pause") == {"ok": False, "error": "already paused"}


def test_two_clients_at_once(sock_dir):
    entered = threading.Barrier(2, timeout=5)

    def handler(request):
        return {"n": request["n"]}

    with ControlServer(sock_dir / "c.sock", handler) as srv:
        # An idle open connection must not block other clients.
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(str(srv.path))
        replies = {}

        def client(n):
            entered.wait()
            replies[n] = send(srv.path, "ping", n=n)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        idle.close()
    assert replies == {0: {"ok": True, "n": 0}, 1: {"ok": True, "n": 1}}


def test_interleaved_connections(server):
    a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b, a.makefile("rb") as ra, b.makefile("rb") as rb:
        for s in (a, b):
            s.settimeout(5)
            s.connect(str(server.path))
        a.sendall(b'{"cmd":"pa')  # half a request: b must not wait for it
        b.sendall(b'{"cmd":"resume"}\n')
        assert json.loads(rb.readline()) == {"ok": True, "cmd": "resume"}
        a.sendall(b'use"}\n{"cmd":"ping"}\n')
        assert json.loads(ra.readline()) == {"ok": True, "cmd": "pause"}
        assert json.loads(ra.readline()) == {"ok": True, "paused": False}
    assert [c["cmd"] for c in server.calls] == ["resume", "pause", "ping"]


def test_stale_socket_file_is_replaced(sock_dir):
    path = sock_dir / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, as after a killed engine
    assert path.exists()
    with ControlServer(path, lambda r: {}) as srv:
        assert send(srv.path, "ping") == {"ok": True}
    assert not path.exists()


def test_live_engine_is_detected(server):
    with pytest.raises(ControlError, match="another engine is listening on"):
        ControlServer(server.path, lambda r: {}).start()
    assert send(server.path, "ping")["ok"] is True  # the first engine is untouched


def test_a_file_that_is_not_a_socket_is_left_alone(sock_dir):
    path = sock_dir / "c.sock"
    path.write_text("mine")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(path, lambda r: {}).start()
    assert path.read_text() == "mine"


def test_send_to_a_missing_socket(sock_dir):
    path = sock_dir / "nothing.sock"
    with pytest.raises(ControlError) as info:
        send(path, "ping")
    assert str(info.value) == f"no engine is listening on {path}"
    assert "\n" not in str(info.value)


def test_send_to_a_dead_socket(sock_dir):
    path = sock_dir / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    with pytest.raises(ControlError, match="no engine is listening"):
        send(path, "ping")


def test_send_times_out_on_a_silent_listener(sock_dir):
    path = sock_dir / "c.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(path))
        mute.listen(1)
        started = time.monotonic()
        with pytest.raises(ControlError, match="no reply"):
            send(path, "ping", timeout=0.2)
        assert time.monotonic() - started < 2


def test_send_rejects_a_bad_reply(sock_dir):
    path = sock_dir / "c.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as liar:
        liar.bind(str(path))
        liar.listen(1)

        def answer():
            conn, _ = liar.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"hello\n")

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(ControlError, match="bad reply"):
            send(path, "ping")
        t.join(5)


def deep(sock_dir, name="control.sock"):
    folder = sock_dir / ("d" * 60) / ("e" * 60)
    folder.mkdir(parents=True)
    return folder / name


@pytest.mark.skipif(not os.path.isdir(control.PROC_FD), reason="needs /proc/self/fd (Linux)")
def test_long_paths_work_through_proc(sock_dir):
    path = deep(sock_dir)
    assert len(str(path)) > control.MAX_PATH_BYTES
    with ControlServer(path, lambda r: {"deep": True}):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert send(path, "ping") == {"ok": True, "deep": True}
        with pytest.raises(ControlError, match="another engine"):
            ControlServer(path, lambda r: {}).start()
    assert not path.exists()
    with pytest.raises(ControlError, match="no engine is listening"):
        send(path, "ping")
    with pytest.raises(ControlError, match="no engine is listening"):
        send(sock_dir / ("m" * 120) / "control.sock", "ping")


def test_long_paths_are_rejected_without_proc(sock_dir, monkeypatch):
    monkeypatch.setattr(control, "PROC_FD", str(sock_dir / "no-proc"))
    path = deep(sock_dir)
    with pytest.raises(ControlError, match="too long") as info:
        ControlServer(path, lambda r: {}).start()
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert list(path.parent.iterdir()) == []
    with pytest.raises(ControlError, match="too long"):
        send(path, "ping")


def test_a_long_socket_name_is_rejected(sock_dir):
    path = deep(sock_dir, "s" * 90)
    with pytest.raises(ControlError, match="too long"):
        ControlServer(path, lambda r: {}).start()
    with pytest.raises(ControlError, match="too long"):
        send(path, "ping")


def test_close_hangs_up_and_removes_the_socket(sock_dir):
    srv = ControlServer(sock_dir / "c.sock", lambda r: {})
    srv.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(str(srv.path))
    client.sendall(b'{"cmd":"ping"}\n')
    assert json.loads(client.recv(100)) == {"ok": True}  # accepted and being served
    srv.close()
    srv.close()
    assert not srv.path.exists()
    assert client.recv(10) == b""  # the open connection was shut, not left hanging
    client.close()
    assert srv._thread is not None and not srv._thread.is_alive()
    with pytest.raises(ControlError, match="no engine"):
        send(srv.path, "ping")


def test_a_closed_server_can_start_again(sock_dir):
    srv = ControlServer(sock_dir / "c.sock", lambda r: {"again": True})
    srv.start()
    with pytest.raises(ControlError, match="already listening"):
        srv.start()
    srv.close()
    srv.start()
    try:
        assert send(srv.path, "ping") == {"ok": True, "again": True}
    finally:
        srv.close()


def test_connections_are_capped(server):
    clients = []
    try:
        for _ in range(300):  # idle clients: once a thread each, nothing to stop them
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(server.path))  # blocking: waits while the backlog is full
            client.settimeout(5)
            clients.append(client)
        time.sleep(0.5)
        serving = [t for t in threading.enumerate() if t.name == "ratchet-control-conn"]
        assert len(serving) <= 33  # the cap, and one dropped a moment ago on its way out
        # the connections idle longest made room for the newer ones, with one line saying why
        reply = json.loads(clients[0].makefile("rb").read())
        assert reply == {"ok": False, "error": "closed to make room for another control "
                                               "connection"}
        clients[-1].sendall(b'{"cmd": "ping"}\n')
        assert json.loads(clients[-1].makefile("rb").readline()) == {"ok": True,
                                                                      "paused": False}
    finally:
        for client in clients:
            client.close()
    time.sleep(0.3)
    assert send(server.path, "ping")["ok"]  # room again once they went
