"""`ratchet validate` and `ratchet ablate`: studies of a finished session, run in the foreground
after their cost is stated and confirmed (docs/validate-and-ablate.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from ratchet.cli import arguments as a
from ratchet.cli import study_report
from ratchet.cli.arguments import UserError
from ratchet.cli.session_commands import find_session
from ratchet.engine.loop import daemon, gitops, lock
from ratchet.engine.loop import study as studymod
from ratchet.engine.loop import study_plan as sp
from ratchet.engine.protocol import events, paths, schema, study_log
from ratchet.engine.workspace import layout

KIND_LABELS = {schema.STUDY_BASE: "base", schema.STUDY_BEST: "best",
               schema.STUDY_ABLATED: "ablated", schema.STUDY_PRUNED: "pruned"}


def cmd_validate(args) -> int:
    return _study(args, schema.STUDY_VALIDATE)


def cmd_ablate(args) -> int:
    return _study(args, schema.STUDY_ABLATE)


def _study(args, study: str) -> int:
    ws = layout.find(args.workspace)
    try:
        if args.resume:
            plan, session, todo = _resumed(ws, args, study)
        else:
            plan, session, todo = _planned(ws, args, study)
    except sp.StudyError as exc:
        raise UserError(str(exc)) from None
    ws.tokens(plan.config)  # the data it trains on: refused here, in one line
    extra = len(plan.seeds) if study == schema.STUDY_ABLATE and plan.prune else 0
    cost = sp.cost(plan, todo, extra)
    what = f"{study} of session {plan.of}" + (f" (resuming {session})" if args.resume else "")
    for line in _plan_lines(plan):
        print(line)
    print(f"{what}: {cost.line()}", flush=True)
    _confirm(args.yes, study, cost)
    runner = studymod.Study(ws, plan, session, resume=args.resume, on_event=_printer())
    try:
        reason = runner.run()
    except lock.Busy as exc:
        raise UserError(str(exc)) from None
    folder = ws.runs_dir() / session
    print()
    print(study_report.text(events.read_log(folder / paths.EVENTS), chart=False))
    if reason == schema.STOP_COMPLETE:
        return 0
    print(f"study {session} stopped ({reason}); `ratchet {study} --resume` runs the rest",
          file=sys.stderr)
    return 130 if reason == schema.STOP_SIGNAL else 1


def _planned(ws: layout.Workspace, args, study: str):
    if args.session:
        folder = find_session(ws, args.session)
        if studymod.study_of(folder):
            raise UserError(f"{folder.name} is a {studymod.study_of(folder)} study; name the "
                            f"research session it studied (or add --resume to go on with it)")
    else:
        research = [p for p in paths.sessions(ws.runs_dir()) if not studymod.study_of(p)]
        if not research:
            raise UserError("no sessions in this workspace yet; start one with `ratchet run`")
        folder = research[-1]
    studied = sp.read_studied(folder)
    seeds = args.seeds or max(2, int(studied.config.get("loop", {}).get("baseline_seeds") or 4))
    if study == schema.STUDY_VALIDATE:
        plan = sp.plan_validate(studied, args.budgets or [1.0, 2.0, 4.0], seeds)
    else:
        plan = sp.plan_ablate(gitops.open_repo(ws.root), studied, seeds, args.prune)
    session = daemon.new_session_id(studymod.study_tag(study, studied.tag))
    return plan, session, plan.specs


def _resumed(ws: layout.Workspace, args, study: str):
    given = [flag for flag, value in (("--budgets", getattr(args, "budgets", None)),
                                      ("--seeds", args.seeds),
                                      ("--prune", getattr(args, "prune", False))) if value]
    if given:
        raise UserError(f"--resume runs the study as it was planned; leave out {given[0]}")
    if args.session:
        folder = find_session(ws, args.session)
        if studymod.study_of(folder) != study:
            raise UserError(f"{folder.name} is not a {study} study")
    else:
        folder = studymod.newest(ws.runs_dir(), study)
        if folder is None:
            raise UserError(f"nothing to resume: no earlier {study} study in this workspace")
    if paths.is_running(folder):
        raise UserError(f"study {folder.name} is still running (pid "
                        f"{paths.engine_alive(folder)})")
    state = study_log.fold(events.read_log(folder / paths.EVENTS))
    if state.ended and state.end_reason == schema.STOP_COMPLETE:
        raise UserError(f"study {folder.name} is complete; `ratchet report {folder.name}` "
                        f"shows it")
    plan = sp.from_log(state)
    return plan, folder.name, sp.remaining(plan.specs, state)


def _plan_lines(plan: sp.Plan) -> list[str]:
    lines = [f"base {plan.base_commit[:7]}, best {plan.best_commit[:7]}, seeds "
             f"{', '.join(str(s) for s in plan.seeds)}, budget {plan.base_budget:g} s"]
    if plan.study == schema.STUDY_VALIDATE:
        lines.append("budgets " + ", ".join(f"{m:g}x ({m * plan.base_budget:g} s)"
                                            for m in plan.multiples))
    for change in plan.changes:
        state = "" if change.get("ablated") else f"  [does not apply: {change.get('why')}]"
        lines.append(f"  #{change['exp']:<5} {change['description']}{state}")
    return lines


def _confirm(yes: bool, study: str, cost: sp.Cost) -> None:
    """Go on with --yes, or once the person agrees; refuse without a terminal to ask on."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{study} would start {cost.runs} runs "
                        f"({cost.device_seconds / 60:.1f} device-minutes) and stdin is not a "
                        f"terminal to confirm on; add --yes")
    try:
        answer = input("start it? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise UserError("not started")


def _printer():
    def show(event: dict) -> None:
        kind = event.get("type")
        if kind == schema.EXP_END:
            val = event.get("val_bpb")
            print(f"#{event.get('exp', 0):<4} {KIND_LABELS.get(event.get('kind'), '?'):<8} "
                  f"{event.get('status', ''):<12} {f'{val:.6f}' if val is not None else '-':>9}"
                  f"  {event.get('description', '')}", flush=True)
        elif kind == schema.STUDY_RESULT:
            print(f"  => {study_report.result_line(event)}", flush=True)
    return show


def add_parsers(sub) -> None:
    """The validate and ablate commands on `ratchet`'s parser."""
    p = sub.add_parser("validate", help="does the gain hold? the base and the best of a "
                       "session, paired, at longer budgets")
    p.add_argument("session", nargs="?", help="the session to validate (default: the newest); "
                   "with --resume, the study to go on with")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--budgets", type=a.budget_multiples, metavar="1x,2x,4x",
                   help="multiples of the session's budget (default: 1x,2x,4x)")
    p.add_argument("--seeds", type=a.seed_count, metavar="N", help="seeds per commit and budget "
                   "(default: the session's baseline seeds)")
    p.add_argument("--yes", action="store_true", help="start without asking (for scripts)")
    p.add_argument("--resume", action="store_true", help="run what the newest (or named) "
                   "validate study has not finished")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("ablate", help="what each kept change of a session contributes to its "
                       "best: each one undone, paired against the best")
    p.add_argument("session", nargs="?", help="the session to ablate (default: the newest); "
                   "with --resume, the study to go on with")
    p.add_argument("-C", "--workspace", type=Path)
    p.add_argument("--seeds", type=a.seed_count, metavar="N", help="seeds per commit (default: the "
                   "session's baseline seeds)")
    p.add_argument("--prune", action="store_true", help="then run the best without the changes "
                   "that do not help, and put it on a new branch if it is no worse")
    p.add_argument("--yes", action="store_true", help="start without asking (for scripts)")
    p.add_argument("--resume", action="store_true", help="run what the newest (or named) "
                   "ablate study has not finished")
    p.set_defaults(func=cmd_ablate)
