"""Run untrusted training and the frozen evaluation in a bubblewrap sandbox where available.

The sandbox gives the child a read-only view of the system, no network, a private /tmp, its own
PID namespace (it dies with its parent), and hides every prepared corpus except the paths it is
explicitly given. Where bwrap is missing or cannot create namespaces, the child runs as a plain
process and Ratchet warns once: the metric stays honest (evaluation runs in its own process),
but train.py could then read validation files.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Passed through to children; everything else (API keys included) stays in the engine.
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_VISIBLE_DEVICES",
             "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
             "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
             "VIRTUAL_ENV")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@functools.lru_cache(maxsize=1)
def bwrap_path() -> str | None:
    """bwrap, if it is installed and can actually build a sandbox on this machine."""
    if os.environ.get("RATCHET_NO_SANDBOX") == "1":
        return None
    path = shutil.which("bwrap")
    if not path:
        return None
    probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
             "--unshare-pid", "--die-with-parent", "true"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return path if ok else None


def unavailable_reason() -> str:
    if os.environ.get("RATCHET_NO_SANDBOX") == "1":
        return "RATCHET_NO_SANDBOX=1 is set"
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed; install it with `apt-get install bubblewrap`"
    return "bwrap cannot create namespaces on this machine"


def python_paths() -> list[Path]:
    """The interpreter's folders: they must stay visible even when they live under /tmp."""
    found = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found.add(Path(sys.executable).resolve().parent)
    return sorted(p for p in found if p.exists())


def wrap(command: list[str], *, cwd: Path, readable: list[Path], writable: list[Path],
         hidden: list[Path]) -> tuple[list[str], bool]:
    """The command, wrapped in a sandbox if possible; returns (argv, sandboxed).

    `hidden` folders are replaced by empty ones, then `readable` paths are shown read-only and
    `writable` ones read-write, in that order, so a readable path inside a hidden folder shows.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        return command, False
    argv = [bwrap, "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp"]
    for path in hidden:
        if path.exists():
            argv += ["--tmpfs", str(path)]
    for path in python_paths() + readable:
        argv += ["--ro-bind", str(path), str(path)]
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
             "--new-session", "--chdir", str(cwd), "--"]
    return argv + command, True
