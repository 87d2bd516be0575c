"""`ratchet run --headless --resume` follows the resumed run: it prints only what happens from
the resume on, and returns when that run ends, with its end line and exit status."""

from __future__ import annotations

from fault_checks import (
    keeping_workspace,
    log_of,
    ratchet,
    session_folder,
    start,
    wait_for,
)

from ratchet.engine.protocol import paths


def test_headless_resume_follows_the_resumed_run_to_its_end(tmp_path, template_workspace):
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    first = start("--tag", "again", cwd=ws.root)
    try:
        folder = session_folder(ws)
        assert wait_for(folder, "exp_end")
        stopped = ratchet("stop", cwd=ws.root)
        assert stopped.returncode == 0, stopped.stderr
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert "session ended (stopped)" in out, out + err
    before = len(log_of(folder))

    done = ratchet("run", "--headless", "--resume", "--max-experiments", "1", cwd=ws.root)
    log = log_of(folder)
    # it returned once the resumed engine had ended, not while it went on
    assert not paths.is_running(folder)
    ended = [e for e in log if e["type"] == "session_end"]
    assert len(ended) == 2 and ended[-1]["reason"] == "max_experiments", ended
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    ends = [line for line in lines if line.startswith("session ended")]
    assert ends == [ends[-1]] and ends[0].startswith("session ended (max_experiments)"), lines
    # one line per experiment that ended after the resume, none of those before it
    after = [e for e in log[before:] if e["type"] == "exp_end"]
    assert sum(line.startswith("#") for line in lines) == len(after), lines
    assert "error" not in done.stderr, done.stderr
