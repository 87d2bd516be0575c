"""What the person and the signals ask of a running session: flags any thread may set (the
control socket's, a signal handler, a failing part) and the engine and proposer threads read."""

from __future__ import annotations

import threading


class Controls:
    def __init__(self) -> None:
        self.paused = threading.Event()
        self.kill_current = threading.Event()  # stop the running experiments (not the session)
        self.resume_wakeup = threading.Event()
        self.stop_reason = ""  # why the session stops (schema.STOP_*), once it does

    def request_stop(self, reason: str) -> None:
        """The first reason given is the session's; the running experiments are stopped."""
        self.stop_reason = self.stop_reason or reason
        self.kill_current.set()
        self.resume_wakeup.set()
