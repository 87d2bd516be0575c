"""Whether a session's engine runs, and which process `ratchet stop` signals, is proven by the
process's identity, never taken from a pid alone: a stale engine.pid naming some other live
process (its number reused after a crash or a reboot) is not the engine."""

from __future__ import annotations

import subprocess

from fault_checks import (
    keeping_workspace,
    kill_engine,
    log_of,
    ratchet,
    resume_session,
    session_folder,
    start,
    wait_until,
)

from ratchet.engine.protocol import paths


def test_a_stale_pid_file_naming_another_live_process_is_not_the_engine(
        tmp_path, template_workspace):
    ws = keeping_workspace(tmp_path / "ws", template_workspace)
    run = start("--tag", "own", cwd=ws.root)
    try:
        folder = session_folder(ws)
        assert wait_until(lambda: any(e["type"] == "exp_start" for e in log_of(folder)), 120)
        kill_engine(folder)  # a crash: the log has no end, engine.pid stays behind
    finally:
        run.kill()
        run.communicate()
    sleeper = subprocess.Popen(["sleep", "600"])  # a process that took the engine's number
    try:
        # as older Ratchet wrote it (a pid alone), and with the start of another process
        for planted in (f"{sleeper.pid}\n", f"{sleeper.pid} 1\n"):
            (folder / paths.PID).write_text(planted)
            for args in (["stop"], ["stop", folder.name], ["ctl", "pause"]):
                refused = ratchet(*args, "--wait", "5", cwd=ws.root) if args[0] == "stop" \
                    else ratchet(*args, cwd=ws.root)
                assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
                assert refused.stderr.count("\n") == 1, refused.stderr
                assert "not running" in refused.stderr or "no running session" in \
                    refused.stderr, refused.stderr
                assert sleeper.poll() is None, f"`ratchet {' '.join(args)}` killed it"
            status = ratchet("status", cwd=ws.root)
            assert "[not running (crashed?)]" in status.stdout, status.stdout
            listed = ratchet("ls", cwd=ws.root)
            assert "crashed" in listed.stdout and "running " not in listed.stdout, listed.stdout
        done = resume_session(ws, folder, "--max-experiments", "1")
        assert "still running" not in done.stderr, done.stderr
        assert done.returncode == 0, done.stdout + done.stderr
        log = log_of(folder)
        assert sum(e["type"] == "session_start" for e in log) == 2
        assert log[-1]["type"] == "session_end", log[-3:]
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
