"""The sandbox's argument list: what a trainer is shown of /dev and /proc, and what it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import requires_sandbox

from ratchet.engine.runner import cgroup, sandbox


def test_a_gpu_run_gets_its_device_nodes_and_no_disk(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-caps", "kfd", "dri",
                 "sda", "nvme0n1", "mem"):
        (tmp_path / name).touch()
    binds = sandbox._gpu_nodes(tmp_path)
    shown = {binds[i + 1] for i in range(0, len(binds), 3)}
    assert shown == {"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm",
                     "/dev/nvidia-caps", "/dev/kfd", "/dev/dri"}
    assert all(binds[i] == "--dev-bind" for i in range(0, len(binds), 3))


@requires_sandbox
@pytest.mark.parametrize("devices", [True, False], ids=["gpu-view", "cpu-clock-view"])
def test_no_run_sees_the_host_dev_or_writable_kernel_knobs(devices):
    argv, sandboxed = sandbox.wrap(["true"], cwd=Path("/"), readable=[], writable=[],
                                   hidden=[], devices=devices)
    assert sandboxed
    assert "/dev" not in [argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind"]
    assert argv[argv.index("--dev"):argv.index("--dev") + 2] == ["--dev", "/dev"]
    for name in ("sys", "sysrq-trigger"):
        at = argv.index(f"/proc/{name}")
        assert argv[at - 1] == "--ro-bind-try" and argv.index("--proc") < at
    for flag in ("--unshare-user", "--cap-drop", "--unshare-uts", "--unshare-ipc",
                 "--unshare-net", "--unshare-pid", "--new-session", "--die-with-parent"):
        assert flag in argv, flag
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "--seccomp" in argv


def test_orphaned_run_groups_are_removed(monkeypatch, tmp_path):
    if cgroup.base() is None:
        pytest.skip(f"no cgroups here: {cgroup.unavailable_reason()}")
    dead = cgroup.base() / "ratchet-999999999-0"  # no such pid
    dead.mkdir()
    mine = cgroup.RunGroup.create()
    try:
        assert cgroup.remove_orphans() >= 1
        assert not dead.exists()
        assert mine.path.exists()  # a running engine's own groups stay
    finally:
        mine.remove()
