"""An agent that needs no network or API key: Bayesian search over train.py's numeric constants.

It reads the top-level `NAME = <number>` constants of the target file, derives a fixed search
range for each from the first (baseline) file it sees, and asks an Optuna TPE study for a point.
Each experiment changes exactly ONE constant relative to the current best file, so every row of
the results table is readable ("LEARNING_RATE 0.01 -> 0.0173") and a kept change is attributable.

Which constant: the one whose suggested value moves furthest from the current best value (in
normalised units, log space for log ranges), weighted by a small prior (the learning rate matters
most), by how much that constant has moved val_bpb before (sensitive knobs are revisited) and by
how often it has been tried already (so the rest get their turn). The study learns from the
configuration actually tried, not the asked point; crashes and timeouts are recorded with a
penalty so TPE steers away from them, and values at or past one that crashed are not proposed
again until a finished run shows that side works. Notes from the person that name a constant
("try a bigger N_LAYER", "LEARNING_RATE=0.02") pick the next change.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ratchet.engine.agents.base import Agent, AgentError, Context, Emit, HistoryEntry, Proposal

Number = int | float

# Constants that do not change the measured result; searching them would waste experiments.
IGNORED = frozenset({"LOG_EVERY", "EVAL_EVERY", "PRINT_EVERY", "SAVE_EVERY", "CHECKPOINT_EVERY"})

# Float constants whose name says they live in [0, 1]: searched on a linear range inside it,
# because a log range around 0.9 would propose betas above 1.
FRACTION_HINTS = ("FRAC", "BETA", "DROPOUT", "MOMENTUM", "PROB")

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

STARTUP_TRIALS = 4  # completed trials before TPE models the outcomes (random sampling until then)
CRASH_PENALTY = 0.5  # a crash scores this much worse than the worst result seen
NO_RESULT_PENALTY = 10.0  # crash score when nothing has finished yet (val_bpb of bytes is < 8)
MIN_STEP = 0.06  # smallest float move, in normalised units: smaller ones drown in run-to-run noise
ASKS = 4  # TPE points asked per proposal at most, when sampled values are not usable
GRID = 32  # fallback grid points per float range when the suggested value is not usable
HEAD_CONSTRAINT = ("N_EMBD", "N_HEAD")  # N_EMBD % N_HEAD == 0 and an even head size (rotary)

_UP = re.compile(r"\b(bigger|larger|higher|more|increase|raise|up|deeper|wider|longer)\b", re.I)
_DOWN = re.compile(
    r"\b(smaller|lower|less|fewer|decrease|reduce|down|shallower|narrower|shorter)\b", re.I)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CHANGE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s+(\S+)\s*->\s*(" + _NUMBER + r")\s*$")


@dataclass(frozen=True)
class Constant:
    """A top-level numeric constant and where its value's source text sits in the file."""

    name: str
    value: Number
    start: int  # character offsets of the value's source text (including a leading minus)
    end: int


@dataclass
class _Directive:
    """One instruction taken from a steering note."""

    name: str
    value: Number | None  # exact value asked for, or None
    direction: int  # +1 bigger, -1 smaller, 0 either
    note: str


def parse_constants(source: str) -> dict[str, Constant]:
    """Top-level UPPER_CASE constants assigned once to an int or float literal, in file order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise AgentError(f"cannot parse the target file: {error.msg} (line {error.lineno})") \
            from error
    assigned: Counter[str] = Counter()
    found: list[tuple[str, ast.expr]] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    assigned[sub.id] += 1
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            found.append((node.targets[0].id, node.value))
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and node.value is not None):
            found.append((node.target.id, node.value))
    starts = _line_starts(source)
    lines = source.split("\n")
    constants: dict[str, Constant] = {}
    for name, expr in found:
        # assigned twice means the effective value depends on control flow: leave it alone
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name) or assigned[name] != 1:
            continue
        value = _literal(expr)
        if value is None or expr.lineno != expr.end_lineno:
            continue
        # ast columns are UTF-8 byte offsets; convert them to character offsets
        line = lines[expr.lineno - 1].encode()
        begin = starts[expr.lineno - 1] + len(line[: expr.col_offset].decode())
        end = starts[expr.lineno - 1] + len(line[: expr.end_col_offset].decode())
        constants[name] = Constant(name, value, begin, end)
    return constants


def _line_starts(source: str) -> list[int]:
    # ast counts lines by "\n" only; str.splitlines would also split on form feeds and friends
    return [0] + [match.end() for match in re.finditer("\n", source)]


def _literal(expr: ast.expr) -> Number | None:
    sign = 1
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(expr.op, ast.USub) else 1
        expr = expr.operand
    if (isinstance(expr, ast.Constant) and isinstance(expr.value, (int, float))
            and not isinstance(expr.value, bool)):
        return sign * expr.value
    return None


def searchable(name: str) -> bool:
    """Whether changing this constant can change val_bpb (seeds only reshuffle noise)."""
    return name not in IGNORED and "SEED" not in name


def format_value(value: Number) -> str:
    """Source text for a value: Python's shortest repr (0.0173, 2e-05, 10000.0).

    Values the agent picks are already rounded to 4 significant digits, so this stays readable
    and the file, the description and `changes` all say the same number."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def search_range(name: str, value: Number) -> BaseDistribution:
    """The fixed range searched for a constant, derived from its baseline value."""
    if isinstance(value, int):
        if value >= 1:
            return IntDistribution(max(1, value // 2), value * 2)
        if value == 0:
            return IntDistribution(0, 2)
        return IntDistribution(value * 2, value // 2)
    value = float(value)
    if any(hint in name for hint in FRACTION_HINTS) and 0.0 <= value <= 1.0:
        if value == 0.0:
            return FloatDistribution(0.0, 0.2)
        if value == 1.0:
            return FloatDistribution(0.5, 1.0)
        if value > 0.5:  # near one (betas, momentum): scale the distance to one instead
            return FloatDistribution(max(0.0, 1.0 - 4.0 * (1.0 - value)),
                                     1.0 - (1.0 - value) / 4.0)
        return FloatDistribution(value / 4.0, min(1.0, value * 4.0))
    if value > 0.0:
        return FloatDistribution(value / 4.0, value * 4.0, log=True)
    if value == 0.0:
        return FloatDistribution(0.0, 0.1)
    return FloatDistribution(value * 4.0, value / 4.0)


def with_value(source: str, constant: Constant, value: Number) -> str:
    """The source with only this constant's value text replaced; everything else byte-identical."""
    return source[: constant.start] + format_value(value) + source[constant.end:]


def _unit(dist: BaseDistribution, value: float) -> float:
    """Position of a value in its range, 0..1 (outside that when the value is out of range)."""
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    low, high = float(dist.low), float(dist.high)
    if high == low:
        return 0.0
    if dist.log and value > 0:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def _contains(dist: BaseDistribution, value: Number) -> bool:
    if isinstance(dist, IntDistribution):
        return isinstance(value, int) and dist.low <= value <= dist.high
    assert isinstance(dist, FloatDistribution)
    return isinstance(value, float) and dist.low <= value <= dist.high


def _head_ok(config: dict[str, Number]) -> bool:
    embd, heads = config.get(HEAD_CONSTRAINT[0]), config.get(HEAD_CONSTRAINT[1])
    if not isinstance(embd, int) or not isinstance(heads, int):
        return True
    return heads >= 1 and embd % heads == 0 and (embd // heads) % 2 == 0


def _parse_change(entry: HistoryEntry) -> tuple[str, Number] | None:
    """The single constant change an entry made, from its changes dict or its description."""
    if len(entry.changes) == 1:
        name, value = next(iter(entry.changes.items()))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, value
    return _parse_description(entry.description)


def _parse_description(description: str) -> tuple[str, Number] | None:
    match = _CHANGE.match(description)
    if not match:
        return None
    text = match.group(3)
    number: Number = float(text) if any(c in text for c in ".eE") else int(text)
    return match.group(1), number


def _old_value(description: str) -> Number | None:
    match = _CHANGE.match(description)
    if not match:
        return None
    try:
        text = match.group(2)
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return None


class OfflineAgent(Agent):
    """One-constant-at-a-time TPE search over the target file's numeric constants."""

    name = "offline"

    def __init__(self, seed: int = 0, target: str = "train.py") -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.seed = seed
        self.target = target
        self.study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS),
        )
        self._ranges: dict[str, BaseDistribution] = {}  # fixed once a constant is first seen
        self._baseline: dict[str, Number] | None = None
        self._best: dict[str, Number] = {}  # config of the best file last seen
        self._best_key = ""
        self._tried: dict[str, set[tuple[str, float]]] = {}  # best file hash -> tried changes
        self._proposed: dict[str, tuple[str, str, float]] = {}  # description -> key, name, value
        self._tries: Counter[str] = Counter()
        self._effect: dict[str, float] = {}  # largest |delta| a change of the constant caused
        self._worst: float | None = None
        self._crashes: list[tuple[str, float, float]] = []  # (constant, from, to) that crashed
        self._worked: dict[str, set[float]] = {}  # values seen in runs that finished
        # (n, description) of entries already learned from; n alone can repeat (a proposal the
        # loop rejects is reported under the number the next experiment then uses)
        self._seen: set[tuple[int, str]] = set()
        self._pending: list[tuple[HistoryEntry, dict[str, Number] | None]] = []
        self._steer_prev: list[str] = []  # the notes of the previous context
        self._steer_drains = False  # the loop hands each note once (not a growing list)
        self._steer_queue: list[_Directive] = []

    # -------------------------------------------------------------------------------------------
    # Proposing
    # -------------------------------------------------------------------------------------------

    def propose(self, context: Context, emit: Emit) -> Proposal:
        source = context.files.get(self.target)
        if source is None:
            raise AgentError(f"{self.target} is not among the editable files")
        constants = parse_constants(source)
        names = [name for name in constants if searchable(name)]
        if not names:
            raise AgentError(f"no numeric constants to search in {self.target}")
        config = {name: constants[name].value for name in constants}
        if self._baseline is None:
            self._baseline = dict(config)
            skipped = [name for name in constants if not searchable(name)]
            emit(f"Parsed {len(names)} constants from {self.target}: "
                 + ", ".join(f"{n}={format_value(config[n])}" for n in names)
                 + (f" (not searched: {', '.join(skipped)})" if skipped else "") + ".\n")
        for name in names:
            if name not in self._ranges:
                self._ranges[name] = search_range(name, config[name])
        self._best = config
        self._best_key = hashlib.sha256(source.encode()).hexdigest()
        self._flush_pending(context)
        self._import_history(context, config)
        self._emit_study(config, emit)

        excluded = self._excluded(context)
        self._take_steer(context, constants, emit)
        choice = self._steered(config, names, excluded, emit)
        if choice is None:
            choice = self._searched(config, names, excluded, emit)
        name, value, rationale = choice
        new_source = with_value(source, constants[name], value)
        old, new = format_value(config[name]), format_value(value)
        description = f"{name} {old} -> {new}"
        self._tried.setdefault(self._best_key, set()).add((name, float(value)))
        self._proposed[description] = (self._best_key, name, float(value))
        self._tries[name] += 1
        emit(f"Proposing {description}: {rationale}\n")
        return Proposal(description=description, files={self.target: new_source},
                        rationale=rationale, changes={name: value})

    def _done(self) -> list[optuna.trial.FrozenTrial]:
        # deepcopy=False: copying every trial on each look costs more than the sampling itself
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def _emit_study(self, config: dict[str, Number], emit: Emit) -> None:
        done = self._done()
        crashes = sum(1 for t in done if t.user_attrs.get("status") not in (None, "ok"))
        if not done:
            emit("The study is empty: the first proposals explore around the baseline.\n")
            return
        best = min(done, key=lambda t: t.value if t.value is not None else math.inf)
        changed = [f"{n}={format_value(v)}" for n, v in config.items()
                   if self._baseline and n in self._baseline and self._baseline[n] != v]
        emit(f"The study has {len(done)} trial{'s' * (len(done) != 1)} ({crashes} crashed or "
             f"timed out); best val_bpb "
             f"{best.value:.4f}. Current best differs from the baseline in: "
             f"{', '.join(changed) or 'nothing yet'}.\n")
        limits = sorted({(n, to, ">=" if to > start else "<=") for n, start, to in self._crashes
                         if self._crash_limit(n, to) is not None})
        if limits:
            emit("Avoiding what crashed or timed out: " + ", ".join(
                f"{n} {sign} {format_value(_as_type(to, self._ranges[n]))}"
                if n in self._ranges else f"{n} {sign} {to:g}" for n, to, sign in limits)
                 + ".\n")

    def _excluded(self, context: Context) -> set[tuple[str, float]]:
        """Changes not to propose again from this best: tried, running, or since the last keep."""
        excluded = set(self._tried.get(self._best_key, set()))
        for description in context.in_flight:
            change = _parse_description(description)
            if change:
                excluded.add((change[0], float(change[1])))
        for entry in reversed(context.history):
            if entry.decision in ("keep", "baseline"):
                break
            change = _parse_change(entry)
            if change:
                excluded.add((change[0], float(change[1])))
        return excluded

    def _usable(self, name: str, value: Number, config: dict[str, Number],
                excluded: set[tuple[str, float]], direction: int = 0) -> bool:
        """Different from the current value by a noticeable step, not tried from this best, on
        the asked side, and keeping N_EMBD / N_HEAD valid for rotary attention."""
        dist, current = self._ranges[name], config[name]
        move = _unit(dist, float(value)) - _unit(dist, float(current))
        if value == current or (name, float(value)) in excluded:
            return False
        if isinstance(value, float) and abs(move) < MIN_STEP:
            return False
        if direction and move * direction <= 0:
            return False
        if self._crash_limit(name, value) is not None:
            return False
        return _head_ok({**config, name: value})

    def _crash_limit(self, name: str, value: Number) -> float | None:
        """The crashed value this one is at or beyond (moving the same way), unless a finished
        run has shown that side works after all; crashes rarely come back from going further."""
        for crashed, start, to in self._crashes:
            way = 1.0 if to > start else -1.0
            if crashed != name or (float(value) - to) * way < 0:
                continue
            if not any((v - to) * way >= 0 for v in self._worked.get(name, ())):
                return to
        return None

    def _candidate(self, name: str, target: float, config: dict[str, Number],
                   excluded: set[tuple[str, float]], direction: int = 0) -> Number | None:
        """The usable value nearest (in normalised units) to `target`, or None."""
        dist = self._ranges[name]
        options: list[Number]
        if isinstance(dist, IntDistribution):
            step = max(1, (dist.high - dist.low) // 4096)  # every value unless the range is huge
            options = list(range(dist.low, dist.high + 1, step))
        else:
            grid = [_from_unit(dist, i / GRID) for i in range(GRID + 1)]
            options = [_round(target, dist), *(_round(v, dist) for v in grid)]
        target_u = _unit(dist, float(target))
        usable = [v for v in options if self._usable(name, v, config, excluded, direction)]
        if not usable:
            return None
        return min(usable, key=lambda v: abs(_unit(dist, float(v)) - target_u))  # first on ties

    def _suggest(self, dists: dict[str, BaseDistribution]) -> dict[str, float]:
        """One TPE point; the asked trial is told FAIL so it never counts as an observation."""
        trial = self.study.ask(dists)
        self.study.tell(trial, state=TrialState.FAIL)
        return dict(trial.params)

    def _searched(self, config: dict[str, Number], names: list[str],
                  excluded: set[tuple[str, float]], emit: Emit) -> tuple[str, Number, str]:
        dists = {name: self._ranges[name] for name in names}
        first = self._suggest(dists)
        values: dict[str, Number] = {}
        pending = dict(dists)
        # a sampled value can be unusable (already tried, too small a step): ask TPE again for
        # those constants before settling for the usable value nearest to its first suggestion
        for attempt in range(ASKS):
            suggestion = first if attempt == 0 else self._suggest(pending)
            for name in list(pending):
                value = _as_type(suggestion[name], pending[name])
                if self._usable(name, value, config, excluded):
                    values[name] = value
                    del pending[name]
            if not pending:
                break
        for name in pending:
            value = self._candidate(name, first[name], config, excluded)
            if value is not None:
                values[name] = value
        effects = [e for e in self._effect.values() if e > 0]
        top_effect = max(effects) if effects else 0.0
        scored: list[tuple[float, float, str, Number]] = []
        for name in names:
            if name not in values:
                continue
            value, dist = values[name], dists[name]
            distance = min(1.0, abs(_unit(dist, float(value)) - _unit(dist, float(config[name]))))
            sensitivity = self._effect.get(name, 0.0) / top_effect if top_effect else 0.0
            weight = PRIORS.get(name, 1.0) * (1.0 + 2.0 * sensitivity) / (1.0 + self._tries[name])
            scored.append((weight * (0.5 + distance), distance, name, value))
        if not scored:
            raise AgentError("no untried single-constant change is left from the current best")
        scored.sort(key=lambda item: -item[0])  # stable: ties keep file order
        emit("TPE suggests, by score: " + ", ".join(
            f"{name} {format_value(config[name])}->{format_value(value)} ({score:.2f})"
            for score, _, name, value in scored[:4]) + ".\n")
        _, _, name, value = scored[0]
        return name, value, self._reason(name, config[name], value)

    def _reason(self, name: str, current: Number, value: Number) -> str:
        """One line on why: what the study's best results say about this constant."""
        ok = [t for t in self._done() if t.user_attrs.get("status") == "ok" and name in t.params]
        way = "higher" if value > current else "lower"
        if len({t.params[name] for t in ok}) < 2:
            return f"{name} has not been varied yet; TPE samples a {way} value to explore it"
        ok.sort(key=lambda t: t.value if t.value is not None else math.inf)
        best = [t.params[name] for t in ok[: min(3, max(2, len(ok) // 4))]]
        lo, hi = format_value(min(best)), format_value(max(best))
        used = f"the best result used {lo}" if lo == hi else \
            f"the {len(best)} best results used {lo}-{hi}"
        effect = self._effect.get(name)
        moved = f"; changing it has moved val_bpb by up to {effect:.3f}" if effect else ""
        ahead = sum(1 for v in best if (v - current) * (value - current) > 0)
        if ahead * 2 >= len(best):
            return f"TPE favours a {way} {name}: {used}{moved}"
        return f"TPE explores a {way} {name} ({used}){moved}"

    # -------------------------------------------------------------------------------------------
    # Steering
    # -------------------------------------------------------------------------------------------

    def _take_steer(self, context: Context, constants: dict[str, Constant], emit: Emit) -> None:
        """Queue directives from the notes that are new in this context.

        A loop may hand each note once (the session drains its queue) or keep a growing list;
        while every list extends the previous one only the added notes are new. Once a list
        does not, the loop is known to hand notes once and every note it gives is new."""
        steer, prev = list(context.steer), self._steer_prev
        if steer[: len(prev)] != prev:
            self._steer_drains = True
        new = steer if self._steer_drains else steer[len(prev):]
        self._steer_prev = steer
        for note in new:
            directives = _directives(note, list(constants))
            if not directives:
                emit(f"Note {note!r} names no constant I search; noted, not acted on.\n")
            for directive in directives:
                if searchable(directive.name):
                    self._steer_queue.append(directive)
                else:
                    emit(f"Note {note!r}: {directive.name} does not change val_bpb here, so "
                         f"I leave it alone.\n")

    def _steered(self, config: dict[str, Number], names: list[str],
                 excluded: set[tuple[str, float]], emit: Emit
                 ) -> tuple[str, Number, str] | None:
        while self._steer_queue:
            directive = self._steer_queue.pop(0)
            name = directive.name
            if name not in names:
                emit(f"Note {directive.note!r}: {name} is no longer a plain constant.\n")
                continue
            value = self._steer_value(directive, config, excluded, emit)
            if value is None:
                continue
            emit(f"Following the note {directive.note!r}: changing {name}.\n")
            return name, value, f"steered by the note {directive.note!r}"
        return None

    def _steer_value(self, directive: _Directive, config: dict[str, Number],
                     excluded: set[tuple[str, float]], emit: Emit) -> Number | None:
        name, current = directive.name, config[directive.name]
        if directive.value is None:
            # aim for TPE's view of the constant, on the side the note asks for
            dist = self._ranges[name]
            suggested = float(self._suggest({name: dist})[name])
            cur_u = _unit(dist, float(current))
            u = _unit(dist, suggested)
            if directive.direction and (u - cur_u) * directive.direction <= 0:
                suggested = _from_unit(dist, min(1.0, max(0.0, 2 * cur_u - u)))  # mirror it
            value = self._candidate(name, suggested, config, excluded, directive.direction)
            if value is None:
                emit(f"Note {directive.note!r}: no untried value of {name} left in that "
                     f"direction that has not crashed before.\n")
            return value
        value: Number = directive.value
        if isinstance(current, int):
            if not float(value).is_integer():
                emit(f"Note {directive.note!r}: {name} takes whole numbers.\n")
                return None
            value = int(value)
        else:
            value = float(value)
        if not _head_ok({**config, name: value}) and isinstance(value, int):
            fixed = self._nearest_valid(name, value, config)
            emit(f"Note {directive.note!r}: {name}={value} breaks N_EMBD % (2 * N_HEAD) == 0; "
                 f"using {fixed}.\n")
            if fixed is None:
                return None
            value = fixed
        if value == current:
            emit(f"Note {directive.note!r}: {name} is already {format_value(value)}.\n")
            return None
        if (name, float(value)) in excluded:
            emit(f"Note {directive.note!r}: {name}={format_value(value)} was already tried "
                 f"from this best.\n")
            return None
        limit = self._crash_limit(name, value)
        if limit is not None:
            emit(f"Note {directive.note!r}: {name}={format_value(value)} is past {limit:g}, "
                 f"which crashed before; trying it because you asked.\n")
        return value

    @staticmethod
    def _nearest_valid(name: str, value: int, config: dict[str, Number]) -> int | None:
        for offset in range(0, 4 * abs(value) + 2):
            for option in (value - offset, value + offset):
                if option >= 1 and option != config[name] and _head_ok({**config, name: option}):
                    return option
        return None

    # -------------------------------------------------------------------------------------------
    # Learning
    # -------------------------------------------------------------------------------------------

    def observe(self, proposal: Proposal, entry: HistoryEntry) -> None:
        key = (entry.n, entry.description)
        if key in self._seen:  # already learned from the history
            return
        self._seen.add(key)
        config: dict[str, Number] | None = None
        source = proposal.files.get(self.target)
        if source is not None:
            config = {n: c.value for n, c in parse_constants(source).items()}
        elif entry.decision != "baseline" and self._best:
            config = {**self._best, **{n: v for n, v in proposal.changes.items()
                                       if isinstance(v, (int, float))}}
        if entry.status == "interrupted":  # says nothing about the change: allow it again
            tried = self._proposed.get(proposal.description)
            if tried:
                self._tried.get(tried[0], set()).discard((tried[1], tried[2]))
            return
        if self._baseline is None:  # reported before the first proposal: no file seen yet
            self._pending.append((entry, config))
            return
        self._learn(entry, config)

    def _flush_pending(self, context: Context) -> None:
        """Learn what was reported before the first proposal. Entries the context's history
        also holds are left to _import_history, which can rebuild the configuration they ran
        (on a resume, the first file seen is the current best, not the baseline)."""
        in_history = {(e.n, e.description) for e in context.history}
        pending, self._pending = self._pending, []
        for entry, config in pending:
            if (entry.n, entry.description) in in_history:
                self._seen.discard((entry.n, entry.description))
            else:
                self._learn(entry, config)

    def _learn(self, entry: HistoryEntry, config: dict[str, Number] | None) -> None:
        if entry.decision == "baseline" and config is None:
            config = self._baseline
        if config is None:
            return
        value = self._score(entry)
        if value is None:
            return
        params = {n: v for n, v in config.items()
                  if n in self._ranges and _contains(self._ranges[n], v)}
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions={n: self._ranges[n] for n in params}, value=value,
            user_attrs={"status": entry.status, "n": entry.n},
        ))
        change = _parse_change(entry)
        if entry.status == "ok" and entry.val_bpb is not None:
            for n, v in config.items():
                self._worked.setdefault(n, set()).add(float(v))
        elif entry.decision != "baseline" and change:
            old = _old_value(entry.description)
            if old is not None and old != change[1]:
                self._crashes.append((change[0], float(old), float(change[1])))
        if entry.decision != "baseline" and change and entry.delta is not None:
            name = change[0]
            self._effect[name] = max(self._effect.get(name, 0.0), abs(entry.delta))

    def _score(self, entry: HistoryEntry) -> float | None:
        """What the study records: val_bpb, a penalty for crashes, nothing for killed runs."""
        if entry.status == "ok" and entry.val_bpb is not None:
            self._worst = max(self._worst or entry.val_bpb, entry.val_bpb)
            return entry.val_bpb
        if entry.status in ("crash", "timeout") or entry.decision == "crash":
            if self._worst is None:
                return NO_RESULT_PENALTY
            return self._worst + CRASH_PENALTY
        return None  # killed or interrupted: the configuration itself told us nothing

    def _import_history(self, context: Context, config: dict[str, Number]) -> None:
        """Learn from finished experiments the loop did not report through observe (a resume).

        Each entry's configuration is the best at its time plus its change; the best at each
        time comes from undoing the kept changes ("NAME old -> new") backwards from the file.
        """
        fresh = [e for e in context.history if (e.n, e.description) not in self._seen]
        if not fresh:
            return
        base: dict[str, Number] | None = dict(config)
        for entry in reversed(context.history):
            if entry.decision != "keep" or base is None:
                continue
            change, old = _parse_change(entry), _old_value(entry.description)
            base = None if change is None or old is None else {**base, change[0]: old}
        last_keep = max((i for i, e in enumerate(context.history) if e.decision == "keep"),
                        default=-1)
        if base is None:  # a kept change we cannot undo: trust only what came after it
            history = context.history[last_keep + 1:]
            best: dict[str, Number] = dict(config)
        else:
            history, best = context.history, base
        for entry in history:
            change = _parse_change(entry)
            if (entry.n, entry.description) not in self._seen:
                self._seen.add((entry.n, entry.description))
                if entry.decision == "baseline":
                    self._learn(entry, dict(best))
                elif change:
                    self._learn(entry, {**best, change[0]: change[1]})
            if entry.decision == "keep" and change:
                best = {**best, change[0]: change[1]}
        for entry in context.history:
            self._seen.add((entry.n, entry.description))


def _from_unit(dist: BaseDistribution, u: float) -> float:
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    low, high = float(dist.low), float(dist.high)
    if dist.log:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def _as_type(value: float, dist: BaseDistribution) -> Number:
    return int(value) if isinstance(dist, IntDistribution) else _round(value, dist)


def _round(value: float, dist: BaseDistribution) -> float:
    """4 significant digits (6 when 4 would leave the range, so the study can record it)."""
    assert isinstance(dist, FloatDistribution)
    rounded = float(f"{value:.4g}")
    return rounded if dist.low <= rounded <= dist.high else float(f"{value:.6g}")


def _directives(note: str, names: list[str]) -> list[_Directive]:
    """Constants a note names, each with an exact value (NAME=0.02) or a direction (bigger)."""
    mentions: list[tuple[int, int, str]] = []
    for name in names:
        # "N_LAYER", "n_layer", "n layers", "learning rate" all name the same constant
        pattern = r"(?<![A-Za-z0-9_])" + re.escape(name).replace("_", "[_ ]") \
            + r"s?(?![A-Za-z0-9_])"
        match = re.search(pattern, note, re.I)
        if match:
            mentions.append((match.start(), match.end(), name))
    mentions.sort()
    directives = []
    for i, (start, end, name) in enumerate(mentions):
        exact = re.match(r"\s*(?:=|:|to)\s*(" + _NUMBER + r")", note[end:], re.I)
        value: Number | None = None
        if exact:
            text = exact.group(1)
            value = float(text) if any(c in text for c in ".eE") else int(text)
        before = note[(mentions[i - 1][1] if i else 0):start]
        after = note[end:(mentions[i + 1][0] if i + 1 < len(mentions) else len(note))]
        direction = _direction(before) or _direction(after)
        directives.append(_Directive(name, value, direction, note))
    return directives


def _direction(text: str) -> int:
    up, down = bool(_UP.search(text)), bool(_DOWN.search(text))
    return 1 if up and not down else -1 if down and not up else 0
