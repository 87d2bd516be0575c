"""What an agent reads about past runs: the diagnostics table, one experiment in full, the
search over all of them, the journal, and the loss curve each exp_end carries."""

from __future__ import annotations

from pathlib import Path

from ratchet.engine.agents import archive, diagnostics, journal
from ratchet.engine.agents.base import Context, HistoryEntry, JournalNote
from ratchet.engine.agents.claude.prompt import user_message
from ratchet.engine.loop import curve
from ratchet.engine.protocol import state as statemod

DIFF = ("--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,3 @@\n-LEARNING_RATE = 0.01  # step size\n"
        "+LEARNING_RATE = 0.02  # step size\n")


def result(scale: float = 1.0, **extra) -> dict:
    points = [[t, t * 10, round(4.0 - t * 0.1 * scale, 5)] for t in range(1, 21)]
    return {"steps": 200, "tokens": 2_000_000, "training_seconds": 20.0, "trainer_seconds": 21.4,
            "budget_seconds": 20.0, "peak_memory_mb": 1834.0, "mfu": 31.2, "curve": points,
            "tail": "step 200 loss 2.0", "error": "", **extra}


def entry(n: int, decision: str = "discard", **fields) -> HistoryEntry:
    values = {"description": f"try {n}", "status": "ok", "decision": decision,
              "val_bpb": 3.0 + n / 1000, "delta": 0.002, "margin": 0.001, "diff": DIFF,
              "result": result(), **fields}
    return HistoryEntry(n=n, **values)


def test_a_row_says_how_the_run_trained_against_the_best():
    best = result(scale=0.5)
    row = diagnostics.full_row(entry(7), diagnostics.losses(best))
    cells = row.split(" | ")
    assert cells[:9] == ["7", "discard", "3.0070", "+0.0020/0.0010", "200", "100k", "1834",
                         "31%", "21/20"]
    # loss at 25/50/75/100% minus the best's: this run's curve falls twice as fast
    assert cells[9] == "-0.250 -0.500 -0.750 -1.000"
    assert cells[10] == "2.000"
    assert cells[11] == "try 7 [LEARNING_RATE 0.01->0.02]"
    assert "at 25/50/75/100% of the budget: 3.750/3.500/3.250/3.000" in \
        diagnostics.best_line(best)


def test_a_crash_that_stopped_early_has_no_late_losses():
    early = result(curve=[[1, 10, 3.9], [4, 40, 3.5]], error="CUDA out of memory")
    row = diagnostics.full_row(entry(3, "crash", status="crash", val_bpb=None, delta=None,
                                     result=early), [None] * 4)
    cells = row.split(" | ")
    assert cells[1] == "crash (CUDA out of memory)" and cells[3] == "-"
    assert cells[9] == "- - - -"
    assert diagnostics.losses(early) == [None, None, None, None]
    assert diagnostics.losses(result())[1] == 3.0  # 10 s into 20: interpolated exactly


def test_the_table_keeps_every_keep_and_the_recent_runs_within_its_budget():
    history = [entry(n, "keep" if n in (5, 9) else "discard") for n in range(2, 502)]
    full = diagnostics.table(history, result(), full_recent=10, budget_chars=10**9)
    lines = full.splitlines()
    assert lines[1] == diagnostics.HEADER
    assert len(lines) == 3 + 500
    small = diagnostics.table(history, result(), full_recent=10, budget_chars=8000)
    assert len(small) <= 8000 + 2000  # the two header lines and the kept rows come first
    shown = [int(line.split(" | ")[0]) for line in small.splitlines()
             if line.split(" | ")[0].isdigit()]
    assert 5 in shown and 9 in shown and shown[-10:] == list(range(492, 502))
    assert "older runs that were not kept are left out" in small
    assert shown == sorted(shown)


def test_diff_summary_names_constants_or_counts_lines():
    assert diagnostics.diff_summary(DIFF) == "LEARNING_RATE 0.01->0.02"
    other = "--- a/train.py\n+++ b/train.py\n+    x = F.silu(x)\n-    x = F.gelu(x)\n+    y = 1\n"
    assert diagnostics.diff_summary(other) == "+2/-1 lines: x = F.silu(x)"
    assert diagnostics.diff_summary("") == ""


def test_view_shows_diff_curve_and_tail_and_search_finds_by_what_changed():
    history = [entry(2), entry(3, description="faster steps", diff=DIFF.replace("0.02", "0.05")),
               entry(4, description="wider MLP", diff="+MLP_RATIO = 8\n-MLP_RATIO = 4\n")]
    text = archive.view(archive.find(history, 3))
    assert "+LEARNING_RATE = 0.05" in text and "step 200 loss 2.0" in text
    assert "\n20 200 2\n" in text  # the last curve point: elapsed, step, loss
    assert archive.find(history, "4") is history[2] and archive.find(history, 99) is None
    found = archive.search(history, "learning_rate")  # by the diff, whatever the description
    assert [line.split(" | ")[0] for line in found.splitlines()[1:]] == ["3", "2"]
    assert "no experiment matches" in archive.search(history, "dropout")


def test_the_journal_keeps_the_newest_notes_within_its_budget():
    notes = [JournalNote(n, f"note {n} " + "x" * 50) for n in range(1, 101)]
    text = journal.render(notes, budget_chars=700)
    lines = text.splitlines()
    assert lines[0].endswith("older notes left out)") and lines[-1].startswith("[exp 100] note")
    assert len(text) <= 800
    assert "empty" in journal.render([])


def test_thin_keeps_a_few_points_and_the_last():
    log = [{"step": s, "loss": 5 - s / 1000, "elapsed": s / 100} for s in range(1, 2001)]
    thinned = curve.thin(log, budget_seconds=20.0, points=4)
    assert [p[0] for p in thinned] == [5.0, 10.0, 15.0, 20.0]
    assert thinned[-1] == [20.0, 2000, 3.0]
    assert curve.thin([{"step": 1, "loss": None, "elapsed": 1}], 20.0) == []


def test_the_fold_hands_agents_diffs_results_and_the_journal():
    log = [{"type": "session_start", "session": "s", "base_commit": "b0"},
           {"type": "exp_end", "exp": 1, "kind": "baseline", "status": "ok", "val_bpb": 3.0,
            "decision": "baseline", "result": result()},
           {"type": "proposal", "exp": 2, "description": "lr", "diff": DIFF},
           {"type": "journal", "exp": 2, "text": "LR may be too low"},
           {"type": "exp_end", "exp": 2, "kind": "candidate", "status": "ok", "val_bpb": 2.9,
            "decision": "pending_confirm", "result": result(scale=2.0)},
           {"type": "exp_end", "exp": 3, "kind": "confirm", "confirms": 2, "status": "ok",
            "val_bpb": 2.9, "decision": "keep", "margin": 0.001, "delta": -0.1,
            "commit": "c2", "description": "lr", "result": result(scale=2.0)}]
    state = statemod.fold(log)
    (kept,) = state.history
    assert kept.diff == DIFF and kept.kind == "confirm" and kept.margin == 0.001
    assert kept.result["curve"] == result(scale=2.0)["curve"]
    assert state.best_result["curve"] == result(scale=2.0)["curve"]
    assert state.journal == [JournalNote(2, "LR may be too low", 0.0)]


def test_the_request_after_500_experiments_fits_its_token_budget(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import agent_context

    history, best = agent_context.synthetic_history(500)
    notes = [JournalNote(n, "the curve flattens late; try a longer warmup") for n in range(150)]
    context = Context(files={"train.py": "N_LAYER = 8\n"}, program="", history=history,
                      best_bpb=1.04, margin=0.0012, journal=notes, best_result=best)
    message = user_message(context)
    assert diagnostics.HEADER in message and "[exp 149] the curve flattens late" in message
    assert f"{history[-1].n} | " in message  # the latest run has its row
    assert agent_context.count(message)["estimate"] < 26_000


def test_a_pipe_in_an_error_or_description_keeps_the_columns():
    failed = entry(4, "crash", status="crash", val_bpb=None, delta=None, description="a | b",
                   result=result(error="x | y"))
    assert len(diagnostics.full_row(failed, [None] * 4).split(" | ")) == 12
    assert len(diagnostics.short_row(failed).split(" | ")) == 5
