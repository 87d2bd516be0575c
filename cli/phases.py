"""Where a session's wall time went (training, evaluating, proposing, paused), read from each
event's own place in the log.

The agent prepares the next candidate while a run trains, so the proposer's `proposing` event
and a worker's `training` event come in either order, from two threads. Reading the latest phase
event as the session's phase counted a run's training as proposing whenever the proposer spoke
last. Here each run's phase is its own (its `exp`'s phase events, until its exp_end), and an
instant counts as training while any run trains, else evaluating while any run evaluates, else
paused while the engine is paused, else proposing: the device waits for the agent.
"""

from __future__ import annotations

from ratchet.engine.protocol import schema

DEVICE = (schema.PHASE_TRAINING, schema.PHASE_EVALUATING)  # the phases a run's own events say


class PhaseClock:
    """Feed it the log's events in order; `seconds` holds the time per phase so far. Time is
    counted from the first phase event, and not across an engine's death (a resume's
    session_start)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.runs: dict[int, str] = {}  # exp -> its phase, while it runs
        self.paused = False
        self.since: float | None = None  # counting from here; None: not counting

    def now(self) -> str:
        phases = set(self.runs.values())
        waiting = schema.PHASE_PAUSED if self.paused else schema.PHASE_PROPOSING
        return next((p for p in DEVICE if p in phases), waiting)

    def feed(self, event: dict, t: float) -> None:
        if self.since is not None:
            phase = self.now()
            self.seconds[phase] = self.seconds.get(phase, 0.0) + max(0.0, t - self.since)
            self.since = t
        kind = event.get("type")
        if kind in (schema.SESSION_START, schema.SESSION_END):
            # the engine (re)starts or ends: nothing runs, and a gap before a resume is nobody's
            self.runs.clear()
            self.paused, self.since = False, None
        elif kind == schema.PHASE:
            phase, exp = event.get("phase"), event.get("exp")
            if phase in DEVICE and isinstance(exp, int):
                self.runs[exp] = phase
            elif phase == schema.PHASE_PAUSED:
                self.paused = True
            if self.since is None:
                self.since = t
        elif kind == schema.EXP_END:
            self.runs.pop(event.get("exp", 0), None)
        elif kind == schema.PAUSED:
            self.paused = True
        elif kind == schema.RESUMED:
            self.paused = False
