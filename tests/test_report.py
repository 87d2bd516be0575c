"""`ratchet ls` and `ratchet report` on a written log and on a real loop, and corrupt logs."""

from __future__ import annotations

import json

import git
import pytest
import trainers

from ratchet.cli import main, report
from ratchet.engine.agents.offline.agent import OfflineAgent
from ratchet.engine.loop.session import RunOptions, Session
from ratchet.engine.protocol import events
from ratchet.engine.protocol import state as statemod
from ratchet.engine.workspace import catalog
from ratchet.engine.workspace import config as configmod

T0 = 1_700_000_000.0


def night() -> list[dict]:
    """A finished session: a baseline, a confirmed keep, a failed proposal, a crash, a discard."""
    log = []

    def add(t, type_, exp=None, **fields):
        log.append({"t": T0 + t, "type": type_, **({"exp": exp} if exp else {}), **fields})

    def end(t, exp, kind, status, decision, val, **fields):
        add(t, "exp_end", exp, kind=kind, status=status, decision=decision, val_bpb=val,
            commit=f"c{exp}", description=f"change {exp}", result={"metric_source": "harness"},
            **fields)

    add(0, "session_start", session="s-night", tag="night", branch="ratchet/night",
        base_commit="c0", config={}, agent="offline", resumed=False, pid=0)
    add(0, "phase", 1, phase="training")
    add(0, "exp_start", 1, kind="baseline", commit="c0", budget=10)
    add(10, "phase", 1, phase="evaluating")
    end(12, 1, "baseline", "ok", "baseline", 1.5)
    add(12, "phase", 2, phase="proposing")
    add(15, "proposal", 2, description="change 2")
    add(15, "phase", 2, phase="training")
    add(15, "exp_start", 2, kind="candidate", commit="c2", budget=10)
    add(25, "phase", 2, phase="evaluating")
    end(27, 2, "candidate", "ok", "pending_confirm", 1.40, best_before=1.5, delta=-0.1)
    add(27, "phase", 3, phase="training")
    add(27, "exp_start", 3, kind="confirm", commit="c2", budget=10)
    add(37, "phase", 3, phase="evaluating")
    end(39, 3, "confirm", "ok", "keep", 1.42, best_before=1.5, delta=-0.08, new_best=1.41,
        confirms=2)
    add(39, "phase", 4, phase="proposing")
    add(40, "proposal_failed", 4, error="does not compile")
    add(42, "proposal", 4, description="change 4")
    add(42, "phase", 4, phase="training")
    add(42, "exp_start", 4, kind="candidate", commit="c4", budget=10)
    end(46, 4, "candidate", "crash", "crash", None, best_before=1.41)
    add(46, "phase", 5, phase="proposing")
    add(50, "proposal", 5, description="change 5")
    add(50, "agent_usage", 5, cost_usd=0.25, total_cost_usd=0.25)
    add(50, "phase", 5, phase="training")
    add(50, "exp_start", 5, kind="candidate", commit="c5", budget=10)
    add(60, "phase", 5, phase="evaluating")
    end(62, 5, "candidate", "ok", "discard", 1.45, best_before=1.41, delta=0.04)
    add(62, "session_end", reason="max_experiments", experiments=5, kept=1, best_bpb=1.41,
        baseline_bpb=1.5, best_commit="c2")
    return log


def write_session(runs, name: str, log: list[dict]) -> None:
    folder = runs / name
    folder.mkdir(parents=True)
    with open(folder / "events.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in log)


@pytest.fixture
def folder_ws(tmp_path):
    """A workspace holding only ratchet.toml and the sessions a test writes."""
    configmod.save(tmp_path, configmod.Config())
    return tmp_path


def test_figures_of_a_written_night():
    fig = report.figures(night())
    assert fig.session == "s-night" and fig.agent == "offline"
    assert (fig.baseline_bpb, fig.best_bpb) == (1.5, 1.41)
    assert fig.improvement == pytest.approx(-0.09)
    assert [(k.exp, k.val_bpb, round(k.delta, 6)) for k in fig.kept] == [(3, 1.41, -0.09)]
    assert (fig.proposals, fig.failed_proposals, fig.candidates) == (4, 1, 3)
    assert (len(fig.kept), fig.discarded, fig.crashed) == (1, 1, 1)
    assert fig.seconds == {"training": 10 + 10 + 10 + 4 + 10, "evaluating": 2 + 2 + 2 + 2,
                           "proposing": 3 + 3 + 4}
    assert fig.cost_usd == 0.25
    assert [r[0] for r in fig.runs] == [1, 2, 3, 5]
    assert fig.frontier[-1] == (5, 1.41) and fig.frontier[0] == (1, 1.5)


def test_a_long_headline_label_stays_apart_from_its_value():
    log = night()[:-1]
    log.append({"t": T0 + 63, "type": "exp_start", "exp": 6, "kind": "candidate", "commit": "c6",
                "budget": 10})
    log.append({"t": T0 + 66, "type": "exp_end", "exp": 6, "kind": "candidate",
                "status": "stopped_early", "decision": "discard", "val_bpb": None,
                "commit": "c6", "description": "change 6", "result": {},
                "early_stop": {"fraction": 0.25, "gap": 0.2, "threshold": 0.05}})
    text = report.text(report.figures(log), chart=False)
    assert "\nearly stop  1 run stopped early, " in text
    assert "baseline    1.500000" in text  # every value starts in the same column
    assert "baseline  1.500000" in report.text(report.figures(night()), chart=False)


def test_a_description_cut_to_the_width_says_it_was_cut():
    assert report.fit("MIN_LR_FRAC 0.0 -> 0.04572", 22) == "MIN_LR_FRAC 0.0 -> 0.…"
    assert report.fit("N_HEAD 2 -> 4", 22) == "N_HEAD 2 -> 4"
    # a kept change's row in the session report, cut to the terminal, says so too (cut bare at
    # 58 columns, it would end "-> 0")
    log = [dict(e, description="MIN_LR_FRAC 0.0 -> 0.04572") if e["type"] == "exp_end" else e
           for e in night()]
    rows = [line for line in report.text(report.figures(log), chart=False, width=58)
            .splitlines() if line.startswith("  #3")]
    assert rows == ["  #3     1.410000   -0.090000      -  MIN_LR_FRAC 0.0 -> …"]


def test_ls_and_report_commands(folder_ws, capsys, tmp_path):
    write_session(folder_ws / "runs", "s-night", night())
    running = night()[:12]  # no session_end and no engine: it crashed
    write_session(folder_ws / "runs", "s-crashed", running)
    assert main.main(["ls", "-C", str(folder_ws)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["session", "start", "state", "exps"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["s-night"][3:11] == ["finished", "5", "1", "1.410000", "-0.090000", "(-6.0%)",
                                     "-", "offline"]  # no run reported its peak memory
    assert rows["s-night"][-1] == "$0.25"
    assert rows["s-crashed"][3:6] == ["crashed", "2", "0"]

    assert main.main(["report", "s-night", "-C", str(folder_ws)]) == 0
    text = capsys.readouterr().out
    assert "baseline  1.500000" in text
    assert "kept 1 (33%), discarded 1 (33%), crashed 1 (33%)" in text
    assert "proposing 0m10s" in text and "training 0m44s" in text and "evaluating 0m08s" in text
    kept = [line.split() for line in text.splitlines() if line.startswith("  #")]
    assert kept == [["#3", "1.410000", "-0.090000", "-", "change", "3"]]
    assert "val_bpb per experiment" in text and "\x1b[" not in text  # the chart, no colour codes

    png = tmp_path / "chart.png"
    assert main.main(["report", "s-night", "-C", str(folder_ws), "--md", "--png", str(png)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Ratchet report: s-night")
    assert "| #3 | 1.410000 | -0.090000 | - | change 3 |" in md
    assert f"![val_bpb per experiment]({png})" in md
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_errors_are_one_line(folder_ws, capsys, tmp_path):
    assert main.main(["report", "-C", str(folder_ws)]) == 2
    assert capsys.readouterr().err.startswith("ratchet: error: no sessions")
    assert main.main(["ls", "-C", str(folder_ws)]) == 0
    assert capsys.readouterr().out.startswith("no sessions in")
    write_session(folder_ws / "runs", "s-night", night())
    assert main.main(["report", "-C", str(folder_ws), "--png",
                     str(tmp_path / "missing" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ratchet: error: cannot write") and err.count("\n") == 1


# --- corrupt logs ------------------------------------------------------------------------------


def corrupt(folder_ws, name: str, how: str) -> list[dict]:
    """Write night() with a garbage line in the middle or a torn final line; return what a
    reader should see."""
    log = night()
    lines = [json.dumps(e) + "\n" for e in log]
    if how == "garbage":
        lines.insert(9, "{not json at all\n")
        lines.insert(15, '{"t": "yesterday", "type": "exp_end", "exp": 2}\n')  # hand-edited
        expected = log
    else:
        lines[-1] = lines[-1][: len(lines[-1]) // 2]  # the engine died writing session_end
        expected = log[:-1]
    folder = folder_ws / "runs" / name
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(lines))
    return expected


@pytest.mark.parametrize("how", ["garbage", "torn"])
def test_readers_survive_a_corrupt_log(folder_ws, how):
    expected = corrupt(folder_ws, "s-bad", how)
    path = folder_ws / "runs" / "s-bad" / "events.jsonl"
    assert list(events.iter_events(path)) == expected
    warnings = []
    assert events.read_log(path, warnings.append) == expected
    assert len(warnings) == 1 and str(path) in warnings[0]
    tail = events.LogTail(path, on_warning=warnings.append)
    assert tail.poll() == expected and tail.poll() == []
    state = statemod.fold(events.iter_events(path))
    assert state.best_bpb == 1.41 and state.kept == 1
    assert state.ended == (how == "garbage")


@pytest.mark.parametrize("how", ["garbage", "torn"])
def test_commands_warn_once_and_go_on(folder_ws, capsys, how):
    corrupt(folder_ws, "s-bad", how)
    for argv in (["ls"], ["report", "s-bad", "--no-chart"], ["status", "s-bad"]):
        assert main.main([*argv, "-C", str(folder_ws)]) == 0, argv
        captured = capsys.readouterr()
        assert captured.err.count("ratchet: warning:") == 1, (argv, captured.err)
        assert "s-bad/events.jsonl" in captured.err
        assert "1.410000" in captured.out
    # a torn last line is the engine dying mid-write: the session shows as crashed
    state = "crashed" if how == "torn" else "finished"
    assert catalog.summarise(folder_ws / "runs" / "s-bad").state == state


# --- a real loop ---------------------------------------------------------------------------


def test_ls_and_report_on_a_real_loop(make_workspace, capsys, tmp_path):
    """One real baseline run of the bigram trainer (proposals are covered by the written log)."""
    ws = make_workspace("rep", budget_seconds=61.0, eval_tokens=65536)
    config = ws.config()
    config.loop.baseline_seeds = 1
    configmod.save(ws.root, config)
    (ws.root / "train.py").write_text(trainers.loop_bigram())
    repo = git.Repo(ws.root)
    repo.index.add(["train.py", "ratchet.toml"])
    repo.index.commit("bigram trainer")
    options = RunOptions(session="s-real", tag="real", max_experiments=0)
    Session(ws, ws.config(), options, OfflineAgent(seed=1)).run()
    log = list(events.iter_events(ws.runs_dir() / "s-real" / "events.jsonl"))
    (end,) = [e for e in log if e["type"] == "exp_end"]
    assert end["status"] == "ok" and end["result"]["metric_source"] == "harness"

    fig = report.figures(log)
    assert fig.baseline_bpb == fig.best_bpb == end["val_bpb"]
    assert fig.seconds["training"] > 0 and fig.seconds["evaluating"] > 0
    wall = log[-1]["t"] - log[0]["t"]
    assert sum(fig.seconds.values()) == pytest.approx(wall, abs=1.0)

    assert main.main(["ls", "-C", str(ws.root)]) == 0
    line = capsys.readouterr().out.splitlines()[1].split()
    assert line[0] == "s-real" and line[3:6] == ["finished", "1", "0"]
    png = tmp_path / "real.png"
    assert main.main(["report", "-C", str(ws.root), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert f"baseline  {end['val_bpb']:.6f}" in text and "metric    val_bpb, frozen harness" in text
    assert png.stat().st_size > 10_000


def test_report_prints_the_research_journal(folder_ws, capsys):
    log = night()
    long_note = "The loss curve flattens after half the budget, " * 4 + "so try a longer warmup."
    log.insert(8, {"t": T0 + 14, "type": "journal", "exp": 2, "text": "Hypothesis: change 2."})
    log.insert(-1, {"t": T0 + 41, "type": "journal", "exp": 5, "text": long_note})
    write_session(folder_ws / "runs", "s-notes", log)
    assert main.main(["report", "s-notes", "-C", str(folder_ws), "--no-chart"]) == 0
    out = capsys.readouterr().out
    lines = out.split("research journal (the agent's notes)\n", 1)[1].splitlines()
    assert lines[0] == "  #2    Hypothesis: change 2."
    assert lines[1].startswith("  #5    The loss curve flattens") and len(lines[1]) <= 80
    assert " ".join(" ".join(lines[1:]).split()) == "#5 " + " ".join(long_note.split())
    assert main.main(["report", "s-notes", "-C", str(folder_ws), "--md"]) == 0
    md = capsys.readouterr().out
    assert "## Research journal\n\n- **#2** Hypothesis: change 2.\n- **#5** The loss" in md
