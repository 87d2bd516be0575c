"""The real Claude Code CLI for the tests: `@anthropic-ai/claude-code` from the npm registry,
installed once into a cache folder and reused (a file lock keeps two test workers from
installing it at once). Without npm the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

VERSION = "2.1.197"  # the release these tests were written against
PACKAGE = f"@anthropic-ai/claude-code@{VERSION}"


def cache_dir() -> Path:
    base = os.environ.get("RATCHET_TEST_NPM_CACHE") or Path.home() / ".cache" / "ratchet-test"
    return Path(base) / f"claude-code-{VERSION}"


def installed() -> Path:
    """The `claude` executable; installs it first where it is not in the cache yet."""
    folder = cache_dir()
    binary = folder / "node_modules" / ".bin" / "claude"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the Claude Code CLI (an npm package) cannot be "
                    "installed here")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix",
                                   str(folder), PACKAGE], capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0 and binary.exists(), \
                f"npm install {PACKAGE} failed: {done.stderr[-2000:]}"
    return binary
