"""The control socket: dashboards and `ratchet` commands steer a running engine through it.

A Unix stream socket, readable by its owner only. Each request is one JSON line such as
`{"cmd": "steer", "text": "try a bigger model"}` and gets one JSON line back; a connection may
send several. The server checks every request before the engine's handler sees it, so the
handler only ever gets well-formed commands.

Idle connections cannot starve a command: one that sends no complete request line for
IDLE_SECONDS is closed, and when all MAX_CONNECTIONS are taken, the one idle longest is closed
to make room for the newcomer (only when every one is in the middle of a request is the
newcomer turned away).

Socket addresses hold about 100 bytes; a longer path (a deep workspace) is bound and reached
through /proc/self/fd on Linux, and is a ControlError elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

COMMANDS = ("pause", "resume", "steer", "kill", "stop", "ping")
MAX_REQUEST_BYTES = 64 * 1024  # one request line, newline excluded
MAX_PATH_BYTES = 100  # sun_path holds 108 bytes on Linux, 104 on macOS, the NUL included
PROC_FD = "/proc/self/fd"  # where long socket paths are shortened, on Linux
PROBE_TIMEOUT = 1.0  # seconds to wait for a live engine on an existing socket file
MAX_CONNECTIONS = 32  # served at once (a thread each); one more takes the longest idle one's
IDLE_SECONDS = 5.0  # a connection without a complete request line for this long is closed


class ControlError(Exception):
    """A control request could not be made; the message is one line, fit for the user."""


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for bind/connect that fits in sun_path.

    A longer path is reached through its folder's /proc/self/fd entry (Linux), which keeps the
    address short without os.chdir (process-wide, so not thread-safe). Elsewhere it is an error.
    """
    if len(os.fsencode(path)) <= MAX_PATH_BYTES:
        yield str(path)
        return
    if os.path.isdir(PROC_FD):
        try:
            fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            fd = -1  # nothing can listen in a folder that does not exist
        try:
            address = f"{PROC_FD}/{fd}/{path.name}"
            if len(os.fsencode(address)) <= MAX_PATH_BYTES:
                yield address
                return
        finally:
            if fd >= 0:
                os.close(fd)
    raise ControlError(
        f"control socket path is too long for a Unix socket ({len(os.fsencode(path))} bytes, "
        f"at most {MAX_PATH_BYTES} here): {path}"
    )


def _error(message: str) -> dict:
    return {"ok": False, "error": message}


def validate(request: Any) -> str | None:
    """Why a parsed request is not a valid command, or None when it is."""
    if not isinstance(request, dict):
        return "a request must be a JSON object"
    cmd = request.get("cmd")
    if not isinstance(cmd, str):
        return 'a request needs "cmd", a string'
    if cmd not in COMMANDS:
        return f"unknown command {cmd!r}; expected one of {', '.join(COMMANDS)}"
    if cmd == "steer":
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            return 'steer needs "text", a non-empty string'
    return None


class _Conn:
    """A served connection: since when it has waited for a request (monotonic), whether it is
    answering one now, and whether the server dropped it to make room."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = time.monotonic()
        self.busy = False
        self.dropped = False


def _reply_line(reply: dict) -> bytes:
    try:
        text = json.dumps(reply, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        text = json.dumps(_error(f"the engine's reply could not be encoded: {exc}"))
    return text.encode("ascii") + b"\n"


class ControlServer:
    """Serves the control socket in a daemon thread, a thread per connection, at most
    MAX_CONNECTIONS of them.

    `handler(request) -> reply` runs for valid requests only, one at a time (calls are
    serialised, so it need not be thread-safe); a reply without "ok" gets "ok": true, and an
    exception becomes {"ok": false, "error": str(exc)}.
    """

    def __init__(self, path: Path, handler: Callable[[dict], dict]) -> None:
        self.path = Path(path)
        self.handler = handler
        self._handler_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._conns: set[_Conn] = set()
        self._conns_lock = threading.Lock()
        self._closing = False
        self._inode: tuple[int, int] | None = None

    def start(self) -> None:
        if self._sock is not None:
            raise ControlError(f"already listening on {self.path}")
        self._closing = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _address(self.path):
            pass  # a path that cannot be a socket address fails here, before anything is touched
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            with _address(self.path) as address:
                sock.bind(address)
            bound = True
            os.chmod(self.path, 0o600)  # commands can kill experiments: owner only
            self._inode = _inode(self.path)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            if bound:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            raise ControlError(f"cannot listen on {self.path}: {exc.strerror or exc}") from exc
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="ratchet-control", daemon=True)
        self._thread.start()

    def _remove_stale(self) -> None:
        """Remove a socket file left by a dead engine; refuse to take over a live one."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket")
        if _answers(self.path):
            raise ControlError(f"another engine is listening on {self.path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _serve(self) -> None:
        assert self._sock is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in sel.select():
                    if key.fileobj != self._sock or self._closing:
                        return
                    try:
                        conn, _ = self._sock.accept()
                    except OSError:
                        time.sleep(0.05)  # out of file descriptors, say: do not spin
                        continue
                    entry = self._admit(conn)
                    if entry is None:
                        _turn_away(conn)
                        continue
                    threading.Thread(
                        target=self._serve_conn,
                        args=(entry,),
                        name="ratchet-control-conn",
                        daemon=True,
                    ).start()

    def _admit(self, conn: socket.socket) -> _Conn | None:
        """Take a new connection; when all slots are taken, the one idle longest is dropped
        for it (None: every one is answering a request)."""
        with self._conns_lock:
            if len(self._conns) >= MAX_CONNECTIONS:
                idle = [c for c in self._conns if not c.busy]
                if not idle:
                    return None
                oldest = min(idle, key=lambda c: c.idle_since)
                oldest.dropped = True
                self._conns.discard(oldest)
                _hang_up(oldest.sock, "closed to make room for another control connection")
            entry = _Conn(conn)
            self._conns.add(entry)
            return entry

    def _serve_conn(self, entry: _Conn) -> None:
        conn, pending = entry.sock, b""
        try:
            with conn:
                while not self._closing:
                    end = pending.find(b"\n")
                    if end < 0 and len(pending) <= MAX_REQUEST_BYTES:
                        left = entry.idle_since + IDLE_SECONDS - time.monotonic()
                        if left <= 0:
                            _hang_up(conn, f"closed after {IDLE_SECONDS:g} s idle without a "
                                           f"complete request")
                            return
                        conn.settimeout(left)
                        try:
                            chunk = conn.recv(1 << 16)
                        except TimeoutError:
                            continue  # the deadline check above hangs up
                        if not chunk:
                            return
                        pending += chunk
                        continue
                    if end < 0 or end > MAX_REQUEST_BYTES:
                        # The rest of the line cannot be trusted to resync on: answer and hang up.
                        conn.settimeout(IDLE_SECONDS)
                        conn.sendall(
                            _reply_line(_error(f"request longer than {MAX_REQUEST_BYTES} bytes"))
                        )
                        return
                    line, pending = pending[: end + 1], pending[end + 1:]
                    if not line.strip():
                        continue
                    with self._conns_lock:  # dropped meanwhile: the request is not served
                        if entry.dropped:
                            return
                        entry.busy = True
                    conn.settimeout(IDLE_SECONDS)  # a client that does not read its reply
                    conn.sendall(_reply_line(self._answer(line)))
                    with self._conns_lock:
                        entry.busy, entry.idle_since = False, time.monotonic()
        except OSError:
            pass  # the client went away, or close() shut the connection
        finally:
            with self._conns_lock:
                self._conns.discard(entry)

    def _answer(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return _error(f"invalid JSON: {exc}")
        problem = validate(request)
        if problem:
            return _error(problem)
        try:
            with self._handler_lock:
                reply = self.handler(request)
        except Exception as exc:  # noqa: BLE001 - the engine's error goes back to the client
            return _error(str(exc) or type(exc).__name__)
        if not isinstance(reply, dict):
            return _error(f"the engine's handler returned {type(reply).__name__}, not a dict")
        return {"ok": True, **reply}

    def close(self) -> None:
        """Stop serving, hang up on clients, remove the socket file. Safe to call twice."""
        if self._sock is None:
            return
        self._closing = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._conns_lock:
            conns = [c.sock for c in self._conns]
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._sock = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        # Unlink only our own socket file: a later engine may have replaced it with its own.
        with contextlib.suppress(OSError):
            if _inode(self.path) == self._inode:
                os.unlink(self.path)

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _turn_away(conn: socket.socket) -> None:
    """Close a connection over the cap, with one line saying why (if it fits in at once)."""
    with conn, contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(_reply_line(_error(f"too many control connections (at most "
                                     f"{MAX_CONNECTIONS}); try again later")))


def _hang_up(conn: socket.socket, why: str) -> None:
    """Say why in one line (if it fits in at once) and shut the connection: its thread sees
    the end and closes it."""
    with contextlib.suppress(OSError):
        conn.send(_reply_line(_error(why)), socket.MSG_DONTWAIT)
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _inode(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the socket at path."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        with _address(path) as address:
            probe.connect(address)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def send(path: Path, cmd: str, timeout: float = 5.0, **args: Any) -> dict:
    """Send one command to the engine listening on path and return its reply.

    A reply with "ok": false is returned, not raised; ControlError means no reply was had.
    """
    path = Path(path)
    request = json.dumps({"cmd": cmd, **args}, separators=(",", ":")).encode() + b"\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with sock:
            try:
                with _address(path) as address:
                    sock.connect(address)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise ControlError(f"no engine is listening on {path}") from exc
            sock.sendall(request)
            with sock.makefile("rb") as reader:
                line = reader.readline(MAX_REQUEST_BYTES * 16)
    except TimeoutError as exc:
        raise ControlError(f"no reply from the engine on {path} within {timeout:g} s") from exc
    except OSError as exc:
        raise ControlError(f"cannot talk to the engine on {path}: {exc.strerror or exc}") from exc
    if not line.endswith(b"\n"):
        raise ControlError(f"the engine on {path} hung up without a complete reply")
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"bad reply from the engine on {path}: {exc}") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"bad reply from the engine on {path}: not a JSON object")
    return reply
