"""A full disk is the engine's error, not the candidate's: the session ends cleanly with the
reason, a resume on a disk still full says so in one line, and once there is room it goes on
with new numbers. The workspace lives on a small tmpfs (root only) that a file fills while a
real session runs."""

from __future__ import annotations

import time

import pytest
from fault_checks import (
    fill,
    keeping_workspace,
    log_of,
    mount_tmpfs,
    orphans,
    problems,
    ratchet,
    resume_session,
    session_folder,
    start,
    unmount,
    wait_until,
)

FULL = "the disk is full"


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    why = mount_tmpfs(disk, "64m")
    if why:
        pytest.skip(why)
    yield disk
    unmount(disk)


def test_a_full_disk_stops_the_session_and_a_resume_goes_on(small_disk, template_workspace):
    ws = keeping_workspace(small_disk / "ws", template_workspace)
    engine = start("--tag", "full", cwd=ws.root)
    try:
        folder = session_folder(ws)
        # the disk fills while a candidate runs
        assert wait_until(lambda: any(e["type"] == "exp_start" and e["kind"] == "candidate"
                                      for e in log_of(folder)), 120), log_of(folder)[-5:]
        filled_at = time.time()
        fill(small_disk / "filler")
        out, err = engine.communicate(timeout=120)
    finally:
        if engine.poll() is None:
            engine.kill()
    log = log_of(folder)
    end = [e for e in log if e["type"] == "session_end"]
    assert end and end[-1]["reason"] == "error", (log[-5:], out, err)
    assert end[-1]["error"].startswith(FULL), end[-1]
    assert "\n" not in end[-1]["error"]
    assert engine.returncode == 1 and f"session ended (error: {FULL}" in out, out + err
    # nothing that failed on the full disk is the candidate's crash
    assert not [e for e in log if e["type"] == "exp_end" and e["status"] != "ok"
                and e["t"] >= filled_at and e["status"] != "interrupted"], log
    engine_log = (folder / "engine.log").read_text()
    assert "Traceback" not in engine_log
    assert engine_log.splitlines()[-1].startswith(f"ratchet-engine: error: {FULL}")

    # resume on a disk still full: one line, nothing started
    refused = ratchet("run", "--headless", "--resume", cwd=ws.root, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(
        f"ratchet: error: {FULL}"), refused.stderr
    assert len([e for e in log_of(folder) if e["type"] == "session_start"]) == 1

    # with room again, the session goes on where it stopped
    (small_disk / "filler").unlink()
    numbers = {e["exp"] for e in log if isinstance(e.get("exp"), int)}
    made = sum(e["type"] in ("proposal", "proposal_failed") for e in log)
    done = resume_session(ws, folder, "--max-experiments", str(made + 2))
    log = log_of(folder)
    assert log[-1]["type"] == "session_end" and log[-1]["reason"] == "max_experiments", (
        log[-3:], done.stdout + done.stderr)
    resumed = [i for i, e in enumerate(log) if e["type"] == "session_start"][-1]
    later = {e["exp"] for e in log[resumed:] if e["type"] == "exp_start"}
    assert later and not later & numbers  # no number used again
    assert problems(ws, folder) == {}
    assert orphans(ws.root) == []
