"""A scripted Messages API on 127.0.0.1 for the real `anthropic` client.

Each POST /v1/messages takes the next scripted reply (or a function of the request's body that
returns one, for replies that quote the request): a streamed message (SSE, chunked, with
thinking, text and tool_use blocks and usage), an HTTP error with the API's JSON error body, or a
stream cut mid-way (part of the SSE, then the socket closed abruptly). Every request's body and
headers are recorded for the tests to inspect.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 0,
         "cache_creation_input_tokens": 900}


@dataclass
class Reply:
    """One scripted answer. blocks: ("thinking", text, signature) | ("text", text) |
    ("tool_use", name, input dict). status != 200 sends an error; cut_after > 0 cuts the stream
    after that many SSE events (or, with error_type, sends an SSE error event there)."""

    blocks: list[tuple] = field(default_factory=list)
    stop_reason: str = "tool_use"
    usage: dict = field(default_factory=lambda: dict(USAGE))
    status: int = 200
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int = 0


def stream(*blocks: tuple, stop_reason: str = "tool_use", **usage: int) -> Reply:
    return Reply(list(blocks), stop_reason, {**USAGE, **usage})


def error(status: int, error_type: str, message: str, **headers: str) -> Reply:
    return Reply(status=status, error_type=error_type, message=message,
                 headers={k.replace("_", "-"): v for k, v in headers.items()})


def cut(*blocks: tuple, after: int) -> Reply:
    return Reply(list(blocks), cut_after=after)


def error_midway(*blocks: tuple, after: int, error_type: str = "overloaded_error") -> Reply:
    """A 200 stream that, after `after` events, sends an SSE `error` event and ends."""
    return Reply(list(blocks), cut_after=after, error_type=error_type, message="Overloaded")


def sse_events(reply: Reply, number: int) -> list[tuple[str, dict]]:
    """The SSE events of a streamed message, in the order the API sends them."""
    start_usage = {k: v for k, v in reply.usage.items() if k != "output_tokens"}
    start_usage["output_tokens"] = 1
    out = [("message_start", {"type": "message_start", "message": {
        "id": f"msg_{number:04d}", "type": "message", "role": "assistant", "model": "fake-model",
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
    for index, block in enumerate(reply.blocks):
        kind = block[0]
        if kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": part} for part in _split(block[1])]
            deltas.append({"type": "signature_delta", "signature": block[2]})
        elif kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": part} for part in _split(block[1])]
        else:
            start = {"type": "tool_use", "id": f"toolu_{number:02d}_{index:02d}",
                     "name": block[1], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": part}
                      for part in _split(json.dumps(block[2]))]
        out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                            "content_block": start}))
        out += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                         "delta": d}) for d in deltas]
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": reply.stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": reply.usage["output_tokens"]}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


def _split(text: str, size: int = 24) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class FakeMessagesAPI:
    """Start with `with FakeMessagesAPI([...replies]) as api:`; api.url is the base URL."""

    def __init__(self, replies: list[Reply] | None = None):
        self.replies = list(replies or [])
        self.requests: list[dict] = []  # {"body": parsed JSON, "headers": {lowercase: value}}
        self.sent_usage: list[dict] = []  # usage of each streamed response, as far as it was sent
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> FakeMessagesAPI:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _next(self, body: dict, headers: dict) -> tuple[int, Reply | None]:
        with self._lock:
            self.requests.append({"body": body, "headers": headers})
            number = len(self.requests)
            reply = self.replies.pop(0) if self.replies else None
        return number, reply(body) if callable(reply) else reply

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802 (Claude Code checks that the host answers)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path.split("?")[0] != "/v1/messages":
                    return self._error(404, "not_found_error", f"no route {self.path}", {})
                number, reply = api._next(body, headers)
                if reply is None:
                    return self._error(400, "invalid_request_error",
                                       "the fake server's script is exhausted", {})
                if reply.status != 200:
                    return self._error(reply.status, reply.error_type, reply.message,
                                       reply.headers)
                self._stream(reply, number)

            def _error(self, status: int, kind: str, message: str, headers: dict) -> None:
                data = json.dumps({"type": "error", "error": {"type": kind,
                                                               "message": message}}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply, number: int) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i, (name, data) in enumerate(sse_events(reply, number)):
                    if reply.cut_after and i >= reply.cut_after and reply.error_type:
                        error = {"type": "error", "error": {"type": reply.error_type,
                                                            "message": reply.message}}
                        self._chunk(f"event: error\ndata: {json.dumps(error)}\n\n")
                        break
                    if reply.cut_after and i >= reply.cut_after:
                        # half an event, then the socket goes away without a closing chunk
                        self._chunk(f"event: {name}\ndata: {json.dumps(data)[:10]}")
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.connection.close()
                        self.close_connection = True
                        return
                    self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n")
                    if name == "message_start":
                        api.sent_usage.append(dict(data["message"]["usage"]))
                    elif name == "message_delta":
                        api.sent_usage[-1].update(data["usage"])
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
