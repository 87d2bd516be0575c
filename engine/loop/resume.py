"""What an engine resuming a session reads back from its log, in one pass.

The folded state (as `state.fold` gives it, restarted: the resuming engine is not paused, and
its `ping` says so before its session_start is written), and what the state does not keep: the
results.tsv rows the log backs, the commits the branch may be at, the run's settings, and the
highest experiment number any line mentions, lines it cannot read included, or any experiment
folder has (one whose start a full disk kept out of the log), so no number is used twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.engine.loop import ledger
from ratchet.engine.protocol import events, schema
from ratchet.engine.protocol import state as statemod

# The run options a session keeps across resumes (session_start's `options`); on resume a
# setting not given is the session's own, and one given must match it (`refusal`).
SETTINGS = ("budget", "max_experiments", "gpus", "backend", "address")
FLAGS = {"budget": "--budget", "max_experiments": "--max-experiments", "gpus": "--gpus",
         "backend": "--backend", "address": "--address"}

_NUMBER = re.compile(rb'"(?:exp|retried_as|confirms)":\s*(\d+)')
_COMMIT = re.compile(rb'"commit":\s*"([0-9a-f]{7})')
_FOLDER = re.compile(r"exp-(\d+)")


class Tips(tuple):
    """The commits the branch may be at (`Recorded.tips`), and what damaged records say of a
    commit that is not one of them (`why_not`)."""

    damaged: dict[str, str]  # 7-character commit -> why its record cannot be read

    def __new__(cls, commits: tuple[str, ...], damaged: dict[str, str] | None = None) -> Tips:
        tips = super().__new__(cls, commits)
        tips.damaged = dict(damaged or {})
        return tips

    def why_not(self, sha: str, branch: str) -> str:
        """The true reason the branch is at `sha`, where a damaged record of the log explains
        it: the engine moved it to a keep whose exp_end can no longer be read. '' otherwise."""
        for commit, why in self.damaged.items():
            if commit and sha.startswith(commit):
                return f"{why}, and the branch {branch} holds that experiment's keep; repair " \
                       f"the line, or start a new session from the branch"
        return ""


@dataclass
class Recorded:
    state: statemod.LoopState = field(default_factory=statemod.LoopState)
    rows: list[ledger.Row] = field(default_factory=list)  # results.tsv rows the log backs
    settings: dict = field(default_factory=dict)  # the latest session_start's (`settings`)
    kept: list[str] = field(default_factory=list)  # each keep's commit, in order
    ours: set[str] = field(default_factory=set)  # this session's candidates, 7 characters
    top_exp: int = 0  # the highest experiment number of any line, readable or not
    # exp -> commit (7 characters, or '') of an exp_end written whole but no longer readable
    unreadable_ends: dict[int, str] = field(default_factory=dict)
    damaged: dict[int, str] = field(default_factory=dict)  # exp -> where its unreadable end is

    def tips(self) -> Tips:
        """Where the branch may be: at the best commit, or still at the one before it when
        the engine stopped between logging a keep and moving the branch."""
        best = self.state.best_commit
        commits = (best,) if not self.kept else (
            best, self.kept[-2] if len(self.kept) > 1 else self.state.base_commit)
        return Tips(commits, {commit: f"the log's record of experiment {n} is damaged "
                                      f"({self.damaged.get(n, 'unreadable')})"
                              for n, commit in self.unreadable_ends.items()})


def read(path: Path) -> Recorded:
    found = Recorded()
    if not Path(path).exists():
        return found
    for folder in Path(path).parent.glob("exp-*"):  # runs/<session>/exp-NNNN
        number = _FOLDER.fullmatch(folder.name)
        if number:
            found.top_exp = max(found.top_exp, int(number.group(1)))
    where = Path(*Path(path).parts[-3:])  # runs/<session>/events.jsonl, as the person sees it
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            whole = line.endswith(b"\n")
            event = events.parse_line(line.rstrip(b"\n")) if whole else None
            if event is None:
                _unreadable(found, line, whole, f"line {number} of {where}")
            else:
                _fold(found, event)
    statemod.restart(found.state)
    return found


def _fold(found: Recorded, event: dict) -> None:
    found.rows += ledger.rows_for(event, found.state.pending_confirms,
                                  found.state.pending_runs)
    kind = event.get("type")
    if kind == schema.SESSION_START:
        found.settings = settings(event)
    elif kind in (schema.PROPOSAL, schema.PROPOSAL_REBASED) and \
            isinstance(event.get("commit"), str):
        found.ours.add(event["commit"][:7])
    elif kind == schema.EXP_END and event.get("decision") == schema.KEEP:
        found.kept.append(event.get("commit", ""))
    for key in ("exp", "retried_as"):
        if type(event.get(key)) is int:
            found.top_exp = max(found.top_exp, event[key])
    statemod.apply(found.state, event)


def _unreadable(found: Recorded, line: bytes, whole: bool, where: str) -> None:
    numbers = [int(n) for n in _NUMBER.findall(line)]
    found.top_exp = max([found.top_exp, *numbers])
    if whole and numbers and b'"exp_end"' in line:  # it was recorded; then it was damaged
        commit = _COMMIT.search(line)
        found.unreadable_ends[numbers[0]] = commit.group(1).decode() if commit else ""
        found.damaged[numbers[0]] = where


def settings(start: dict) -> dict:
    """A session_start's run settings: its `options`, or for a log from before them, what its
    `config` says (and no --max-experiments); and its `agent`, which a resume goes on with
    unless --agent names another."""
    config = start.get("config") if isinstance(start.get("config"), dict) else {}
    experiment, loop = config.get("experiment") or {}, config.get("loop") or {}
    found = {"budget": experiment.get("budget_seconds"), "max_experiments": None,
             "gpus": loop.get("gpus"), "backend": loop.get("backend"),
             "address": loop.get("ray_address") or None}
    if isinstance(start.get("options"), dict):
        found.update({k: v for k, v in start["options"].items() if k in SETTINGS})
    found["agent"] = start.get("agent")
    return found


def current(config, max_experiments: int | None) -> dict:
    """The settings a session runs with, as its session_start records them (`options`)."""
    return {"budget": config.experiment.budget_seconds, "max_experiments": max_experiments,
            "gpus": list(config.loop.gpus), "backend": config.loop.backend,
            "address": config.loop.ray_address or None}


def fill(options, recorded: dict) -> None:
    """The settings a resume did not give are the session's own (`options`: RunOptions)."""
    for name in SETTINGS:
        if getattr(options, name) is None and recorded.get(name) is not None:
            setattr(options, name, recorded[name])


def refusal(recorded: dict, given: dict) -> str:
    """Why flags given on a resume cannot be used: the first that differs from the session's
    own setting, as one line ('' when none does). A setting the session never had (no
    --max-experiments, say) may be given."""
    for name, value in given.items():
        was = recorded.get(name)
        if value is None or was is None or _same(name, value, was):
            continue
        unit = " s" if name == "budget" else ""
        return (f"{FLAGS[name]} {_show(name, value)} differs from the session's "
                f"{_show(name, was)}{unit}; resume without it or start a new session")
    return ""


def _same(name: str, value, was) -> bool:
    try:
        if name == "budget":
            return float(value) == float(was)
        if name == "gpus":
            return [int(d) for d in value] == [int(d) for d in was]
    except (TypeError, ValueError):
        return False
    return value == was


def _show(name: str, value) -> str:
    if name == "budget" and isinstance(value, (int, float)):
        return f"{value:g}"
    if name == "gpus" and isinstance(value, list):
        return ",".join(str(d) for d in value) or "none"
    return str(value)
