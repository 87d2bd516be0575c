"""A damaged event log costs the headless follower one documented warning line,
`ratchet: warning: <log>: ...`, never a Python warning with its source line."""

from __future__ import annotations

from fault_checks import (
    keeping_workspace,
    ratchet,
    session_folder,
    start,
    wait_for,
)

from ratchet.engine.protocol import paths


def test_a_damaged_line_in_a_followed_log_is_one_warning_line(tmp_path, template_workspace):
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    run = start("--tag", "torn", cwd=ws.root)
    try:
        folder = session_folder(ws)
        assert wait_for(folder, "exp_start")
        with open(folder / paths.EVENTS, "ab") as f:  # a hand edit, one whole line
            f.write(b'{"t": 1, "type": "exp_end", "exp": "seven"}\n')
        assert ratchet("stop", cwd=ws.root).returncode == 0
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert "session ended (stopped)" in out, out + err
    assert "Warning" not in err, err
    warned = [line for line in err.splitlines() if line.startswith("ratchet: warning:")]
    assert warned == [f"ratchet: warning: {folder / paths.EVENTS}: skipped a line that is not "
                      f"a valid event"], err
