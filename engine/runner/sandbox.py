"""Run untrusted training and the frozen evaluation in a bubblewrap sandbox where available.

The sandbox gives the child a minimal read-only view of the system: the folders a Python/CUDA
process needs (/usr, /etc, /opt, the library folders, the interpreter's own folders) and the paths
it is explicitly given, nothing else of `/` (no home folders, no other checkouts, no corpus
cache). It has no network, a private /tmp and /dev/shm, its own PID namespace (it dies with its
parent), and no privilege, also when Ratchet runs as root: its own user, UTS, IPC and cgroup
namespaces, every capability dropped, no new privileges, /proc/sys read-only, only the GPU's
device nodes of /dev, and a seccomp filter (`seccomp_filter`) that refuses mounts, file handles,
keyrings, ptrace, bpf, new namespaces and the like. `hardening()` says what of that this machine
allows. Trainers also get every held-out stdlib package (the default corpus's validation
split) hidden in every copy of the standard library inside that view. Where bwrap is missing or
cannot create namespaces, the child runs as a plain process and Ratchet warns once: the metric
stays honest (evaluation runs in its own process), but train.py could then read validation files.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from ratchet.engine.data.corpus import HELD_OUT_PACKAGES
from ratchet.engine.runner import cgroup, seccomp_filter

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


# What takes root's power away inside, strongest first; an older bwrap lacks --disable-userns
# (the seccomp filter refuses new user namespaces anyway).
_NO_PRIVILEGE = (["--unshare-user", "--disable-userns"], ["--unshare-user"])
_ISOLATE = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
# /proc of the sandbox's own PID namespace, with the kernel's knobs read-only: a process whose
# user is root outside passes their permission checks even without a capability
_PROC = ["--proc", "/proc", *[a for name in ("sys", "sysrq-trigger", "irq", "bus")
                              for a in ("--ro-bind-try", f"/proc/{name}", f"/proc/{name}")]]
# the device nodes a GPU run needs (NVIDIA's, and AMD's for ROCm); the rest of /dev (disks
# above all, which root's uid may open) is never shown
_GPU_NODES = ("nvidia*", "nvidia-caps", "kfd", "dri")


@functools.lru_cache(maxsize=1)
def _flags() -> tuple[str, ...] | None:
    """bwrap's isolation options that work on this machine, or None if none do."""
    path = shutil.which("bwrap")
    if not path:
        return None
    for no_privilege in (*_NO_PRIVILEGE, []):
        flags = (*no_privilege, *_ISOLATE)
        probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", *_PROC, *flags, "true"]
        try:
            if subprocess.run(probe, capture_output=True, timeout=20).returncode == 0:
                return flags
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


def hardening() -> dict:
    """What the sandbox takes away on this machine: its own user namespace (no root outside),
    the seccomp filter, and whether CPU time and processes are counted by cgroup."""
    flags = _flags() or ()
    return {"user_namespace": "--unshare-user" in flags,
            "seccomp": seccomp_filter.program() is not None,
            "cgroup": cgroup.base() is not None}


def hardening_line() -> str:
    """One line on what the sandbox cannot guarantee here, or '' where it holds in full."""
    found, gaps = hardening(), []
    if not found["user_namespace"]:
        gaps.append("no user namespace (a trainer started by root runs as root, its "
                    "capabilities dropped)")
    if not found["seccomp"]:
        gaps.append(f"no seccomp filter ({seccomp_filter.unavailable_reason()})")
    if not found["cgroup"]:
        gaps.append(f"CPU time counted from the process tree, not a cgroup "
                    f"({cgroup.unavailable_reason()}), so on the CPU clock the sandbox refuses "
                    f"SIGCHLD handlers (a DataLoader with worker processes cannot run)")
    return "; ".join(gaps)


@functools.lru_cache(maxsize=1)
def bwrap_path() -> str | None:
    """bwrap, if it is installed and can actually build a sandbox on this machine."""
    if os.environ.get("RATCHET_NO_SANDBOX") == "1":
        return None
    return shutil.which("bwrap") if _flags() is not None else None


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
    otherwise compute on a GPU for time its CPU clock never counts; with `devices=True` the
    same /dev plus the GPU's device nodes.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        return command, False
    argv = [bwrap, *_system_view(), "--dev", "/dev", *(_gpu_nodes() if devices else []),
            "--tmpfs", "/dev/shm", *_PROC, "--tmpfs", "/tmp"]
    mounts = [("--ro-bind", p) for p in python_paths()]
    mounts += [("--tmpfs", p) for p in [*held_out_folders(held_out), *hidden] if p.exists()]
    mounts += [("--ro-bind", p) for p in readable] + [("--bind", p) for p in writable]
    for option, path in sorted(mounts, key=lambda m: len(Path(m[1]).parts)):  # stable sort
        argv += [option, str(path)] if option == "--tmpfs" else [option, str(path), str(path)]
    argv += [*_flags(), "--chdir", str(cwd)]
    # on the CPU clock without a cgroup the process tree is what counts: no child may escape it
    filter_file = seccomp_filter.program_file(children=not devices and cgroup.base() is None)
    if filter_file is None:
        return [*argv, "--", *command], True
    # bwrap reads the filter from a descriptor: the shell opens it, then becomes bwrap
    return ["/bin/sh", "-c", 'exec 9<"$0" && exec "$@"', filter_file, *argv, "--seccomp", "9",
            "--", *command], True


def _gpu_nodes(dev: Path = Path("/dev")) -> list[str]:
    """Binds of the GPU device nodes that exist here (in `dev`)."""
    nodes = sorted({f"/dev/{p.name}" for pattern in _GPU_NODES for p in dev.glob(pattern)})
    return [a for node in nodes for a in ("--dev-bind", node, node)]
