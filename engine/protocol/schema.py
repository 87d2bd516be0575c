"""Every event type of the log, and its fields, defined once (docs/events.md explains them).

Writers and readers name event types by these constants, never by string literals. `EVENTS` maps
each type to its `EventSpec`: what the event says, its fields (name -> short meaning) and the
fields every writer includes (`required`; their value may still be null where it was not known).
Readers must ignore types and fields they do not know, so a field missing from a spec is not an
error, and `tests/test_event_schema.py` keeps this module, docs/events.md and the recorded logs in
agreement. Pure: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fields of every event (`exp` only where the event belongs to one experiment).
COMMON = {
    "t": "Unix time in seconds (a float)",
    "type": "the event type, one of EVENTS",
    "exp": "the experiment number (an integer), where the event belongs to one",
}

# The decisions an exp_end records (its `decision` field); the keep rules (engine/loop/rules/)
# take them.
BASELINE = "baseline"
KEEP = "keep"
DISCARD = "discard"
NEAR_MISS = "near_miss"
CRASH = "crash"
PENDING_CONFIRM = "pending_confirm"  # a winner waiting for its confirmation run
CONFIRM_AGAIN = "confirm_again"  # the best moved during the confirmation: rebase and rerun
RETRY = "retry"  # the worker was lost: the same job runs again under a new number
ANOTHER_RUN = "another_run"  # the paired rule's close call (or unconfirmed win): one more seed
# the run was cut short as the engine stopped, or its keep could not move the branch: no verdict
INTERRUPTED = "interrupted"
MEASURED = "measured"  # a study's run (validate, ablate): measured, judged with its group
DECISIONS = (BASELINE, KEEP, DISCARD, NEAR_MISS, CRASH, PENDING_CONFIRM, CONFIRM_AGAIN, RETRY,
             ANOTHER_RUN, INTERRUPTED, MEASURED)

# Job kinds: what an experiment is for (exp_start's and exp_end's `kind`). A baseline run is
# also decided BASELINE: the same word.
CANDIDATE = "candidate"  # a proposal's first run
CONFIRM = "confirm"  # a further run of a candidate: a confirmation, or one more seed
KINDS = (BASELINE, CANDIDATE, CONFIRM)
# A study's runs (`ratchet validate`, `ratchet ablate`): sessions of their own that measure
# commits of another session (docs/validate-and-ablate.md).
STUDY_BASE = "study_base"  # validate: the studied session's base commit
STUDY_BEST = "study_best"  # validate and ablate: its best commit
STUDY_ABLATED = "study_ablated"  # ablate: the best without one kept change
STUDY_PRUNED = "study_pruned"  # ablate --prune: the best without every change that did not help
STUDY_KINDS = (STUDY_BASE, STUDY_BEST, STUDY_ABLATED, STUDY_PRUNED)

# The studies (session_start's and study_result's `study`).
STUDY_VALIDATE = "validate"
STUDY_ABLATE = "ablate"
STUDIES = (STUDY_VALIDATE, STUDY_ABLATE)

# What validate says of the effect at a budget (study_result's `verdict`); study_stats defines
# them.
HOLDS = "holds"
SHRINKS = "shrinks"
VANISHES = "vanishes"
REVERSES = "reverses"
VERDICTS = (HOLDS, SHRINKS, VANISHES, REVERSES)

# What ablate says of a kept change in the final stack (study_result's `flag`).
HELPS = "helps"
WITHIN_NOISE = "within_noise"
HARMFUL = "harmful"
NOT_APPLIED = "not_applied"  # its reverse no longer applies onto the best (`why` says so)
FLAGS = (HELPS, WITHIN_NOISE, HARMFUL, NOT_APPLIED)

# Run statuses: how a run ended (exp_end's `status`). INTERRUPTED is also a decision.
OK = "ok"
CRASHED = "crash"  # the decision of a failed run is CRASH: the same word
TIMEOUT = "timeout"  # the evaluation ran out of time
OVER_BUDGET = "over_budget"  # the model was handed off after the budget
KILLED = "killed"  # stopped by the person (`k`)
OVER_LIMIT = "over_limit"  # past its memory or process limit: killed
LOST = "lost"  # the worker died under it
STOPPED_EARLY = "stopped_early"  # trailed the best on its seed by too much: a discard
STATUSES = (OK, CRASHED, TIMEOUT, OVER_BUDGET, OVER_LIMIT, KILLED, INTERRUPTED, LOST,
            STOPPED_EARLY)

# Why a session ended (session_end's `reason`).
STOP_MAX_EXPERIMENTS = "max_experiments"
STOP_STOPPED = "stopped"  # the person stopped it
STOP_SIGNAL = "signal"  # SIGTERM or SIGINT
STOP_ERROR = "error"
STOP_IMPORTED = "imported"  # written by `ratchet import`
STOP_COMPLETE = "complete"  # a study ran every run it planned
STOP_REASONS = (STOP_MAX_EXPERIMENTS, STOP_STOPPED, STOP_SIGNAL, STOP_ERROR, STOP_IMPORTED,
                STOP_COMPLETE)

# What the engine or a worker does (phase's `phase`, and the folded state's).
PHASE_STARTING = "starting"
PHASE_PROPOSING = "proposing"
PHASE_TRAINING = "training"
PHASE_EVALUATING = "evaluating"
PHASE_PAUSED = "paused"
PHASE_ENDED = "ended"
PHASES = (PHASE_STARTING, PHASE_PROPOSING, PHASE_TRAINING, PHASE_EVALUATING, PHASE_PAUSED,
          PHASE_ENDED)

# Where a candidate was when it was rebased or dropped (the `stage` field).
STAGE_QUEUED = "queued"  # before its first run
STAGE_CONFIRM = "confirm"  # a winner, before a further run
STAGES = (STAGE_QUEUED, STAGE_CONFIRM)

# What the views call an experiment besides the log's own words: one under way, a proposal that
# failed (proposal_failed), and a winner's first run once its last run decided (kept, or not).
RUNNING = "running"
FAILED = "failed"
CONFIRMED = "confirmed"
UNCONFIRMED = "unconfirmed"
SHOWN = (RUNNING, FAILED, CONFIRMED, UNCONFIRMED)

SESSION_START = "session_start"
AGENT_DELTA = "agent_delta"
PROPOSAL = "proposal"
PROPOSAL_REBASED = "proposal_rebased"
PROPOSAL_DROPPED = "proposal_dropped"
PROPOSAL_FAILED = "proposal_failed"
AGENT_USAGE = "agent_usage"
AGENT_RETRY = "agent_retry"
AGENT_GAVE_UP = "agent_gave_up"
JOURNAL = "journal"
EXP_START = "exp_start"
TRAIN_LOG = "train_log"
EXP_END = "exp_end"
RESOURCES = "resources"
CONTROL = "control"
PAUSED = "paused"
RESUMED = "resumed"
PHASE = "phase"
SESSION_END = "session_end"
STUDY_RESULT = "study_result"

# The three streams that make up almost all of a long log; everything else is the loop's own.
STREAMS = (TRAIN_LOG, AGENT_DELTA, RESOURCES)


@dataclass(frozen=True)
class EventSpec:
    type: str
    doc: str
    fields: dict[str, str]  # name -> short meaning, besides `t` and `type`
    required: tuple[str, ...]  # the fields every writer includes


def _spec(type: str, doc: str, required: dict[str, str] | None = None,
          optional: dict[str, str] | None = None) -> EventSpec:
    required = required or {}
    return EventSpec(type, doc, {**required, **(optional or {})}, tuple(required))


_EXP = {"exp": COMMON["exp"]}
_WORKER = {"worker": "the worker that runs the experiment: a device number as text, or ray-<slot>"}

EVENTS: dict[str, EventSpec] = {spec.type: spec for spec in (
    _spec(SESSION_START, "an engine started (or resumed) the session", {
        "session": "the session id", "tag": "the session's tag", "branch": "the git branch",
        "base_commit": "the commit the session started from",
        "config": "the ratchet.toml settings as a dict",
        "hardware": "{cpu_count, memory_gb, gpus: [names]}", "agent": "the agent's name",
        "resumed": "true on --resume", "pid": "the engine's process id"}, {
        "options": "the run's settings {budget, max_experiments, gpus, backend, address}: "
                   "a resume runs with them",
        "compat": "'autoresearch' when driving an autoresearch checkout",
        "imported": "true for a session written by `ratchet import`",
        "source": "imports: the results.tsv path",
        "timing": "imports: commits | interpolated | none (how `t` was found)",
        "columns": "imports: the results.tsv header",
        "study": "a study's session: validate | ablate",
        "of": "studies: the session studied",
        "best_commit": "studies: the studied session's best commit",
        "seeds": "studies: the seeds every commit runs on",
        "multiples": "validate: the budgets, as multiples of the session's budget",
        "changes": "ablate: the kept changes [{exp, commit, description, ablated, why}]",
        "prune": "ablate: true with --prune"}),
    _spec(AGENT_DELTA, "a batch of the agent's streamed reasoning (concatenate in order)",
          {**_EXP, "text": "the text"}),
    _spec(PROPOSAL, "the agent's change, committed as a candidate", {
        **_EXP, "description": "one line", "rationale": "why, in the agent's words",
        "diff": "unified diff against based_on (null when git no longer has it)",
        "files": "the names of the files changed", "based_on": "the best commit it starts from",
        "changes": "agent-specific summary, e.g. {LEARNING_RATE: 0.02}",
        "steer": "the person's notes handed to the agent with it"}, {
        "commit": "the candidate's commit: a child of based_on, on no branch until kept",
        "tried_before": "the earlier run (session:exp) this change repeats, as the agent "
                        "recognised it"}),
    _spec(PROPOSAL_REBASED, "a candidate moved onto a newer best", {
        **_EXP, "commit": "the new candidate commit", "based_on": "the best it now sits on",
        "previous_commit": "the commit it replaces", "diff": "against the new base",
        "stage": "queued (before its first run) | confirm (a winner, before confirming)"}),
    _spec(PROPOSAL_DROPPED, "a candidate that will not run (again)", {
        **_EXP, "reason": "why it was dropped", "description": "the proposal's description",
        "changes": "the proposal's changes", "stage": "queued | confirm"}),
    _spec(PROPOSAL_FAILED, "the agent produced no usable proposal", {
        **_EXP, "error": "what went wrong"}, {
        "paused": "true when the agent needs the person and the session paused"}),
    _spec(AGENT_USAGE, "the API usage of one Claude proposal (claude-code: of one run of its CLI, "
          "as it reports it), failed ones included", {
        **_EXP, "model": "the model", "input_tokens": "summed over the proposal's requests",
        "output_tokens": "summed", "cache_read_tokens": "summed",
        "cache_write_tokens": "summed", "requests": "API requests made",
        "cost_usd": "at the [agent] prices",
        "total_cost_usd": "this engine process's running total"}),
    _spec(AGENT_RETRY, "a failed API request that will be tried again", {
        **_EXP, "attempt": "1 for the first retry", "error": "e.g. 429 rate_limit_error",
        "message": "one line, never the API key", "wait_seconds": "before the next attempt",
        "discarded_partial": "true when streamed text was thrown away",
        "discarded_chars": "how much of it"}),
    _spec(JOURNAL, "a note in the agent's research journal (hypotheses, findings, next steps); "
          "carried into its later proposals", {**_EXP, "text": "the note"}),
    _spec(AGENT_GAVE_UP, "proposals failed 10 times in a row; the session ends with an error",
          {"error": "why"}),
    _spec(EXP_START, "an experiment starts training", {
        **_EXP, "kind": " | ".join(KINDS + STUDY_KINDS), "commit": "the experiment's commit",
        "seed": "the training seed", "budget": "the training budget in seconds",
        "description": "what it tries"}, {
        **_WORKER, "retry_of": "on a retry: the exp whose worker was lost",
        "multiple": "validate: the budget as a multiple of the session's",
        "ablates": "ablate: the exp of the kept change this run leaves out"}),
    _spec(TRAIN_LOG, "one logged training step", {**_EXP, "step": "the training step"}, {
        "loss": "the training loss", "lr": "the learning rate", "tok_s": "tokens per second",
        "elapsed": "seconds since training began", **_WORKER}),
    _spec(EXP_END, "an experiment's result and the loop's decision", {
        **_EXP, "kind": " | ".join(KINDS + STUDY_KINDS),
        "status": " | ".join(STATUSES),
        "decision": " | ".join(DECISIONS),
        "val_bpb": "the measured metric (null on a crash)",
        "best_before": "the best val_bpb before it", "delta": "val_bpb minus best_before",
        "margin": "what a change had to beat the best by", "commit": "the experiment's commit",
        "description": "what it tried", "changes": "the proposal's changes",
        "result": "metric_source, timings, memory, tokens, params, steps, mfu, error, tail, "
                  "profile, "
                  "curve ([[elapsed, step, loss], ...] thinned to about 24 points)"}, {
        **_WORKER, "based_on": "candidate runs: the best the candidate sits on",
        "confirms": "confirm runs: the candidate's exp",
        "new_best": "confirm runs kept: the best from now on",
        "retried_as": "decision retry: the exp that runs it again",
        "early_stop": "runs compared with the best's run on their seed: on status "
                      "stopped_early the checkpoint (fraction), the gap (training loss behind "
                      "the best there) and the threshold; on a finished run its gaps at each "
                      "checkpoint and final (val_bpb minus the best's on that seed)",
        "paired": "the paired rule's reading of the candidate's runs so far: effect (mean of "
                  "candidate - best on the same seeds), se, sigma (noise of one paired "
                  "difference), runs, why, diffs; on a keep also seeds (seed -> the new "
                  "best's reference val_bpb)",
        "row": "imports: the results.tsv row by column name",
        "multiple": "validate: the budget as a multiple of the session's",
        "ablates": "ablate: the exp of the kept change this run leaves out"}),
    _spec(RESOURCES, "a sample of the machine's load", {
        "cpu_percent": "0-100", "memory_percent": "0-100",
        "memory_used_gb": "GiB: total minus available",
        "gpus": "[{index, name, util, mem_used_mb, mem_total_mb, temp_c, power_w}]",
        "source": "nvml | psutil"}),
    _spec(CONTROL, "a command as received from a dashboard or `ratchet ctl`",
          {"cmd": "pause | resume | steer | kill | stop"}, {"text": "steer: the note"}),
    _spec(PAUSED, "the engine paused (maybe later than the control event)"),
    _spec(RESUMED, "the engine resumed"),
    _spec(PHASE, "what the engine (or one worker) does from now on",
          {"phase": "proposing | training | evaluating | paused | ..."},
          {**_EXP, **_WORKER}),
    _spec(SESSION_END, "the session is over", {
        "reason": " | ".join(STOP_REASONS),
        "experiments": "the last experiment number", "kept": "changes kept",
        "best_bpb": "the best val_bpb", "baseline_bpb": "the baseline's mean val_bpb",
        "best_commit": "the best commit"}, {"error": "with reason error: what went wrong"}),
    _spec(STUDY_RESULT, "a study's reading of one group of its runs, once they have all run", {
        "study": " | ".join(STUDIES),
        "effect": "the mean paired difference (val_bpb, the same seeds): validate best - base; "
                  "ablate best - ablated (the change's contribution); pruned - best",
        "se": "its standard error (null under 2 pairs)", "runs": "pairs measured",
        "diffs": "the paired differences, by seed order"}, {
        "multiple": "validate: the budget multiple", "budget": "validate: seconds",
        "verdict": "validate: " + " | ".join(VERDICTS),
        "trend": "validate: {slope, se, budgets}: the effect's least-squares slope per "
                 "doubling of the budget, over the budgets so far",
        "change": "ablate: the kept change's exp", "commit": "ablate: its commit",
        "description": "ablate: its description", "flag": "ablate: " + " | ".join(FLAGS),
        "why": "ablate: why its reverse does not apply, or why the pruned stack was not kept",
        "pruned": "ablate --prune: the exps of the changes left out",
        "no_worse": "ablate --prune: whether the pruned stack is no worse than the best",
        "branch": "ablate --prune: the branch it was committed on, or null"}),
)}


def missing_fields(event: dict) -> list[str]:
    """The required fields of the event's type that it lacks ([] for an unknown type)."""
    spec = EVENTS.get(event.get("type", ""))
    return [name for name in spec.required if name not in event] if spec else []
