"""What a finished experiment leaves behind for the agents: folded from the log by `state`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ratchet.engine.protocol import schema

# The parts of an exp_end's `result` an agent reads (the diagnostics table, view_experiment).
RESULT_KEYS = ("error", "steps", "tokens", "params", "training_seconds", "trainer_seconds",
               "budget_seconds", "peak_memory_mb", "mfu", "curve", "tail")


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
    margin: float | None = None  # what it had to beat the best by (the keep rule's noise margin)
    kind: str = schema.CANDIDATE  # candidate | confirm
    diff: str = ""  # the change as a unified diff against the best it was based on
    result: dict = field(default_factory=dict)  # exp_end's result, RESULT_KEYS only
    commit: str = ""  # the commit it ran (what git may still show of its files)
    session: str = ""  # an earlier session's id; "" for the session's own experiments

    @property
    def label(self) -> str:
        """How agents name it: its number, or `session:number` for an earlier session's."""
        return f"{self.session}:{self.n}" if self.session else str(self.n)


@dataclass
class JournalNote:
    """A note the agent wrote in its research journal while proposing experiment `exp`."""

    exp: int
    text: str
    t: float = 0.0
    session: str = ""  # an earlier session's id; "" for the session's own notes


@dataclass
class StudyNote:
    """What a study (`ratchet validate` or `ratchet ablate`) of an earlier session concluded:
    its latest reading of each group (validate: a budget; ablate: a kept change, and the
    pruned stack), as its study_result events record them, less their per-seed differences."""

    session: str  # the study's own session
    study: str  # validate | ablate
    of: str  # the studied session
    readings: list[dict] = field(default_factory=list)
    complete: bool = False  # it ran every planned run


def memory_gb(result: object) -> float | None:
    """An exp_end result's peak memory in GB, autoresearch's `memory_gb` (1024 MB a GB); None
    where the run reported none (a crash, a train.py that prints no peak_vram_mb)."""
    value = result.get("peak_memory_mb") if isinstance(result, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return value / 1024
    return None


def memory_text(gb: float | None, missing: str = "-") -> str:
    """Peak memory as every table shows it: '44.0G', '0.3G', '141G' (five characters at most)."""
    if gb is None:
        return missing
    return f"{gb:.0f}G" if gb >= 99.95 else f"{gb:.1f}G"
