"""What one experiment came to: the record every runner fills in and the loop decides on.

Its own module so that the runners below the experiment (supervision, evaluation, compat) fill
it in without importing the experiment that uses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ratchet.engine.protocol import schema


@dataclass
class Result:
    status: str = schema.CRASHED
    error: str = ""
    val_bpb: float | None = None
    # measured by the engine: the trainer's start (or go) to the hand-off of its model
    trainer_seconds: float | None = None
    trainer_cpu_seconds: float | None = None  # and its tree's CPU time, on the CPU clock
    clock: str = "wall"  # what the budget counted: wall or cpu (cpu_clock)
    # reported by train.py through the harness's summary: informational, never trusted
    training_seconds: float = 0.0
    total_seconds: float = 0.0
    startup_seconds: float = 0.0
    compile_seconds: float = 0.0
    export_seconds: float = 0.0
    eval_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    tokens: int = 0
    params: int = 0
    steps: int = 0
    mfu: float | None = None
    seed: int = 0
    budget_seconds: float = 0.0
    device: str = ""
    device_name: str = ""
    sandboxed: bool = False
    output_bytes: int = 0
    tail: str = ""
    metric_source: str = "harness"  # or "self_reported": read from train.py's own output
    reported: dict = field(default_factory=dict)  # train.py's printed summary (compat mode)
    train_log: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        del data["train_log"]  # kept in train_log.jsonl beside result.json
        return data
