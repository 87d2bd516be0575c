"""What the trainer's sandbox shows and allows, checked from inside it.

`probe` searches every file a trainer can read for pieces of the validation text; `privileges`
tries what a trainer running as root would try to get out (capabilities, mounts, file handles,
keyrings, /proc/sys, ptrace, new namespaces) and reports what the sandbox refused. `ratchet init`
and `ratchet prepare` run both and record the verdicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from ratchet.engine.runner.sandbox import child_env, hardening, hardening_line, wrap

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


# Run inside the sandbox by `privileges`: what a trainer started by root would try first.
_PRIVILEGES = r"""
import ctypes, ctypes.util, errno, json, os
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
out = {}
with open("/proc/self/status") as f:
    status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
out["capabilities"] = int(status.get("CapEff", "0"), 16)
out["no_new_privileges"] = status.get("NoNewPrivs") == "1"
out["seccomp"] = status.get("Seccomp") == "2"
out["mount_refused"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == -1
out["umount_refused"] = libc.umount2(b"/tmp", 2) == -1
class Handle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * 128)]
handle, mount_id = Handle(bytes=128), ctypes.c_int()
if libc.name_to_handle_at(-100, b"/usr", ctypes.byref(handle), ctypes.byref(mount_id), 0) == 0:
    fd = os.open("/usr", os.O_RDONLY)
    out["handles_refused"] = libc.open_by_handle_at(fd, ctypes.byref(handle), 0) < 0
else:
    out["handles_refused"] = True
try:
    with open("/proc/sys/kernel/hostname") as f:
        name = f.read()
    with open("/proc/sys/kernel/hostname", "w") as f:
        f.write(name)
    out["proc_sys_read_only"] = False
except OSError:
    out["proc_sys_read_only"] = True
print(json.dumps(out))
"""


def privileges(cwd: Path) -> dict:
    """What a process in the trainer's sandbox holds: {"sandboxed": False} without bwrap, else
    the capabilities it has, whether new privileges, mounts, file handles and /proc/sys writes
    are refused and the seccomp filter is on, and this machine's `hardening` (user namespace,
    seccomp, cgroup); or "error"."""
    argv, sandboxed = wrap([sys.executable, "-I", "-c", _PRIVILEGES], cwd=Path("/"),
                           readable=[], writable=[], hidden=[])
    if not sandboxed:
        return {"sandboxed": False}
    done = None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                              env=child_env({"LC_ALL": "C"}), timeout=60)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        tail = done.stderr.strip().splitlines()[-1:] if done is not None else []
        return {"sandboxed": True, "error": f"the check failed: {(tail or [str(exc)])[0]}"[:300]}
    return {"sandboxed": True, **found, **hardening()}


def privileges_verdict(found: dict) -> tuple[bool | None, str]:
    """(whether the sandbox holds without privilege, one line saying so)."""
    if not found["sandboxed"]:
        return False, "sandbox: none (train.py runs as a plain process with the engine's rights)"
    if "error" in found:
        return None, f"sandbox check failed: {found['error']}"
    refused = [name for name, key in (("mount", "mount_refused"), ("umount", "umount_refused"),
                                      ("file handles", "handles_refused"),
                                      ("/proc/sys writes", "proc_sys_read_only"))
               if found.get(key)]
    gaps = hardening_line()
    holds = not found["capabilities"] and found["no_new_privileges"] and len(refused) == 4
    line = (f"sandbox without privilege: {found['capabilities']:#x} capabilities, "
            f"{'no new privileges, ' if found['no_new_privileges'] else ''}"
            f"seccomp {'on' if found['seccomp'] else 'OFF'}, refuses {', '.join(refused)}")
    if not holds:
        line = "sandbox KEEPS PRIVILEGES: " + line.split(": ", 1)[1]
    return holds and found["seccomp"], line + (f"; {gaps}" if gaps else "")
