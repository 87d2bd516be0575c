"""The system calls a sandboxed trainer or evaluator is refused: a seccomp filter for bwrap.

Dropping every capability already stops most of these; the filter stops them again where a
capability is not what guards them, or where the sandbox still holds one (in its own user
namespace), or on a kernel whose namespaces are weaker than ours. What each refusal closes:

- mount, umount and the new mount API: uncovering the folders the sandbox hides (the held-out
  validation packages, the corpus cache, earlier runs);
- open_by_handle_at and name_to_handle_at: opening any file of a filesystem by its handle,
  around every mount;
- keyctl, add_key, request_key: kernel keyrings, which outlive a run (state between runs);
- ptrace, process_vm_readv/writev: reading or steering another process;
- bpf, perf_event_open, userfaultfd, io_uring: kernel programs and interfaces beyond a trainer's
  need (io_uring's operations bypass this very filter);
- unshare, setns, and clone or clone3 with namespace flags: a new user namespace would hand the
  process a full set of capabilities inside it;
- kexec, modules, reboot, swap, accounting, quotas, the kernel log, the clock and host names;
- with `children=True` (the CPU clock where no cgroup counts the run): setting a handler for
  SIGCHLD. A process that ignores SIGCHLD (or sets SA_NOCLDWAIT) has its children reaped by the
  kernel, and their CPU time then reaches no `children_*` counter the process tree is measured
  by; the flag and the handler are in memory the filter cannot read, so every change of SIGCHLD's
  disposition is refused (a DataLoader with worker processes, which sets one, then fails).

The filter is built with libseccomp (through pyseccomp) once per engine and handed to bwrap as a
file descriptor (`--seccomp`), opened on an anonymous file of the engine's (`program_file`).
Where libseccomp is missing the sandbox runs without it and says so in its verdict
(`sandbox.hardening`).
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

REFUSED = (
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at", "keyctl",
    "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "unshare", "setns", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "iopl", "ioperm", "lookup_dcookie", "vhangup", "fanotify_init",
)
# clone's flags that make a namespace (CLONE_NEWNS ... CLONE_NEWNET, CLONE_NEWTIME)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000, 0x00000080)


SIGCHLD = 17


def _build(children: bool) -> bytes:
    import pyseccomp as seccomp

    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in REFUSED:
        try:
            rules.add_rule(refuse, name)
        except (OSError, ValueError, RuntimeError):
            continue  # not a system call on this architecture
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes the C
    # library fall back to clone, whose flags the rules above read
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    if children:  # a query (no new action) stays allowed
        for name in ("rt_sigaction", "sigaction", "signal"):
            try:
                rules.add_rule(refuse, name, seccomp.Arg(0, seccomp.EQ, SIGCHLD),
                               seccomp.Arg(1, seccomp.NE, 0))
            except (OSError, ValueError, RuntimeError):
                continue
    with tempfile.TemporaryFile() as f:
        rules.export_bpf(f)
        f.seek(0)
        return f.read()


@functools.lru_cache(maxsize=2)
def program(children: bool = False) -> bytes | None:
    """The compiled filter (built once per process), or None where it cannot be built;
    `children` also refuses SIGCHLD handlers (see above)."""
    try:
        return _build(children)
    except Exception:  # noqa: BLE001 - any failure means no filter: the verdict says so
        return None


_FILES: dict[tuple[int, bool], str] = {}  # (pid, children) -> the filter's path


def program_file(children: bool = False) -> str | None:
    """A path that opens the filter from its start, for bwrap's `--seccomp FD` with FD opened
    on it; None without a filter. It is an anonymous file of this process (memfd), reached
    through /proc: nothing on disk, so an engine killed with SIGKILL leaves nothing behind."""
    key = (os.getpid(), children)
    if key not in _FILES:
        bpf = program(children)
        if bpf is None or not hasattr(os, "memfd_create"):
            return None
        fd = os.memfd_create("ratchet-seccomp")
        os.write(fd, bpf)
        _FILES[key] = f"/proc/{os.getpid()}/fd/{fd}"
    return _FILES[key]


def unavailable_reason() -> str:
    try:
        import pyseccomp  # noqa: F401
    except ImportError:
        return "pyseccomp is not installed"
    return "libseccomp (libseccomp2) is not installed or cannot build the filter"
