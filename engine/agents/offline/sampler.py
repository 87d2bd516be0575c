"""The Optuna TPE study and how its suggestion becomes one single-constant change.

TPE suggests a whole point; only one constant of it is taken: the one that moves furthest from
the current best (normalised units), weighted by a prior (the learning rate matters most), by how
much changing it has improved val_bpb before (a knob that paid off is revisited; one whose
changes only lost is not pushed for that) and by how often it has been tried already (so the
rest get their turn).
"""

from __future__ import annotations

import math
from collections import Counter

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ratchet.engine.agents.base import AgentError, Emit
from ratchet.engine.agents.offline.constants import Number, format_value
from ratchet.engine.agents.offline.moves import Moves
from ratchet.engine.agents.offline.ranges import as_type, unit
from ratchet.engine.protocol import schema

STARTUP_TRIALS = 4  # completed trials before TPE models the outcomes (random sampling until then)
ASKS = 4  # TPE points asked per proposal at most, when sampled values are not usable

# Prior weight per constant: what matters most in small-transformer training gets looked at first.
PRIORS = {
    "LEARNING_RATE": 3.0,
    "N_LAYER": 1.5,
    "N_EMBD": 1.5,
    "WARMUP_FRAC": 1.5,
    "BATCH_SIZE": 1.3,
    "WEIGHT_DECAY": 1.3,
    "MIN_LR_FRAC": 1.2,
}


def create_study(seed: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS),
    )


def completed(study: optuna.Study) -> list[FrozenTrial]:
    # deepcopy=False: copying every trial on each look costs more than the sampling itself
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def suggest(study: optuna.Study, dists: dict[str, BaseDistribution]) -> dict[str, float]:
    """One TPE point; the asked trial is told FAIL so it never counts as an observation."""
    trial = study.ask(dists)
    study.tell(trial, state=TrialState.FAIL)
    return dict(trial.params)


def pick(study: optuna.Study, moves: Moves, names: list[str], tries: Counter[str],
         deltas: dict[str, list[float]], emit: Emit) -> tuple[str, Number, str]:
    """(constant, value, rationale) of the best-scoring usable change TPE points at."""
    config = moves.config
    dists = {name: moves.ranges[name] for name in names}
    first = suggest(study, dists)
    values: dict[str, Number] = {}
    pending = dict(dists)
    # a sampled value can be unusable (already tried, too small a step): ask TPE again for
    # those constants before settling for the usable value nearest to its first suggestion
    for attempt in range(ASKS):
        suggestion = first if attempt == 0 else suggest(study, pending)
        for name in list(pending):
            value = as_type(suggestion[name], pending[name])
            if moves.usable(name, value):
                values[name] = value
                del pending[name]
        if not pending:
            break
    for name in pending:
        value = moves.candidate(name, first[name])
        if value is not None:
            values[name] = value
    # only gains count: a change that lost says where not to go, which TPE already learns
    gain = {name: max((-d for d in found if d < 0), default=0.0)
            for name, found in deltas.items()}
    top_effect = max(gain.values(), default=0.0)
    scored: list[tuple[float, str, Number]] = []
    for name in names:
        if name not in values:
            continue
        value, dist = values[name], dists[name]
        distance = min(1.0, abs(unit(dist, float(value)) - unit(dist, float(config[name]))))
        sensitivity = gain.get(name, 0.0) / top_effect if top_effect else 0.0
        weight = PRIORS.get(name, 1.0) * (1.0 + 2.0 * sensitivity) / (1.0 + tries[name])
        scored.append((weight * (0.5 + distance), name, value))
    if not scored:
        raise AgentError("no untried single-constant change is left from the current best")
    scored.sort(key=lambda item: -item[0])  # stable: ties keep file order
    emit("TPE suggests, by score: " + ", ".join(
        f"{name} {format_value(config[name])}->{format_value(value)} ({score:.2f})"
        for score, name, value in scored[:4]) + ".\n")
    _, name, value = scored[0]
    return name, value, reason(study, name, config[name], value, deltas.get(name, []))


def reason(study: optuna.Study, name: str, current: Number, value: Number,
           deltas: list[float]) -> str:
    """One line on why: what the study's results say about this constant, true to them."""
    done = [t for t in completed(study) if name in t.params]
    ok = [t for t in done if t.user_attrs.get("status") == schema.OK]
    way = "higher" if value > current else "lower"
    moved = "; its changes so far moved val_bpb by " + ", ".join(
        f"{d:+.3f}" for d in deltas[-3:]) if deltas else ""
    if len({t.params[name] for t in done}) < 2 and not deltas:
        return f"{name} has not been varied yet; TPE samples a {way} value to explore it"
    if len({t.params[name] for t in ok}) < 2:
        failed = sorted({t.params[name] for t in done} - {t.params[name] for t in ok})
        tried = ", ".join(format_value(v) for v in failed) or "other values"
        return f"TPE tries a {way} {name}: it crashed at {tried}, and no other value has " \
            f"finished yet{moved}"
    ok.sort(key=lambda t: t.value if t.value is not None else math.inf)
    best = [t.params[name] for t in ok[: min(3, max(2, len(ok) // 4))]]
    lo, hi = format_value(min(best)), format_value(max(best))
    used = f"the best result used {lo}" if lo == hi else \
        f"the {len(best)} best results used {lo}-{hi}"
    ahead = sum(1 for v in best if (v - current) * (value - current) > 0)
    if ahead * 2 >= len(best):
        return f"TPE favours a {way} {name}: {used}{moved}"
    return f"TPE explores a {way} {name} ({used}){moved}"
