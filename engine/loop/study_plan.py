"""What a study runs (`ratchet validate`, `ratchet ablate`): the session it studies, read from
its log, and the runs planned from it, with what they cost.

- validate: the session's base commit and its best commit, each on the same seeds at each budget
  (a multiple of the session's budget).
- ablate: the best, and for each kept change (the keeps of the log, which are the commits on the
  session's branch, in order) the best with that change's diff reversed, all on the same seeds.
  A reverse is the change's own diff undone with the 3-way file merge candidates are rebased
  with (`gitops.rebase_commit`); one that no longer applies (a later change rewrote its lines,
  or undid it) is reported with the reason and not run. With --prune, the best without every
  change that did not help (`prune_stack`), confirmed by runs of its own before a branch holds it.

The plan is recorded in the study's first session_start, and a resume plans from there
(`from_log`): the same commits, seeds and budgets.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import git

from ratchet.engine.loop import gitops
from ratchet.engine.protocol import events, paths, schema, study_log
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import config as configmod


class StudyError(Exception):
    """The study cannot be planned or run as asked; one line for the user."""


@dataclass
class Studied:
    """The session a study measures, as its log says."""

    session: str
    tag: str
    config: dict  # its latest session_start's config (its budget and workers included)
    options: dict
    base: str
    best: str
    keeps: list[dict]  # {exp, commit, description} of each keep, in order
    overhead: float | None  # seconds a run took beyond its budget (median), where measured


def read_studied(folder: Path) -> Studied:
    log = events.read_log(folder / paths.EVENTS)
    starts = [e for e in log if e.get("type") == schema.SESSION_START]
    if not starts:
        raise StudyError(f"session {folder.name} has no session_start; nothing to study")
    start = starts[-1]
    if start.get("study"):
        raise StudyError(f"{folder.name} is a {start['study']} study, not a research session")
    if start.get("imported") or start.get("compat"):
        how = "imported" if start.get("imported") else "run in compat mode"
        raise StudyError(f"session {folder.name} was {how}; a study measures sessions that "
                         f"Ratchet ran in a workspace")
    state = statemod.fold(log)
    if not state.ended and paths.is_running(folder):
        raise StudyError(f"session {folder.name} is still running; stop it first")
    keeps = [{"exp": e.get("exp", 0), "commit": e.get("commit", ""),
              "description": e.get("description", "")}
             for e in log if e.get("type") == schema.EXP_END and e.get("decision") == schema.KEEP]
    budget = float((start.get("config") or {}).get("experiment", {}).get("budget_seconds") or 0)
    return Studied(folder.name, str(start.get("tag", "")), start.get("config") or {},
                   start.get("options") or {}, state.base_commit, state.best_commit, keeps,
                   _overhead(log, budget))


def _overhead(log: list[dict], budget: float) -> float | None:
    """The median of (a finished run's wall time - its budget) over the session's ok runs."""
    starts = {e.get("exp"): e for e in log if e.get("type") == schema.EXP_START}
    spans = [e["t"] - starts[e.get("exp")]["t"] - float(starts[e.get("exp")].get("budget")
                                                       or budget)
             for e in log if e.get("type") == schema.EXP_END and e.get("exp") in starts
             and e.get("status") == schema.OK]
    return max(0.0, statistics.median(spans)) if spans else None


@dataclass
class Spec:
    """One planned run."""

    kind: str  # schema.STUDY_KINDS
    seed: int
    commit: str
    description: str
    multiple: float | None = None  # validate
    ablates: int | None = None  # ablate: the change left out

    @property
    def key(self) -> study_log.Key:
        return study_log.key(self.kind, self.seed, self.multiple, self.ablates)

    def fields(self) -> dict:
        """What its exp_start and exp_end say of it besides the common fields."""
        return {**({"multiple": self.multiple} if self.multiple is not None else {}),
                **({"ablates": self.ablates} if self.ablates is not None else {})}


@dataclass
class Plan:
    study: str  # validate | ablate
    of: str  # the studied session
    tag: str  # the studied session's tag
    config: configmod.Config  # the studied session's settings: budget, workers, data
    base_commit: str
    best_commit: str
    seeds: list[int]
    specs: list[Spec]
    multiples: list[float] = field(default_factory=list)  # validate
    changes: list[dict] = field(default_factory=list)  # ablate: {exp, commit, ..., ablated, why}
    prune: bool = False
    overhead: float | None = None  # a run's seconds beyond its budget, as the session measured

    @property
    def base_budget(self) -> float:
        return self.config.experiment.budget_seconds

    def budget(self, spec: Spec) -> float:
        return self.base_budget * (spec.multiple or 1.0)

    def start_fields(self) -> dict:
        """The plan, as the study's session_start records it."""
        found = {"study": self.study, "of": self.of, "best_commit": self.best_commit,
                 "seeds": list(self.seeds)}
        if self.study == schema.STUDY_VALIDATE:
            found["multiples"] = list(self.multiples)
        else:
            found.update(changes=self.changes, prune=self.prune)
        return found


def seeds_for(config: configmod.Config, count: int) -> list[int]:
    """The session's own seeds: the baseline's, which the best was measured on."""
    return [config.experiment.seed + i for i in range(count)]


def plan_validate(studied: Studied, multiples: list[float], seeds: int) -> Plan:
    if not studied.keeps or studied.best == studied.base:
        raise StudyError(f"session {studied.session} kept no change; its best is its base")
    config = configmod.from_dict(studied.config)
    plan = Plan(schema.STUDY_VALIDATE, studied.session, studied.tag, config, studied.base,
                studied.best, seeds_for(config, seeds), [], multiples=sorted(multiples),
                overhead=studied.overhead)
    plan.specs = validate_specs(plan)
    return plan


def validate_specs(plan: Plan) -> list[Spec]:
    specs = []
    for m in plan.multiples:
        for seed in plan.seeds:
            specs.append(Spec(schema.STUDY_BASE, seed, plan.base_commit,
                              f"base {plan.base_commit[:7]} at {m:g}x, seed {seed}", multiple=m))
            specs.append(Spec(schema.STUDY_BEST, seed, plan.best_commit,
                              f"best {plan.best_commit[:7]} at {m:g}x, seed {seed}", multiple=m))
    return specs


def plan_ablate(repo: git.Repo, studied: Studied, seeds: int, prune: bool) -> Plan:
    if not studied.keeps:
        raise StudyError(f"session {studied.session} kept no change; nothing to ablate")
    config = configmod.from_dict(studied.config)
    changes = []
    for keep in studied.keeps:
        ablated, why = revert_onto(repo, keep["commit"], studied.best,
                                   f"ablate: without exp {keep['exp']}: {keep['description']}")
        changes.append({**keep, "ablated": ablated or None, "why": why})
    plan = Plan(schema.STUDY_ABLATE, studied.session, studied.tag, config, studied.base,
                studied.best, seeds_for(config, seeds), [], changes=changes, prune=prune,
                overhead=studied.overhead)
    plan.specs = ablate_specs(plan)
    return plan


def ablate_specs(plan: Plan) -> list[Spec]:
    specs = []
    for seed in plan.seeds:
        specs.append(Spec(schema.STUDY_BEST, seed, plan.best_commit,
                          f"best {plan.best_commit[:7]}, seed {seed}"))
        for change in plan.changes:
            if change.get("ablated"):
                specs.append(Spec(schema.STUDY_ABLATED, seed, change["ablated"],
                                  f"without #{change['exp']} ({change['description']}), "
                                  f"seed {seed}", ablates=int(change["exp"])))
    return specs


def from_log(log: study_log.StudyLog) -> Plan:
    """The plan a study recorded in its first session_start (a resume runs the rest of it)."""
    start = log.plan
    try:
        config = configmod.from_dict(start.get("config") or {})
    except configmod.ConfigError as exc:
        raise StudyError(f"study {log.session}: its recorded settings do not load: {exc}") \
            from None
    recorded = str(start.get("tag", ""))  # the study's own: <study>-<the studied session's>
    tag = "" if recorded == log.study else recorded.removeprefix(f"{log.study}-")
    plan = Plan(log.study, str(start.get("of", "")), tag, config,
                str(start.get("base_commit", "")), str(start.get("best_commit", "")),
                log.seeds, [], multiples=log.multiples, changes=log.changes,
                prune=bool(start.get("prune")))
    plan.specs = validate_specs(plan) if plan.study == schema.STUDY_VALIDATE \
        else ablate_specs(plan)
    return plan


def remaining(specs: list[Spec], log: study_log.StudyLog) -> list[Spec]:
    """The specs the log has not recorded as finished."""
    return [s for s in specs if s.key not in log.done]


# --- git: a kept change undone on the best ------------------------------------------------


def revert_onto(repo: git.Repo, commit: str, onto: str, message: str) -> tuple[str, str]:
    """`onto` with `commit`'s change (against its parent) undone: (new commit, '') or ('', why
    it no longer applies). The undo is a commit on top of `commit` holding its parent's texts,
    rebased onto `onto` with the loop's 3-way merge."""
    try:
        target = repo.commit(commit)
        parent = target.parents[0]
    except (ValueError, IndexError, git.GitError):
        return "", f"its commit {commit[:7]} is not in the repository"
    files = {}
    for change in parent.diff(target):
        name = change.a_path or change.b_path
        text = gitops.text_at(parent, name)
        if text is None:
            return "", f"the change adds {name}; undoing it would delete the file"
        files[name] = text
    undo = gitops.commit_tree(repo, target.hexsha, files, message)
    sha, why = gitops.rebase_commit(repo, undo, onto, message)
    if sha is None:
        if "already holds" in why:
            why = "the best no longer holds this change (a later change undid it)"
        elif "conflicts" in why:
            why = why.replace("conflicts with the new best",
                              "conflicts: a later change rewrote the same lines")
        return "", why
    return sha, ""


def prune_stack(repo: git.Repo, best: str, pruned: list[study_log.ChangeRow]
                ) -> tuple[str, list[int], list[str]]:
    """The best with each of these changes undone in turn: (commit, the exps undone, why the
    others could not be). Each undo is a commit of its own, so the branch shows what went."""
    tip, done, notes = best, [], []
    for row in pruned:
        sha, why = revert_onto(repo, row.commit, tip, f"prune: without exp {row.exp}: "
                                                        f"{row.description}")
        if sha:
            tip = sha
            done.append(row.exp)
        else:
            notes.append(f"#{row.exp}: {why}")
    return tip, done, notes


def prune_branch(repo: git.Repo, tag: str, commit: str) -> str:
    """A new branch ratchet/<tag>-pruned (-2, -3, ... where taken) at `commit`; one that is
    already at it (a resume after the branch was made) is used again. Touches no checkout."""
    heads = {h.name: h.commit.hexsha for h in repo.heads}
    base = gitops.branch_name(f"{tag}-pruned")
    name, n = base, 1
    while name in heads:
        if heads[name] == commit:
            return name
        n += 1
        name = f"{base}-{n}"
    repo.create_head(name, commit)
    return name


# --- what it costs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    runs: int
    device_seconds: float  # training budget summed over the runs
    workers: int
    wall_seconds: float | None  # with the session's measured overhead per run, on the workers
    extra_runs: int = 0  # runs that may follow (the pruned stack's)

    def line(self) -> str:
        more = f" (and up to {self.extra_runs} more for the pruned stack)" \
            if self.extra_runs else ""
        wall = f", about {self.wall_seconds / 60:.1f} min of wall time" \
            if self.wall_seconds is not None else ""
        return (f"{self.runs} runs{more}: {self.device_seconds / 60:.1f} device-minutes of "
                f"training, {self.device_seconds / 60 / self.workers:.1f} min on "
                f"{self.workers} worker{'s' * (self.workers != 1)}{wall}")


def cost(plan: Plan, specs: list[Spec], extra_runs: int = 0) -> Cost:
    workers = max(1, len(plan.config.loop.gpus)) if plan.config.loop.backend != "ray" else 1
    device = sum(plan.budget(s) for s in specs)
    wall = None if plan.overhead is None else \
        (device + len(specs) * plan.overhead) / workers
    return Cost(len(specs), device, workers, wall, extra_runs)
