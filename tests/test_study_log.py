"""A study's log read back (engine/protocol/study_log.py) and what a resume plans from it
(engine/loop/study_plan.py): which runs have finished, the readings, and the runs left."""

from __future__ import annotations

from ratchet.engine.loop import study_plan as sp
from ratchet.engine.protocol import schema, study_log
from ratchet.engine.workspace.config import Config

CHANGES = [{"exp": 3, "commit": "c3", "description": "A", "ablated": "a3", "why": ""},
           {"exp": 5, "commit": "c5", "description": "B", "ablated": None,
            "why": "train.py conflicts: a later change rewrote the same lines"},
           {"exp": 8, "commit": "c8", "description": "C", "ablated": "a8", "why": ""}]


def start(**plan) -> dict:
    config = Config().to_dict()
    return {"type": schema.SESSION_START, "t": 1.0, "session": "s", "tag": "ablate-t",
            "base_commit": "base", "best_commit": "best", "config": config,
            "options": {"budget": 20.0}, "seeds": [1337, 1338], **plan}


def run(n: int, kind: str, seed: int, status: str | None = schema.OK, val: float = 3.0,
        **where) -> list[dict]:
    begin = {"type": schema.EXP_START, "t": 2.0, "exp": n, "kind": kind, "seed": seed,
             "commit": "x", **where}
    if status is None:  # still in flight
        return [begin]
    return [begin, {"type": schema.EXP_END, "t": 3.0, "exp": n, "kind": kind, "status": status,
                    "val_bpb": val if status == schema.OK else None, **where}]


def test_an_ablate_log_folds_to_what_finished_and_what_a_resume_runs():
    events = [start(study=schema.STUDY_ABLATE, changes=CHANGES, prune=True),
              *run(1, schema.STUDY_BEST, 1337, val=3.0),
              *run(2, schema.STUDY_ABLATED, 1337, val=3.2, ablates=3),
              *run(3, schema.STUDY_ABLATED, 1337, val=3.0, ablates=8),
              *run(4, schema.STUDY_BEST, 1338, status=schema.INTERRUPTED),
              *run(5, schema.STUDY_ABLATED, 1338, status=schema.CRASHED, ablates=3),
              *run(6, schema.STUDY_ABLATED, 1338, status=None, ablates=8)]
    log = study_log.fold(events)
    assert log.study == schema.STUDY_ABLATE and log.seeds == [1337, 1338]
    assert log.top_exp == 6 and list(log.running) == [6]
    assert study_log.key(schema.STUDY_ABLATED, 1338, None, 3) in log.done  # a crash finished
    plan = sp.from_log(log)
    assert plan.tag == "t" and plan.prune and plan.base_budget == 20.0
    # the best on both seeds, each change that applies on both: 6 runs; change 5 never runs
    assert [(s.kind, s.seed, s.ablates) for s in plan.specs] == [
        (schema.STUDY_BEST, 1337, None), (schema.STUDY_ABLATED, 1337, 3),
        (schema.STUDY_ABLATED, 1337, 8), (schema.STUDY_BEST, 1338, None),
        (schema.STUDY_ABLATED, 1338, 3), (schema.STUDY_ABLATED, 1338, 8)]
    # the interrupted run and the one in flight run again; nothing that finished does
    assert [(s.kind, s.seed, s.ablates) for s in sp.remaining(plan.specs, log)] == [
        (schema.STUDY_BEST, 1338, None), (schema.STUDY_ABLATED, 1338, 8)]
    rows = study_log.change_rows(log)
    assert [r.flag for r in rows] == [None, schema.NOT_APPLIED, None]  # 1 pair: no flag yet
    assert abs(rows[0].effect.mean + 0.2) < 1e-12  # best - without it: change 3 helps
    assert rows[1].why.startswith("train.py conflicts")
    assert study_log.to_prune(rows) == []


def test_a_validate_log_gives_each_budget_its_effect_and_verdict():
    events = [start(study=schema.STUDY_VALIDATE, multiples=[1.0, 4.0])]
    n = 0
    for m, gain in ((1.0, 0.2), (4.0, 0.0)):
        for seed, luck in ((1337, 0.0), (1338, 0.01), (1339, -0.01)):
            n += 1
            events += run(n, schema.STUDY_BASE, seed, val=3.0 + luck, multiple=m)
            n += 1
            events += run(n, schema.STUDY_BEST, seed, val=3.0 + luck - gain + luck / 10,
                          multiple=m)
    events[0]["seeds"] = [1337, 1338, 1339]
    log = study_log.fold(events)
    rows = study_log.budget_rows(log)
    assert [(r.multiple, r.budget, r.verdict) for r in rows] == [
        (1.0, 20.0, schema.HOLDS), (4.0, 80.0, schema.VANISHES)]
    assert rows[1].trend.slope > 0 and rows[0].trend is None
    fields = rows[1].fields()
    assert fields["study"] == schema.STUDY_VALIDATE and fields["runs"] == 3
    assert fields["trend"]["budgets"] == 2
    assert sp.remaining(sp.from_log(log).specs, log) == []
    assert study_log.result_of(log, multiple=1.0) is None  # the runner writes those
