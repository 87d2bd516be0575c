"""A Hugging Face hub on 127.0.0.1 for tests: it answers the calls huggingface_hub's
`hf_hub_download` makes for a dataset file (HEAD, then GET with Range) the way the hub does,
so the real download code runs against it.

Files are held in memory per repository. Large files on the hub are LFS files: their ETag
(`X-Linked-Etag`) is the sha256 of their bytes, which is how the client names the cached blob.
`corrupt(repo, path)` makes the server send other bytes of the same length under the same
hash, as a damaged transfer or mirror would; `cut(repo, path)` makes it drop the connection
half-way through the file's next download, as a flaky network does.
"""

from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.corrupted: set[tuple[str, str]] = set()
        self.cuts: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                found = hub._lookup(unquote(self.path.split("?")[0]))
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                key, data = found
                sha = hashlib.sha256(data).hexdigest()
                if key in hub.corrupted:
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                ranged = self.headers.get("Range")
                if body and ranged and ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0] or 0)
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if body and key in hub.cuts:
                    hub.cuts.discard(key)
                    self.wfile.write(data[start : start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if body:
                    self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _lookup(self, path: str) -> tuple[tuple[str, str], bytes] | None:
        # /datasets/<owner>/<name>/resolve/<revision>/<file path>
        parts = path.strip("/").split("/")
        if len(parts) < 6 or parts[0] != "datasets" or parts[3] != "resolve":
            return None
        key = (f"{parts[1]}/{parts[2]}", "/".join(parts[5:]))
        return (key, self.files[key]) if key in self.files else None

    def add(self, repo: str, path: str, data: bytes) -> None:
        self.files[(repo, path)] = data

    def corrupt(self, repo: str, path: str) -> None:
        self.corrupted.add((repo, path))

    def cut(self, repo: str, path: str) -> None:
        self.cuts.add((repo, path))

    def downloads(self) -> list[str]:
        """The files fetched (GET of a resolve URL; the client also asks /api/ for its own ends)."""
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parquet_bytes(texts: list[str], column: str = "text") -> bytes:
    """A parquet shard holding `texts` in `column`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({column: texts}), buffer, row_group_size=max(1, len(texts) // 3))
    return buffer.getvalue()


def stories(seed: int, count: int) -> list[str]:
    """Short, varied English stories: text a tiny BPE vocabulary and model can learn."""
    import random

    rng = random.Random(seed)
    names = ["Lily", "Tom", "Mia", "Ben", "Sue", "Max", "Anna", "Sam"]
    things = ["ball", "cat", "kite", "tree", "boat", "cake", "dog", "hat", "box", "bird"]
    feelings = ["happy", "sad", "scared", "proud", "sleepy", "angry", "kind"]
    out = []
    for _ in range(count):
        name, thing = rng.choice(names), rng.choice(things)
        lines = [f"Once upon a time, there was a little girl named {name}."]
        for _ in range(rng.randint(3, 7)):
            lines.append(f"{name} saw a {rng.choice(feelings)} {rng.choice(things)} near the "
                         f"{thing}, and {name} felt {rng.choice(feelings)}.")
        lines.append(f"In the end, {name} and the {thing} were {rng.choice(feelings)}.")
        out.append(" ".join(lines))
    return out
