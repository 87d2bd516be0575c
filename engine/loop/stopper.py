"""Early stopping while runs train: each watched run's logged loss is judged at each checkpoint
as it passes, and a clear loser is stopped at once.

The engine thread watches a candidate's run as it starts (its reference on the seed, bounded
below by `early_stop.floor`, and the thresholds the session has calibrated); the workers' log
hook (`observe`) feeds it on their threads; the engine thread takes the verdict when the run
comes back (`done`). A run's own elapsed time places its points: a candidate that misstates it
only puts off its own stop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ratchet.engine.loop.rules import early_stop as es
from ratchet.engine.workers.backend import Backend


@dataclass
class Watch:
    budget: float
    reference: dict[float, float]  # the best's loss at each checkpoint, bounded below
    reference_val: float  # the best's val_bpb on this seed
    thresholds: dict[float, float]  # at each checkpoint judged
    schedule: bool = False  # a change to the schedule (calibrated with its own kind)
    points: list[tuple[float, float]] = field(default_factory=list)
    judged: set[float] = field(default_factory=set)
    stop: es.Stop | None = None


class Stopper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, Watch] = {}
        self.backend: Backend | None = None  # set once the workers exist

    def watch(self, exp: int, watch: Watch) -> None:
        with self._lock:
            self._watches[exp] = watch

    def observe(self, exp: int, record: dict) -> None:
        """A logged step of a run (on a worker's thread): judged at each checkpoint it passes."""
        with self._lock:
            watch = self._watches.get(exp)
            if watch is None or watch.stop is not None:
                return
            watch.points += es.points([record])
            if not watch.points:
                return
            now = watch.points[-1][0]
            for f in sorted(watch.thresholds):
                if f in watch.judged or now < (f + es.WINDOW / 2) * watch.budget:
                    continue
                watch.judged.add(f)
                mine = es.loss_at(watch.points, f, watch.budget)
                if mine is None or f not in watch.reference:
                    continue
                watch.stop = es.judge({f: mine - watch.reference[f]}, watch.thresholds)
                if watch.stop is not None:
                    break
            stop = watch.stop
        if stop is not None and self.backend is not None and not self.backend.stop(exp):
            with self._lock:
                watch.stop = None  # this backend cannot stop one run: it runs to the end

    def done(self, exp: int) -> Watch | None:
        """The run came back: its watch (with `stop` where it was stopped), or None."""
        with self._lock:
            return self._watches.pop(exp, None)
