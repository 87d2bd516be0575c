"""`ratchet report` of a study: validate's effect by budget and ablate's contribution per change,
as text, markdown and a PNG chart, from the study's log alone (`study_log` computes the same
readings the study records)."""

from __future__ import annotations

import time
from pathlib import Path

from ratchet.cli.report import ReportError, fit
from ratchet.engine.loop import study_plan as sp
from ratchet.engine.protocol import schema, study_log
from ratchet.engine.protocol import study_stats as st

PAIRS_NOTE = ("pairs that help only together: not measured (each change is undone alone); "
              "changes that cover for each other show when the pruned stack is worse")


def is_study(log: list[dict]) -> bool:
    first = next((e for e in log if e.get("type") == schema.SESSION_START), {})
    return bool(first.get("study"))


def _num(value: float | None, spec: str = ".6f") -> str:
    return "-" if value is None else format(value, spec)


def _mean(values: dict[int, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


def _effect(e: st.Effect | None) -> str:
    return "-" if e is None else e.text()


def result_line(event: dict) -> str:
    """One study_result in a line, as `validate` and `ablate` print them when they come in."""
    e = event.get("effect")
    se = event.get("se")
    effect = "-" if e is None else f"{e:+.4f}" + (f" ± {se:.4f}" if se is not None else "")
    pairs = f"{event.get('runs', 0)} pair{'s' * (event.get('runs') != 1)}"
    if event.get("multiple") is not None:
        trend = event.get("trend") or {}
        slope = f"; trend {trend['slope']:+.4f} per doubling" if trend.get("slope") is not None \
            else ""
        return (f"{event['multiple']:g}x: effect {effect} over {pairs}: "
                f"{event.get('verdict') or 'no verdict'}{slope}")
    if event.get("pruned") is not None:
        if not event["pruned"]:
            return f"prune: {event.get('why', '')}"
        left = ", ".join(f"#{n}" for n in event["pruned"])
        branch = f"; branch {event['branch']}" if event.get("branch") else ""
        verdict = "no worse" if event.get("no_worse") else "worse"
        why = f" ({event['why']})" if event.get("why") else ""
        return f"without {left}: {effect} over {pairs}: {verdict}{branch}{why}"
    if event.get("flag") == schema.NOT_APPLIED:
        return f"#{event.get('change')}: does not apply: {event.get('why', '')}"
    return (f"#{event.get('change')}: contribution {effect} over {pairs}: "
            f"{event.get('flag') or 'no verdict'}")


def _state_line(study: study_log.StudyLog, running: bool) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(study.started)) if study.started \
        else "-"
    if study.ended and study.end_reason == schema.STOP_COMPLETE:
        return f"{when}, complete"
    if running:
        return f"{when}, running"
    why = f"stopped ({study.end_reason})" if study.ended else "not finished (killed?)"
    return f"{when}, {why}: `ratchet {study.study} --resume` runs the rest"


def progress(study: study_log.StudyLog) -> str:
    """'12 of 16 finished, 1 running' (and the pruned stack's runs, once planned)."""
    try:
        planned = {s.key for s in sp.from_log(study).specs}
    except sp.StudyError:
        planned = set()
    planned |= {k for k in study.done if k[0] == schema.STUDY_PRUNED}
    done = sum(1 for k in study.done if k in planned)
    running = f", {len(study.running)} running" if study.running else ""
    return f"{done} of {len(planned)} finished{running}"


def headline(study: study_log.StudyLog, running: bool = False) -> list[tuple[str, str]]:
    plan = study.plan
    budget = float((plan.get("options") or {}).get("budget") or 0.0)
    rows = [("study", f"{study.study} of session {plan.get('of', '-')} ({study.session})"),
            ("started", _state_line(study, running)),
            ("runs", progress(study)),
            ("commits", f"base {str(plan.get('base_commit', ''))[:7]}, best "
                        f"{str(plan.get('best_commit', ''))[:7]}"),
            ("seeds", ", ".join(str(s) for s in study.seeds) + f"; budget {budget:g} s")]
    return rows


def budget_table(study: study_log.StudyLog) -> list[tuple[str, ...]]:
    header = ("budget", "seconds", "base", "best", "effect ± se", "pairs", "verdict")
    rows = [header]
    for row in study_log.budget_rows(study):
        rows.append((f"{row.multiple:g}x", f"{row.budget:g}", _num(_mean(row.base)),
                     _num(_mean(row.best)), _effect(row.effect),
                     str(row.effect.runs if row.effect else 0), row.verdict or "-"))
    return rows


def change_table(study: study_log.StudyLog) -> list[tuple[str, ...]]:
    header = ("change", "without it", "contribution ± se", "pairs", "flag", "description")
    rows = [header]
    for row in study_log.change_rows(study):
        if row.flag == schema.NOT_APPLIED:
            rows.append((f"#{row.exp}", "-", "-", "0", "not applied",
                         f"{row.description} ({row.why})"))
            continue
        rows.append((f"#{row.exp}", _num(_mean(row.values)), _effect(row.effect),
                     str(row.effect.runs if row.effect else 0),
                     (row.flag or "-").replace("_", " "), row.description))
    return rows


def _trend(study: study_log.StudyLog) -> str:
    rows = study_log.budget_rows(study)
    found = rows[-1].trend if rows else None
    return "-" if found is None else found.text()


def _pruned(study: study_log.StudyLog) -> str | None:
    found = next((r for r in reversed(study.results) if r.get("pruned") is not None), None)
    if found is not None:
        return result_line(found)
    return "not run yet" if study.plan.get("prune") else None


def _align(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in rows]


def text(log: list[dict], chart: bool = False, width: int = 80, running: bool = False) -> str:
    study = study_log.fold(log)
    lines = [f"{name:<10}{value}" for name, value in headline(study, running)]
    if study.study == schema.STUDY_VALIDATE:
        best = study.plan.get("best_commit", "")
        lines += ["", f"effect of the best ({str(best)[:7]}) against the base, by budget "
                      f"(best - base on the same seeds; negative: a gain)"]
        lines += ["  " + r for r in _align(budget_table(study), {1, 2, 3, 5})]
        lines += ["", f"{'trend':<10}{_trend(study)}"]
    else:
        lines += ["", "contribution of each kept change in the final stack (best - the best "
                      "without it, same seeds; negative: it helps)"]
        lines += [fit("  " + r, width) for r in _align(change_table(study), {1, 3})]
        pruned = _pruned(study)
        if pruned:
            lines += ["", f"{'pruned':<10}{pruned}"]
        lines += ["", PAIRS_NOTE]
    return "\n".join(lines)


def markdown(log: list[dict], png: str | None = None, running: bool = False) -> str:
    study = study_log.fold(log)
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731
    lines = [f"# Ratchet {study.study}: {cell(study.session)}", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {cell(value)} |" for name, value in headline(study, running)]
    if study.study == schema.STUDY_VALIDATE:
        table, title = budget_table(study), "Effect by budget"
        align = ["---", "---:", "---:", "---:", "---:", "---:", "---"]
    else:
        table, title = change_table(study), "Contribution per change"
        align = ["---", "---:", "---:", "---:", "---", "---"]
    lines += ["", f"## {title}", "", "| " + " | ".join(table[0]) + " |",
              "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table[1:]]
    if study.study == schema.STUDY_VALIDATE:
        lines += ["", f"Trend: {cell(_trend(study))}"]
    else:
        pruned = _pruned(study)
        if pruned:
            lines += ["", f"Pruned: {cell(pruned)}"]
        lines += ["", PAIRS_NOTE[0].upper() + PAIRS_NOTE[1:] + "."]
    if png:
        lines += ["", f"![{study.study}]({png})"]
    return "\n".join(lines) + "\n"


def write_png(log: list[dict], path: Path) -> None:
    """Validate: the effect against the budget (log2 axis), ± t·se; ablate: each change's
    contribution as a bar, ± t·se. Needs matplotlib (`pip install 'ratchet[report]'`)."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--png needs matplotlib: pip install 'ratchet[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    study = study_log.fold(log)
    figure, ax = pyplot.subplots(figsize=(9, 5), dpi=120)
    try:
        if study.study == schema.STUDY_VALIDATE:
            ax.axhline(0.0, color="tab:gray", linewidth=1)
            rows = [r for r in study_log.budget_rows(study) if r.effect is not None]
            xs = [r.multiple for r in rows]
            ys = [r.effect.mean for r in rows]
            errors = [r.effect.half_width or 0.0 for r in rows]
            ax.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=4, color="tab:blue",
                        label="best - base (95% interval)")
            for r in rows:
                ax.annotate(r.verdict or "", (r.multiple, r.effect.mean),
                            textcoords="offset points", xytext=(6, 6))
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{m:g}x" for m in xs])
            ax.set_xlabel("budget (multiple of the session's)")
            ax.set_ylabel("effect on val_bpb (negative: a gain)")
            ax.set_title(f"validate {study.session}: does the gain hold?")
            ax.legend(loc="best")
        else:
            ax.axvline(0.0, color="tab:gray", linewidth=1)
            rows = [r for r in study_log.change_rows(study) if r.effect is not None]
            labels = [fit(f"#{r.exp} {r.description}", 40) for r in rows]
            ys = list(range(len(rows)))
            colors = {schema.HELPS: "tab:green", schema.HARMFUL: "tab:red"}
            ax.barh(ys, [r.effect.mean for r in rows],
                    xerr=[r.effect.half_width or 0.0 for r in rows], capsize=4,
                    color=[colors.get(r.flag, "tab:gray") for r in rows])
            ax.set_yticks(ys, labels)
            ax.invert_yaxis()
            ax.set_xlabel("contribution to val_bpb in the final stack (negative: it helps; "
                          "95% interval)")
            ax.set_title(f"ablate {study.session}: what each kept change is worth")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
