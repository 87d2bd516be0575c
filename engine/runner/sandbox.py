"""Run untrusted training and the frozen evaluation in a bubblewrap sandbox where available.

The sandbox gives the child a minimal read-only view of the system: the folders a Python/CUDA
process needs (/usr, /etc, /opt, the library folders, the interpreter's own folders) and the paths
it is explicitly given, nothing else of `/` (no home folders, no other checkouts, no corpus
cache). It has no network, a private /tmp and /dev/shm, and its own PID namespace (it dies with
its parent). Trainers also get every held-out stdlib package (the default corpus's validation
split) hidden in every copy of the standard library inside that view. Where bwrap is missing or
cannot create namespaces, the child runs as a plain process and Ratchet warns once: the metric
stays honest (evaluation runs in its own process), but train.py could then read validation files.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable
from pathlib import Path

from ratchet.model.corpus import HELD_OUT_PACKAGES

# What trainers pass as `held_out`: the default corpus's validation packages.
HELD_OUT = HELD_OUT_PACKAGES

# Passed through to children; everything else (API keys included) stays in the engine.
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_VISIBLE_DEVICES",
             "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
             "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
             "VIRTUAL_ENV")
# The system folders a training process may need, shown read-only where they exist.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys")


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
    """The interpreter's folders (and its site-packages): they must stay visible wherever they
    live, under /tmp or a home folder included; both as named and as their links resolve."""
    named = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable),
             sysconfig.get_paths()["stdlib"], *site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        named.append(site.getusersitepackages())
    found = {path for p in named for path in (Path(os.path.abspath(p)), Path(p).resolve())}
    found = {p for p in found if p.is_dir()}
    return sorted(p for p in found if not any(q in p.parents for q in found))


@functools.lru_cache(maxsize=1)
def stdlib_copies() -> tuple[Path, ...]:
    """Every copy of the standard library the sandbox shows (a folder holding os.py): the
    interpreter's, the system's, and those bundled with tools under /usr or /opt (a cloud SDK's
    private Python, say). Found by walking those trees once per process (a second or two)."""
    found = {Path(sysconfig.get_paths()["stdlib"]).resolve()}
    roots = [Path(name) for name in SYSTEM if name != "/sys" and os.path.isdir(name)
             and not os.path.islink(name)]
    for root in [*roots, *python_paths()]:
        for folder, dirs, files in os.walk(root):
            if "os.py" in files and "abc.py" in files:
                found.add(Path(folder))
                dirs[:] = [d for d in dirs if d in ("site-packages", "dist-packages")]
    return tuple(sorted(found))


def held_out_folders(names: Iterable[str]) -> list[Path]:
    """The folders of the named packages in every standard library copy the sandbox shows."""
    names = list(names)
    return [copy / name for copy in stdlib_copies() for name in names
            if (copy / name).is_dir() and not (copy / name).is_symlink()]


def _system_view() -> list[str]:
    argv = []
    real = [name for name in SYSTEM if os.path.isdir(name) and not os.path.islink(name)]
    for name in SYSTEM:
        if not os.path.isdir(name):
            continue
        target = os.path.realpath(name)
        if name not in real and any(target.startswith(r + "/") for r in real):
            argv += ["--symlink", os.readlink(name), name]  # merged /usr: /bin -> usr/bin
        else:  # a folder, or a link out of the view: its target shown under its name
            argv += ["--ro-bind", name, name]
    return argv


def wrap(command: list[str], *, cwd: Path, readable: list[Path], writable: list[Path],
         hidden: list[Path], held_out: Iterable[str] = (), devices: bool = True,
         ) -> tuple[list[str], bool]:
    """The command, wrapped in a sandbox if possible; returns (argv, sandboxed).

    The child sees the system folders and the interpreter's read-only. `held_out` packages are
    hidden in every standard library copy, `hidden` folders are replaced by empty ones,
    `readable` paths are shown read-only and `writable` ones read-write. Mounts go from the
    outermost path in, so the innermost rule wins: a readable path inside a hidden folder shows,
    and a hidden folder inside a readable one stays hidden. With `devices=False` the child gets
    a minimal /dev (null, zero, random, tty...) and no GPU: a run on the CPU clock could
    otherwise compute on a GPU for time its CPU clock never counts.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        return command, False
    dev = ["--dev-bind", "/dev", "/dev"] if devices else ["--dev", "/dev"]
    argv = [bwrap, *_system_view(), *dev, "--tmpfs", "/dev/shm", "--proc", "/proc",
            "--tmpfs", "/tmp"]
    mounts = [("--ro-bind", p) for p in python_paths()]
    mounts += [("--tmpfs", p) for p in [*held_out_folders(held_out), *hidden] if p.exists()]
    mounts += [("--ro-bind", p) for p in readable] + [("--bind", p) for p in writable]
    for option, path in sorted(mounts, key=lambda m: len(Path(m[1]).parts)):  # stable sort
        argv += [option, str(path)] if option == "--tmpfs" else [option, str(path), str(path)]
    argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
             "--new-session", "--chdir", str(cwd), "--"]
    return argv + command, True


# Run inside the sandbox by `probe`: every regular file outside /proc, /sys and /dev, Python
# sources first, then smallest first, searched by grep (in batches, a few at a time) for the
# samples until the deadline.
_PROBE = r"""
import json, os, stat, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
request = json.loads(sys.stdin.read())
samples = [bytes.fromhex(s) for s in request["samples"]]
deadline = time.monotonic() + request["seconds"]
files = []
for top in sorted(os.listdir("/")):
    if top in ("proc", "sys", "dev") or os.path.islink("/" + top):
        continue
    for folder, _, names in os.walk("/" + top):
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                files.append((not name.endswith(".py"), info.st_size, path))
files.sort()
batches, paths, size = [], [], 0
for _, length, path in files:
    paths.append(path)
    size += length
    if len(paths) >= 1000 or size >= 1 << 28:
        batches.append((paths, size))
        paths, size = [], 0
batches.append((paths, size))
grep = [b"grep", b"-lsZF"] + [a for s in samples for a in (b"-e", s)] + [b"--"]
def search(batch):
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        out = subprocess.run(grep + [os.fsencode(p) for p in batch[0]], capture_output=True,
                             timeout=left).stdout
    except subprocess.TimeoutExpired:
        return None
    return len(batch[0]), batch[1], [os.fsdecode(p) for p in out.split(b"\0") if p]
searched = searched_bytes = 0
complete, leaks = True, {}
with ThreadPoolExecutor(request["workers"]) as pool:
    for done in pool.map(search, [b for b in batches if b[0]]):
        if done is None:
            complete = False
            continue
        searched += done[0]
        searched_bytes += done[1]
        for path in done[2]:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                data = b""
            leaks[path] = [i for i, s in enumerate(samples) if s in data]
print(json.dumps({"files": len(files), "bytes": sum(f[1] for f in files), "searched": searched,
                  "searched_bytes": searched_bytes, "complete": complete, "leaks": leaks}))
"""


def probe(samples: list[bytes], *, cwd: Path, readable: list[Path], writable: list[Path],
          hidden: list[Path], held_out: Iterable[str] = (), seconds: float = 120.0) -> dict:
    """Search every file the sandbox built from these arguments shows for the samples.

    Returns {"sandboxed": False} without bwrap; else the count of readable files and bytes, how
    many were searched, "complete" (False when the deadline stopped it), "leaks" (readable path ->
    indexes of the samples found in it), "seconds"; or "error" if the search itself failed.
    """
    argv, sandboxed = wrap([sys.executable, "-I", "-c", _PROBE], cwd=cwd, readable=readable,
                           writable=writable, hidden=hidden, held_out=held_out)
    if not sandboxed:
        return {"sandboxed": False}
    request = {"samples": [s.hex() for s in samples], "seconds": seconds,
               "workers": max(1, min(4, os.cpu_count() or 1))}
    started, done = time.monotonic(), None
    try:
        done = subprocess.run(argv, input=json.dumps(request), capture_output=True, text=True,
                              cwd=cwd, env=child_env({"LC_ALL": "C"}), timeout=seconds + 60)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        tail = done.stderr.strip().splitlines()[-1:] if done is not None else []
        return {"sandboxed": True, "error": f"the search failed: {(tail or [str(exc)])[0]}"[:300]}
    return {"sandboxed": True, **found, "seconds": round(time.monotonic() - started, 1)}
