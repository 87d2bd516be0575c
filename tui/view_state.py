"""What the dashboard shows, as a pure fold of the event sequence.

`DashboardState.apply(event)` is the only way state changes, so a live session, an attached
dashboard and a replay of a finished log show the same thing for the same events. Everything
grows bounded: agent text and resource histories are deques, loss curves are downsampled, and
per-experiment text is capped, so a night of events costs megabytes, not gigabytes.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ratchet.engine.protocol import schema
from ratchet.engine.protocol import state as loopstate
from ratchet.engine.protocol.history import memory_gb

AGENT_CHUNKS = 400  # agent text chunks kept for the reasoning pane (a chunk is <= 2,000 chars)
REASONING_CHARS = 16_000  # reasoning kept per experiment (the end, where the decision is)
DIFF_CHARS = 40_000  # a proposal's diff kept for the diff pane
CURVE_POINTS = 512  # loss points kept per experiment; longer curves are thinned evenly
HISTORY = 120  # resource samples kept for sparklines (3 minutes at one per 1.5 s)


class Curve:
    """A loss curve bounded to CURVE_POINTS: when full, every other point is dropped and only
    every `stride`-th new point is kept, so the curve keeps its shape over any length."""

    __slots__ = ("steps", "values", "stride", "_seen")

    def __init__(self) -> None:
        self.steps = array("d")
        self.values = array("d")
        self.stride = 1
        self._seen = 0

    def add(self, step: float, value: float) -> None:
        self._seen += 1
        if (self._seen - 1) % self.stride:
            return
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) >= CURVE_POINTS:
            self.steps = self.steps[::2]
            self.values = self.values[::2]
            self.stride *= 2

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class Experiment:
    """One experiment's row, diff, reasoning and loss curve."""

    n: int
    kind: str = schema.CANDIDATE
    commit: str = ""
    description: str = ""
    started: float | None = None  # event times, never the clock at render
    ended: float | None = None
    last_t: float | None = None  # time of its latest event
    budget: float = 0.0
    elapsed: float = 0.0  # training seconds reported by its latest train_log
    status: str = schema.PHASE_PROPOSING  # proposing | running | failed | a run status
    decision: str = ""
    val_bpb: float | None = None
    delta: float | None = None
    diff: str = ""
    reasoning: str = ""
    rationale: str = ""
    error: str = ""
    confirms: int | None = None
    paired: dict = field(default_factory=dict)  # the paired rule's reading at this run
    worker: str = ""  # the worker (device) that runs or ran it
    memory_gb: float | None = None  # its peak memory, as its result says (memory_gb)
    curve: Curve = field(default_factory=Curve)

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else self.last_t
        return None if end is None else max(0.0, end - self.started)

    @property
    def label(self) -> str:
        """What the status column says: the decision once known, else the run's status."""
        if self.status in (schema.PHASE_PROPOSING, schema.RUNNING):
            return self.status
        if self.status == schema.STOPPED_EARLY:
            return "stopped"  # a discard, cut short: it trailed the best on its seed
        if self.status != schema.OK or self.decision in ("", schema.CRASH):
            return self.status
        label = {schema.PENDING_CONFIRM: "confirming", schema.NEAR_MISS: "near miss",
                 schema.ANOTHER_RUN: "one more"}.get(self.decision, self.decision)
        runs = self.paired.get("runs")
        if isinstance(runs, int) and self.decision in (schema.KEEP, schema.DISCARD,
                                                         schema.NEAR_MISS):
            return f"{label}·{runs}"  # the paired rule's verdict, after this many runs
        return label

    @property
    def base_label(self) -> str:
        """The label without a run count: what the status colours key on."""
        return self.label.split("·")[0]


@dataclass
class Resources:
    """The latest sample and short histories for sparklines."""

    source: str = ""
    cpu: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    ram: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    ram_used_gb: float | None = None
    gpus: list[dict] = field(default_factory=list)
    gpu_util: dict[int, deque] = field(default_factory=dict)
    samples: int = 0


class DashboardState:
    """The loop's facts (`ratchet.engine.protocol.state.LoopState`) plus what the panes draw."""

    def __init__(self) -> None:
        self.loop = loopstate.LoopState()
        self.events = 0
        self.experiments: dict[int, Experiment] = {}
        # experiments in flight, in the order they started -> their worker (several workers
        # run experiments at once)
        self.in_flight: dict[int, str] = {}
        self.workers: set[str] = set()  # every worker seen
        self.best_exp: int | None = None  # whose curve is the best one
        self.current_diff = ""  # the latest proposal's diff
        self.current_exp: int | None = None  # the experiment the agent works on now
        self.agent_chunks: deque[str] = deque(maxlen=AGENT_CHUNKS)
        self.agent_total = 0  # chunks ever added; panes write those they have not seen
        self._agent_exp: int | None = None
        self.resources = Resources()
        self.val_points: list[tuple[int, float]] = []  # (exp, val_bpb) of finished runs
        self.best_line: list[tuple[int, float]] = []  # (exp, best val_bpb after it)
        self.pause_requested = False
        self.last_note = ""  # the latest steer note
        self.last_error = ""

    # --- folding ---------------------------------------------------------------------------

    def apply(self, event: dict) -> None:
        self.events += 1
        loopstate.apply(self.loop, event)
        kind = event.get("type")
        handler = _HANDLERS.get(kind)  # type: ignore[arg-type]
        if handler is not None:
            handler(self, event)
        exp = event.get("exp")
        if isinstance(exp, int) and exp in self.experiments:
            self.experiments[exp].last_t = event.get("t")

    def extend(self, events: Iterable[dict]) -> None:
        for event in events:
            self.apply(event)

    def _experiment(self, n: int) -> Experiment:
        record = self.experiments.get(n)
        if record is None:
            record = self.experiments[n] = Experiment(n)
        return record

    def _agent_text(self, text: str, exp: int | None) -> None:
        if exp != self._agent_exp and exp is not None:
            self._agent_exp = exp
            self._add_chunk(("\n" if self.agent_total else "") + f"── experiment {exp} ──\n")
        self._add_chunk(text)

    def _add_chunk(self, text: str) -> None:
        self.agent_chunks.append(text)
        self.agent_total += 1

    def _on_agent_delta(self, event: dict) -> None:
        text = str(event.get("text") or "")
        exp = event.get("exp")
        self._agent_text(text, exp if isinstance(exp, int) else None)
        if isinstance(exp, int):
            record = self._experiment(exp)
            record.reasoning = (record.reasoning + text)[-REASONING_CHARS:]
            self.current_exp = exp

    def _on_proposal(self, event: dict) -> None:
        n = event.get("exp", 0)
        record = self._experiment(n)
        record.description = str(event.get("description", ""))
        record.rationale = str(event.get("rationale", ""))
        record.diff = str(event.get("diff") or "")[:DIFF_CHARS]
        self.current_diff = record.diff
        self.current_exp = n

    def _on_proposal_failed(self, event: dict) -> None:
        n = event.get("exp", 0)
        record = self._experiment(n)
        record.status, record.error = "failed", str(event.get("error", ""))
        record.description = record.description or "(proposal failed)"
        self.last_error = record.error
        self._agent_text(f"proposal failed: {record.error}\n", n)

    def _on_exp_start(self, event: dict) -> None:
        n = event.get("exp", 0)
        record = self._experiment(n)
        record.kind = str(event.get("kind", schema.CANDIDATE))
        record.commit = str(event.get("commit", ""))
        record.description = str(event.get("description", "")) or record.description
        record.started = event.get("t")
        record.ended = None
        record.budget = float(event.get("budget") or 0.0)
        record.elapsed = 0.0
        record.status = schema.RUNNING
        record.curve = Curve()
        if record.kind == schema.CONFIRM and not record.diff:
            record.diff = self.current_diff
        record.worker = str(event.get("worker", ""))
        if record.worker:
            self.workers.add(record.worker)
        self.in_flight.pop(n, None)
        self.in_flight[n] = record.worker

    def _on_train_log(self, event: dict) -> None:
        n = event.get("exp")
        if not isinstance(n, int):
            return
        record = self._experiment(n)
        step, loss = event.get("step"), event.get("loss")
        if isinstance(step, (int, float)) and isinstance(loss, (int, float)):
            record.curve.add(float(step), float(loss))
        elapsed = event.get("elapsed")
        if isinstance(elapsed, (int, float)):
            record.elapsed = float(elapsed)

    def _on_exp_end(self, event: dict) -> None:
        n = event.get("exp", 0)
        record = self._experiment(n)
        record.kind = str(event.get("kind", record.kind))
        record.status = str(event.get("status", ""))
        record.decision = str(event.get("decision", ""))
        record.val_bpb = event.get("val_bpb")
        record.delta = event.get("delta")
        record.commit = str(event.get("commit", record.commit))
        record.description = str(event.get("description", "")) or record.description
        record.ended = event.get("t")
        record.error = str((event.get("result") or {}).get("error") or "")
        record.memory_gb = memory_gb(event.get("result"))
        paired = event.get("paired")
        record.paired = paired if isinstance(paired, dict) else {}
        confirms = event.get("confirms")
        if isinstance(confirms, int):
            record.confirms = confirms
            candidate = self.experiments.get(confirms)
            if candidate is not None:
                record.diff = record.diff or candidate.diff
                if candidate.decision == schema.PENDING_CONFIRM:
                    candidate.decision = schema.CONFIRMED if record.decision == schema.KEEP \
                        else schema.UNCONFIRMED
        self.in_flight.pop(n, None)
        if record.val_bpb is not None and record.status == "ok":
            self.val_points.append((n, record.val_bpb))
        best = self.loop.best_bpb
        if best is not None:
            self.best_line.append((n, best))
        if record.decision == schema.KEEP or (
                record.kind == schema.BASELINE and self.best_exp is None
                and record.status == schema.OK):
            self.best_exp = n

    def _on_resources(self, event: dict) -> None:
        res = self.resources
        res.samples += 1
        res.source = str(event.get("source", res.source))
        _push(res.cpu, event.get("cpu_percent"))
        _push(res.ram, event.get("memory_percent"))
        res.ram_used_gb = event.get("memory_used_gb")
        gpus = [g for g in event.get("gpus") or [] if isinstance(g, dict)]
        res.gpus = gpus
        for gpu in gpus:
            index = gpu.get("index", 0)
            history = res.gpu_util.setdefault(index, deque(maxlen=HISTORY))
            _push(history, gpu.get("util"))

    def _on_control(self, event: dict) -> None:
        cmd = event.get("cmd")
        if cmd == "pause":
            self.pause_requested = True
        elif cmd == "resume":
            self.pause_requested = False
        elif cmd == "steer":
            self.last_note = str(event.get("text", ""))
            self._agent_text(f"» steer: {self.last_note}\n", self._agent_exp)

    def _on_paused(self, event: dict) -> None:
        self.pause_requested = True

    def _on_resumed(self, event: dict) -> None:
        self.pause_requested = False

    def _on_session_end(self, event: dict) -> None:
        for n in self.in_flight:
            record = self.experiments.get(n)
            if record is not None and record.status == schema.RUNNING:
                record.status = schema.INTERRUPTED
        self.in_flight.clear()
        error = f": {event['error']}" if event.get("error") else ""
        self._agent_text(f"session ended ({event.get('reason', '')}{error})\n", None)

    # --- queries the panes use -------------------------------------------------------------

    @property
    def phase(self) -> str:
        """What the loop does now. The agent proposes the next change while an experiment
        trains, so a running experiment's phase (training, evaluating) wins over the agent's."""
        if self.loop.ended:
            return schema.PHASE_ENDED
        phase = self.loop.phase
        for record in reversed(self.running_experiments()):
            worker = self.loop.worker_phase.get(record.worker)
            if worker in (schema.PHASE_TRAINING, schema.PHASE_EVALUATING) \
                    and phase != schema.PHASE_PAUSED:
                phase = worker
                break
        if self.pause_requested and not self.loop.paused:
            return f"{phase} (pausing)"
        return phase

    @property
    def running(self) -> int | None:
        """The experiment in flight that started last (None when none is)."""
        return next(reversed(self.in_flight), None)

    def running_experiment(self) -> Experiment | None:
        return self.experiments.get(self.running) if self.running is not None else None

    def running_experiments(self) -> list[Experiment]:
        """Every experiment in flight, oldest first (one per busy worker)."""
        return [self.experiments[n] for n in self.in_flight if n in self.experiments]

    @property
    def several_workers(self) -> bool:
        return len(self.workers) > 1

    def best_experiment(self) -> Experiment | None:
        return self.experiments.get(self.best_exp) if self.best_exp is not None else None

    def progress(self, record: Experiment | None = None) -> tuple[float, float]:
        """(seconds into an experiment's budget, the budget), from event times; by default the
        experiment that started last."""
        record = record or self.running_experiment()
        if record is None or record.started is None:
            return 0.0, 0.0
        elapsed = max(record.elapsed, (self.loop.updated or record.started) - record.started)
        return elapsed, record.budget


def _push(history: deque, value: object) -> None:
    if isinstance(value, (int, float)):
        history.append(float(value))


_HANDLERS = {
    schema.AGENT_DELTA: DashboardState._on_agent_delta,
    schema.PROPOSAL: DashboardState._on_proposal,
    schema.PROPOSAL_FAILED: DashboardState._on_proposal_failed,
    schema.EXP_START: DashboardState._on_exp_start,
    schema.TRAIN_LOG: DashboardState._on_train_log,
    schema.EXP_END: DashboardState._on_exp_end,
    schema.RESOURCES: DashboardState._on_resources,
    schema.CONTROL: DashboardState._on_control,
    schema.PAUSED: DashboardState._on_paused,
    schema.RESUMED: DashboardState._on_resumed,
    schema.SESSION_END: DashboardState._on_session_end,
}


def fold(events: Iterable[dict]) -> DashboardState:
    """The state after these events: replay rebuilds any moment by folding a prefix."""
    state = DashboardState()
    state.extend(events)
    return state
