"""The loop's state as a pure function of the event sequence.

The engine resumes from it after a crash, and `ratchet status` prints it, so both always agree
with the log, the single source of truth.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from ratchet.engine.protocol import schema
from ratchet.engine.protocol.history import RESULT_KEYS, HistoryEntry, JournalNote


@dataclass
class LoopState:
    session: str = ""
    tag: str = ""
    branch: str = ""
    base_commit: str = ""
    agent: str = ""
    pid: int = 0
    config: dict = field(default_factory=dict)
    baseline: list[float] = field(default_factory=list)  # val_bpb of the ok baseline runs
    baseline_runs: int = 0  # baseline runs finished, ok or failed (not interrupted)
    best_commit: str = ""
    best_bpb: float | None = None
    best_runs: dict[int, float] = field(default_factory=dict)  # the best's val_bpb by seed
    paired: list[list[float]] = field(default_factory=list)  # each judged candidate's diffs
    # early stopping: the best's and the baseline's run on each seed ({"profile", "val"}: what
    # candidates on that seed are compared with), and the finished runs' (gaps by checkpoint,
    # final difference, whether a schedule change: None before that was recorded) that calibrate
    # the thresholds
    best_profiles: dict[int, dict] = field(default_factory=dict)
    baseline_profiles: dict[int, dict] = field(default_factory=dict)
    early_samples: list[tuple[dict, float, bool | None]] = field(default_factory=list)
    stopped_early: int = 0  # runs stopped early
    saved_seconds: float = 0.0  # the budget they did not spend
    history: list[HistoryEntry] = field(default_factory=list)
    journal: list[JournalNote] = field(default_factory=list)  # the agent's notes, oldest first
    diffs: dict[int, str] = field(default_factory=dict)  # exp -> its proposal's latest diff
    best_result: dict = field(default_factory=dict)  # the best run's result (RESULT_KEYS)
    last_exp: int = 0
    proposals: int = 0  # proposals tried (they count toward --max-experiments)
    kept: int = 0
    unsandboxed: int = 0  # runs whose train.py ran outside the sandbox (see ran_unsandboxed)
    running: dict[int, dict] = field(default_factory=dict)  # exp -> exp_start with no exp_end
    # candidate exp -> its exp_end (decision pending_confirm) awaiting a confirmation run
    pending_confirms: dict[int, dict] = field(default_factory=dict)
    # candidate exp -> its further runs so far (decision another_run), rows held with its own
    pending_runs: dict[int, list[dict]] = field(default_factory=dict)
    queued: dict[int, dict] = field(default_factory=dict)  # exp -> proposal not started yet
    worker_phase: dict[str, str] = field(default_factory=dict)  # worker -> its latest phase
    last_crash_tail: str = ""
    phase: str = schema.PHASE_STARTING
    paused: bool = False
    ended: bool = False
    end_reason: str = ""
    cost_usd: float = 0.0  # the agent's spending: the sum of every agent_usage's cost_usd
    tokens: dict[str, int] = field(default_factory=dict)  # agent_usage token counts, summed
    started: float = 0.0
    updated: float = 0.0

    @property
    def baseline_bpb(self) -> float | None:
        return statistics.mean(self.baseline) if self.baseline else None


def fold(events: Iterable[dict]) -> LoopState:
    state = LoopState()
    for event in events:
        apply(state, event)
    return state


def apply(state: LoopState, event: dict) -> None:
    kind = event.get("type")
    state.updated = event.get("t", state.updated)
    if kind == schema.SESSION_START:
        if not state.session:
            state.started = event.get("t", 0.0)
            state.base_commit = event.get("base_commit", "")
            state.best_commit = state.best_commit or state.base_commit
        state.session = event.get("session", state.session)
        state.tag = event.get("tag", state.tag)
        state.branch = event.get("branch", state.branch)
        state.agent = event.get("agent", state.agent)
        state.pid = event.get("pid", 0)
        state.config = event.get("config", state.config)
        restart(state)
    elif kind in (schema.PROPOSAL, schema.PROPOSAL_FAILED):
        state.proposals += 1
        state.last_exp = max(state.last_exp, event.get("exp", 0))
        if kind == schema.PROPOSAL:
            state.queued[event.get("exp", 0)] = event
            state.diffs[event.get("exp", 0)] = event.get("diff") or ""
    elif kind == schema.PROPOSAL_REBASED:
        state.diffs[event.get("exp", 0)] = event.get("diff") or ""
        if event.get("exp") in state.queued:
            state.queued[event["exp"]] = {**state.queued[event["exp"]], **{
                k: event[k] for k in ("commit", "based_on", "diff") if k in event}}
    elif kind == schema.JOURNAL and isinstance(event.get("text"), str):
        state.journal.append(JournalNote(event.get("exp", 0), event["text"], event.get("t", 0.0)))
    elif kind == schema.PROPOSAL_DROPPED:
        state.queued.pop(event.get("exp", 0), None)
        state.pending_runs.pop(event.get("exp", 0), None)
        if state.pending_confirms.pop(event.get("exp", 0), None) is not None:
            _append_history(state, event, schema.DISCARD, None, None)
    elif kind == schema.EXP_START:
        state.running[event.get("exp", 0)] = event
        state.queued.pop(event.get("exp", 0), None)
        state.last_exp = max(state.last_exp, event.get("exp", 0))
    elif kind == schema.EXP_END:
        _apply_end(state, event)
    elif kind == schema.PHASE:
        state.phase = event.get("phase", state.phase)
        if event.get("worker") is not None:
            state.worker_phase[str(event["worker"])] = state.phase
    elif kind == schema.PAUSED:
        state.paused, state.phase = True, schema.PHASE_PAUSED
    elif kind == schema.RESUMED:
        state.paused = False
    elif kind == schema.AGENT_USAGE:
        _apply_usage(state, event)
    elif kind == schema.SESSION_END:
        state.ended, state.end_reason = True, event.get("reason", "")
        state.phase = schema.PHASE_ENDED
        state.running.clear()
        state.paused = False  # a stopped session is over, not paused


def restart(state: LoopState) -> None:
    """An engine (re)starts the session unpaused and in no phase yet, whatever the one before
    it died in."""
    state.ended, state.paused, state.phase = False, False, schema.PHASE_STARTING
    state.worker_phase.clear()


USAGE_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _apply_usage(state: LoopState, event: dict) -> None:
    """Sums per-proposal figures, so the total survives an engine restart."""
    cost = event.get("cost_usd")
    if isinstance(cost, (int, float)):
        state.cost_usd += cost
    for name in USAGE_TOKENS:
        value = event.get(name)
        if isinstance(value, int):
            state.tokens[name] = state.tokens.get(name, 0) + value


def ran_unsandboxed(event: dict) -> bool:
    """An exp_end whose train.py ran (it finished ok or printed something) without bubblewrap,
    measured by the harness. Imports carry no `sandboxed`; compat runs report their own metric,
    which a sandbox could not vouch for, and say so as `metric_source: self_reported`."""
    result = _dict(event.get("result"))
    return (result.get("sandboxed") is False
            and result.get("metric_source", "harness") == "harness"
            and (event.get("status") == schema.OK or bool(result.get("output_bytes"))))


def _apply_end(state: LoopState, event: dict) -> None:
    state.running.pop(event.get("exp", 0), None)
    state.unsandboxed += ran_unsandboxed(event)
    state.last_exp = max(state.last_exp, event.get("exp", 0))
    decision = event.get("decision", "")
    val = event.get("val_bpb")
    if decision == schema.RETRY:  # a lost worker: the same job runs again under a new number
        return
    if event.get("status") not in (schema.OK, schema.STOPPED_EARLY, None):
        tail = _dict(event.get("result")).get("tail", "")
        state.last_crash_tail = tail if isinstance(tail, str) else ""
    _fold_early(state, event)
    if event.get("kind") == schema.BASELINE:
        if event.get("status") != schema.INTERRUPTED:  # an interrupted baseline run is run again
            state.baseline_runs += 1
        if val is not None and event.get("status") == "ok":
            state.baseline.append(val)
            state.best_bpb = statistics.mean(state.baseline)
            seed = _dict(event.get("result")).get("seed")
            if isinstance(seed, int):
                state.best_runs[seed] = val
                profile = _dict(event.get("result")).get("profile")
                if isinstance(profile, dict):
                    state.best_profiles[seed] = {"profile": profile, "val": val}
                    state.baseline_profiles[seed] = {"profile": profile, "val": val}
            state.best_result = state.best_result or _result(event)
        return
    if decision == schema.PENDING_CONFIRM:
        state.pending_confirms[event.get("exp", 0)] = event
        return
    if decision == schema.ANOTHER_RUN:  # the paired rule runs the candidate on one more seed
        state.pending_runs.setdefault(event.get("confirms", 0), []).append(event)
        return
    if decision == schema.CONFIRM_AGAIN:  # the best moved during the confirmation: rebased, rerun
        state.pending_runs.pop(event.get("confirms", 0), None)  # its runs measured other code
        return
    own = [event]  # the candidate's runs: its first, its further ones, this one
    if event.get("kind") == schema.CONFIRM:
        first = state.pending_confirms.pop(event.get("confirms", 0), None)
        own = [first, *state.pending_runs.pop(event.get("confirms", 0), []), event]
    paired = event.get("paired")
    if isinstance(paired, dict) and isinstance(paired.get("diffs"), list):
        state.paired.append([d for d in paired["diffs"] if isinstance(d, (int, float))])
    if decision == schema.KEEP:
        state.kept += 1
        state.best_commit = event.get("commit", state.best_commit)
        state.best_bpb = event.get("new_best", val)
        seeds = paired.get("seeds") if isinstance(paired, dict) else None
        if isinstance(seeds, dict):  # the paired rule measured the new best on every seed
            state.best_runs = {int(k): v for k, v in seeds.items()
                               if str(k).lstrip("-").isdigit() and isinstance(v, (int, float))}
            state.best_profiles = _profiles(own, state.best_runs)
        state.best_result = _result(event)
    if event.get("kind") in (schema.CANDIDATE, schema.CONFIRM):
        _append_history(state, event, decision, val, event.get("delta"))


def _fold_early(state: LoopState, event: dict) -> None:
    """What early stopping recorded on a run: a stopped one's savings, a finished one's gaps."""
    early, result = event.get("early_stop"), _dict(event.get("result"))
    if not isinstance(early, dict):
        return
    if event.get("status") == schema.STOPPED_EARLY:
        fraction, budget = early.get("fraction"), result.get("budget_seconds")
        state.stopped_early += 1
        if isinstance(fraction, (int, float)) and isinstance(budget, (int, float)):
            state.saved_seconds += max(0.0, budget * (1 - fraction))
    elif event.get("status") == schema.OK and isinstance(early.get("gaps"), dict) \
            and isinstance(early.get("final"), (int, float)):
        kind = early.get("schedule")
        state.early_samples.append((early["gaps"], early["final"],
                                    kind if isinstance(kind, bool) else None))


def _profiles(runs: list[dict | None], references: dict[int, float]) -> dict[int, dict]:
    """A kept candidate's runs as the new best's on their seeds: each run's profile, with the
    seed's reference val_bpb."""
    out = {}
    for run in runs:
        result = _dict((run or {}).get("result"))
        seed, profile = result.get("seed"), result.get("profile")
        if isinstance(seed, int) and isinstance(profile, dict) and seed in references:
            out[seed] = {"profile": profile, "val": references[seed]}
    return out


def _append_history(state: LoopState, event: dict, decision: str, val: float | None,
                    delta: float | None) -> None:
    n = event.get("exp", 0)
    # the history holds it from now on (a confirm run takes its candidate's)
    diff = state.diffs.pop(n, "") or state.diffs.pop(event.get("confirms", -1), "")
    state.history.append(HistoryEntry(
        n=n, description=event.get("description", ""),
        status=event.get("status", schema.OK), decision=decision, val_bpb=val, delta=delta,
        changes=event.get("changes") or {}, margin=event.get("margin"),
        kind=event.get("kind") or schema.CANDIDATE, diff=diff, result=_result(event),
        commit=event["commit"] if isinstance(event.get("commit"), str) else ""))


def _dict(value: object) -> dict:
    """A field that should hold an object; {} where a hand-edited or foreign line has other."""
    return value if isinstance(value, dict) else {}


def _result(event: dict) -> dict:
    result = event.get("result")
    return {k: result[k] for k in RESULT_KEYS if k in result} if isinstance(result, dict) else {}
