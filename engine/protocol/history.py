"""What a finished experiment leaves behind for the agents: folded from the log by `state`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HistoryEntry:
    """One finished experiment, as agents see it."""

    n: int
    description: str
    status: str  # ok | crash | timeout | killed | interrupted
    decision: str  # baseline | keep | discard | near_miss | crash
    val_bpb: float | None
    delta: float | None  # val_bpb minus the best before it (negative is better)
    changes: dict[str, object] = field(default_factory=dict)  # agent-specific, e.g. {"LR": 0.02}
