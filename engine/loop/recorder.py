"""The session's records: every event appended to the log and folded into the state, and the
results.tsv rows the log backs.

Any thread may emit; an experiment's end is put on disk before its rows, and a keep is logged
under the branch's move to it (`Branch.move`), so the log is never behind git or results.tsv. A
full disk is the engine's error, never a candidate's: streamed events are dropped, the
workspace's reserve (`lock.reserve`) is freed for the last records, and the session stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ratchet.engine.loop import branch, curve, ledger, lock, resume
from ratchet.engine.loop.rules import early_stop
from ratchet.engine.protocol import events, paths, schema
from ratchet.engine.protocol import state as statemod
from ratchet.engine.runner import experiment
from ratchet.engine.workspace import results_tsv

# events a full disk may cost: the session's own records do not depend on them
DROPPABLE = (*schema.STREAMS, schema.PHASE)


class Recorder:
    def __init__(self, folder: Path, recorded: resume.Recorded, results_path: Path,
                 runs_dir: Path, *, resuming: bool, on_full: Callable[[], None]):
        self.folder, self.runs_dir, self.results_path = folder, runs_dir, results_path
        self.recorded = recorded
        self.state = recorded.state
        self.on_full = on_full  # the session stops
        self.full = ""  # why the session stops: the disk is full
        self.log = events.EventLog(folder / paths.EVENTS, on_full=self._make_room)
        self.rows = list(recorded.rows)  # every results.tsv row the log backs, in order
        self.rows_written: int | None = None if resuming else 0  # None: not repaired yet
        self.lock = threading.RLock()  # the event log and the state change together
        self.branch: branch.Branch | None = None  # set once the session has its branch
        self.margin: Callable[[], float] = lambda: 0.0  # the keep rule's, as records say it

    def emit(self, event_type: str, exp: int | None = None, **fields) -> dict:
        """Append an event and fold it into the state. On a full disk, one of the DROPPABLE
        types is left out."""
        with self.lock:
            try:
                event = self.log.append(event_type, exp=exp, **fields)
            except OSError as exc:
                if event_type not in DROPPABLE or not lock.is_full(exc):
                    raise
                return {"type": event_type, "exp": exp, **fields}
            self.rows += ledger.rows_for(event, self.state.pending_confirms,
                                         self.state.pending_runs)
            statemod.apply(self.state, event)
            return event

    def stream(self, event_type: str, exp: int | None = None, **fields) -> None:
        """Append a streamed event (training log, resources): dropped once the disk is full."""
        if self.full:
            return
        try:
            self.log.append(event_type, exp=exp, **fields)
        except OSError as exc:
            if not lock.is_full(exc):
                raise
            self.disk_full()

    def disk_full(self) -> None:
        """The disk has no room: the session stops, with the reason."""
        self.full = self.full or lock.full_message(self.runs_dir)
        self.on_full()

    def full_now(self, exc: Exception) -> bool:
        """Whether the engine's own failure is the disk's: it says so (a git command in its
        words), or the disk has no room now."""
        return bool(self.full) or lock.is_full(exc) or not lock.has_room(self.folder)

    def _make_room(self, event: dict) -> bool:
        """The log found the disk full (on the writing thread, under the log's lock): the
        reserve goes for the session's own records, once."""
        self.disk_full()
        return event.get("type") not in DROPPABLE and lock.release_reserve(self.runs_dir)

    def write_rows(self) -> None:
        """Append the results.tsv rows of what the log holds (once those events are on disk);
        the first call of a resume repairs the file."""
        with self.lock:
            if self.rows_written is None:
                theirs = set(self.recorded.unreadable_ends.values())
                ledger.repair(self.results_path, self.rows, self.recorded.ours - theirs)
            else:
                for row in self.rows[self.rows_written:]:
                    results_tsv.append(self.results_path, *row)
            self.rows_written = len(self.rows)

    def dropped(self, n: int, reason: str, description: str, stage: str,
                changes: dict | None = None) -> None:
        """A candidate that will not run (again); a waiting winner's rows are written."""
        self.emit(schema.PROPOSAL_DROPPED, exp=n, reason=reason, description=description,
                  stage=stage, changes=changes or {})
        if stage == schema.STAGE_CONFIRM:
            self.log.sync()
            self.write_rows()  # the winner's own row, a discard now

    def end(self, n: int, kind: str, commit: str, result: experiment.Result,
            description: str, decision: str, changes: dict | None = None, **extra) -> dict:
        """Log an experiment's end and put it on disk, then its results.tsv rows. A keep is
        logged under the branch's move to it; one the branch cannot take (taken from the
        engine, or the person's work in the way) is recorded as interrupted."""
        self._blame_disk(result)
        self.branch.look()  # a branch taken under the engine stops it by this result at latest
        if result.status == schema.INTERRUPTED:  # cut short: says nothing of the change
            decision = schema.INTERRUPTED
        args, kept = (n, kind, commit, result, description, changes), []
        # refused after its record only in a race with an editor's write: the resume ends it
        if decision == schema.KEEP and not self.branch.move(
                commit, f"keeping exp {n}",
                before=lambda: kept.append(self._log_end(*args, decision, **extra))) and not kept:
            decision, result.error = schema.INTERRUPTED, f"not kept: {self.branch.problem}"
        event = kept[0] if kept else self._log_end(*args, decision, **extra)
        self.write_rows()
        return event

    def _log_end(self, n: int, kind: str, commit: str, result: experiment.Result,
                 description: str, changes: dict | None, decision: str, **extra) -> dict:
        best = self.state.best_bpb
        delta = (result.val_bpb - best) if (result.val_bpb is not None and best is not None
                                            and kind != schema.BASELINE) else None
        summary = result.to_json()
        summary["tail"] = summary["tail"][-4000:]
        summary["curve"] = curve.thin(result.train_log, result.budget_seconds)
        if result.budget_seconds > 0:
            summary["profile"] = early_stop.profile(early_stop.points(result.train_log),
                                                    result.budget_seconds)
        event = self.emit(schema.EXP_END, exp=n, kind=kind, status=result.status,
                          decision=decision, val_bpb=result.val_bpb, best_before=best,
                          delta=delta, margin=self.margin(), commit=commit,
                          description=description, changes=changes or {}, result=summary,
                          **extra)
        self.log.sync()
        return event

    def _blame_disk(self, result: experiment.Result) -> None:
        """A run that failed while the disk was full is interrupted, not the candidate's
        crash: the engine's own write said so, or the disk has no room now."""
        if result.status != schema.OK and (
                self.full or lock.failed_for_room(result.error, self.folder)):
            self.disk_full()
            result.status = schema.INTERRUPTED
            result.error = f"stopped by a full disk: {result.error}"
