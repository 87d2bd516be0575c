"""`ratchet import`: autoresearch runs (results.tsv + git history) become catalog."""

from __future__ import annotations

from pathlib import Path

import autoresearch_checkout as ar
import git
import pytest

from ratchet.cli import main, report
from ratchet.engine.protocol import events
from ratchet.engine.workspace import catalog, importer
from ratchet.engine.workspace import config as configmod

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PUBLISHED = SHARED / "data" / "autoresearch-results"
T0 = 1_760_000_000  # commit times of the test repository


def commit(repo: git.Repo, depth: int, when: int, message: str) -> str:
    root = Path(repo.working_tree_dir)
    (root / "train.py").write_text(f"DEPTH = {depth}\nprint('training')\n")
    repo.index.add(["train.py"])
    date = f"{when} +0000"
    return repo.index.commit(message, author_date=date, commit_date=date).hexsha


@pytest.fixture
def autoresearch_run(tmp_path) -> Path:
    """A checkout as autoresearch leaves it: kept commits on the branch, a discarded one reset
    away, a crash, one commit git no longer has, an extra column and non-ASCII text."""
    root = tmp_path / "autoresearch"
    root.mkdir()
    repo = git.Repo.init(root, initial_branch="autoresearch/nov25")
    (root / "prepare.py").write_text("TIME_BUDGET = 300\n")
    repo.index.add(["prepare.py"])
    repo.index.commit("initial", author_date=f"{T0 - 600} +0000", commit_date=f"{T0 - 600} +0000")
    base = commit(repo, 8, T0, "baseline")
    kept = commit(repo, 6, T0 + 400, "depth 6")
    discarded = commit(repo, 12, T0 + 800, "depth 12")
    repo.git.reset("--hard", kept)  # autoresearch's discard: the commit leaves the branch
    crashed = commit(repo, 64, T0 + 1200, "depth 64")
    repo.git.reset("--hard", kept)
    rows = [
        ("commit", "val_bpb", "memory_gb", "status", "tok_per_sec", "description"),
        (base[:7], "1.100000", "44.0", "keep", "1000", "baseline"),
        (kept[:7], "1.050000", "40.0", "keep", "1100", "depth 6 — plus élan ✓"),
        (discarded[:7], "1.070000", "48.0", "discard", "900", "depth 12"),
        (crashed[:7], "0.000000", "0.0", "crash", "", "depth 64 (OOM)"),
        ("deadbee", "1.040000", "40.1", "keep", "1200", "lost commit"),
    ]
    (root / "results.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n",
                                      encoding="utf-8")
    return root


def make_ws(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    configmod.save(path, configmod.Config())
    return path


def session_log(runs: Path) -> list[dict]:
    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    return list(events.iter_events(folder / "events.jsonl"))


def test_import_of_an_autoresearch_checkout(autoresearch_run, tmp_path, capsys):
    ws = make_ws(tmp_path / "ws")
    assert main.main(["import", str(autoresearch_run), "-C", str(ws)]) == 0
    assert "imported 5 experiments" in capsys.readouterr().out
    log = session_log(ws / "runs")
    start, end = log[0], log[-1]
    assert start["type"] == "session_start" and start["imported"] is True
    assert start["source"] == str(autoresearch_run / "results.tsv")
    assert start["branch"] == "autoresearch/nov25" and start["timing"] == "interpolated"
    assert end["type"] == "session_end" and end["kept"] == 2 and end["best_bpb"] == 1.04

    ends = [e for e in log if e["type"] == "exp_end"]
    assert [e["kind"] for e in ends] == ["baseline"] + ["candidate"] * 4
    assert [e["decision"] for e in ends] == ["baseline", "keep", "discard", "crash", "keep"]
    assert [e["val_bpb"] for e in ends] == [1.1, 1.05, 1.07, None, 1.04]
    assert ends[3]["status"] == "crash"
    assert ends[1]["delta"] == pytest.approx(-0.05) and ends[2]["delta"] == pytest.approx(0.02)
    assert ends[1]["description"] == "depth 6 — plus élan ✓"
    assert ends[1]["row"]["tok_per_sec"] == "1100"  # extra columns are kept
    assert ends[1]["result"]["peak_memory_mb"] == pytest.approx(40.0 * 1024)
    assert all(e["result"]["metric_source"] == "self_reported" for e in ends)

    # commit times stand in for timings; the discarded commit is found off the branch
    starts = {e["exp"]: e for e in log if e["type"] == "exp_start"}
    assert [starts[n]["t"] for n in (1, 2, 3, 4)] == [T0, T0 + 400, T0 + 800, T0 + 1200]
    assert starts[5]["t"] == T0 + 1600  # the lost commit: one mean step after its neighbour
    assert ends[0]["t"] == T0 + 400
    proposals = {e["exp"]: e for e in log if e["type"] == "proposal"}
    assert "-DEPTH = 8\n+DEPTH = 6" in proposals[2]["diff"]
    assert "+DEPTH = 12" in proposals[3]["diff"]
    assert proposals[5]["diff"] is None

    fig = report.figures(log)
    assert (fig.baseline_bpb, fig.best_bpb) == (1.1, 1.04)
    assert [k.exp for k in fig.kept] == [2, 5] and fig.crashed == 1 and fig.discarded == 1
    assert fig.timed_by == "experiments" and fig.seconds["experiments"] == 2000

    # importing twice is refused in one line; --force replaces the session, never duplicates
    assert main.main(["import", str(autoresearch_run), "-C", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ratchet: error:") and "already imported" in err
    assert err.count("\n") == 1
    assert main.main(["import", str(autoresearch_run), "-C", str(ws), "--force"]) == 0
    assert len(session_log(ws / "runs")) == len(log)

    assert main.main(["ls", "-C", str(ws)]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[3:7] == ["finished", "5", "2", "1.040000"] and row[-1] == "-"


def test_import_into_the_checkout_keeps_git_status_clean(autoresearch_run, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(autoresearch_run.parent)  # not a workspace: the session goes to PATH/runs
    assert main.main(["import", str(autoresearch_run)]) == 0
    assert (autoresearch_run / "runs").is_dir()
    repo = git.Repo(autoresearch_run)
    assert "runs/" in (Path(repo.git_dir) / "info" / "exclude").read_text()
    assert "runs" not in repo.git.status("--porcelain")
    assert main.main(["report", "-C", str(autoresearch_run), "--no-chart"]) == 0
    assert "baseline  1.100000" in capsys.readouterr().out


def test_import_refuses_what_it_cannot_read(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws")
    bad = tmp_path / "bad.tsv"
    bad.write_text("commit\tscore\nabc1234\t1.0\n")
    for path in (tmp_path / "nowhere", bad):
        assert main.main(["import", str(path), "-C", str(ws)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ratchet: error:") and err.count("\n") == 1
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"no published results in {PUBLISHED} "
                    f"(the team's shared folder sits beside the repository)")
def test_import_of_the_published_results(tmp_path, capsys):
    ws = make_ws(tmp_path / "ws")
    files = sorted(PUBLISHED.glob("*.tsv"))
    assert files
    for path in files:
        assert main.main(["import", str(path), "-C", str(ws)]) == 0, path
    capsys.readouterr()
    summaries = catalog.summarise_all(catalog.locate(ws))
    assert len(summaries) == len(files)
    by_source = {}
    for summary in summaries:
        log = catalog.load(summary.folder)
        by_source[Path(log[0]["source"]).name] = (summary, log)
    mlx, log = by_source.get("mlx-macmini.tsv", (None, None))
    if mlx is not None:  # 29 rows, 5 columns, every commit missing from git here
        assert (mlx.experiments, mlx.kept, mlx.state) == (29, 11, "finished")
        assert mlx.baseline_bpb == 2.667 and mlx.best_bpb == 1.66469
        assert log[0]["timing"] == "none"
        fig = report.figures(log)
        assert fig.candidates == 28 and fig.discarded == 17 and fig.crashed == 0
        assert fig.kept[0].description == "halve total batch size to 2^16"
    for summary, _ in by_source.values():
        assert main.main(["report", summary.id, "-C", str(ws), "--md"]) == 0
        assert capsys.readouterr().out.startswith("# Ratchet report:")


def test_a_torn_last_row_is_left_out_with_one_warning(autoresearch_run, tmp_path, capsys):
    ws = make_ws(tmp_path / "ws")
    tsv = autoresearch_run / "results.tsv"
    tsv.write_text(tsv.read_text(encoding="utf-8") + "abc1234\t1.0", encoding="utf-8")
    assert main.main(["import", str(tsv), "-C", str(ws)]) == 0
    captured = capsys.readouterr()
    assert "imported 5 experiments" in captured.out
    assert captured.err.count("ratchet: warning:") == 1 and "partial last line" in captured.err


# Three sessions in one checkout's results.tsv, as every run appending to it leaves them: the
# first has a crashed baseline before the one that ran and keeps one change that is worse than
# its best; the second begins at its baseline row; the third after a header line repeated.
SESSIONS = [
    ("commit", "val_bpb", "memory_gb", "status", "description"),
    ("a000001", "0.000000", "0.0", "crash", "baseline"),
    ("a000002", "2.600000", "44.0", "keep", "baseline"),
    ("a000003", "2.478000", "44.0", "keep", "matrix lr 0.04"),
    ("a000004", "2.550000", "44.0", "discard", "depth 12"),
    ("a000005", "2.490000", "43.0", "keep", "drop value embeddings (simpler)"),
    ("b000001", "2.793000", "44.0", "keep", "baseline"),
    ("b000002", "2.700000", "44.0", "keep", "warmup 0.1"),
    ("commit", "val_bpb", "memory_gb", "status", "description"),
    ("c000001", "1.500000", "44.0", "keep", "first run on the new box"),
    ("c000002", "1.400000", "44.0", "keep", "batch 2^18"),
]


def sessions_in(ws: Path) -> list[list[dict]]:
    return [catalog.load(s.folder) for s in catalog.summarise_all(catalog.locate(ws))]


def test_a_results_file_holding_several_sessions(tmp_path, capsys):
    checkout = ar.make(tmp_path / "autoresearch")
    ar.write_results(checkout / "results.tsv", SESSIONS)
    ws = make_ws(tmp_path / "ws")
    assert main.main(["import", str(checkout), "-C", str(ws)]) == 0
    out, err = capsys.readouterr()
    assert "imported 2 experiments" in out
    assert err.count("\n") == 1 and "holds 3 sessions" in err

    first, second, third = sessions_in(ws)
    ends = [e for e in first if e["type"] == "exp_end"]
    assert [e["kind"] for e in ends] == ["baseline"] * 2 + ["candidate"] * 3
    assert [e["decision"] for e in ends] == ["baseline", "baseline", "keep", "discard", "keep"]
    assert ends[0]["status"] == "crash" and ends[1]["status"] == "ok"
    # deltas against the best so far: the baseline that ran, then the best kept row
    assert [e["delta"] for e in ends[2:]] == pytest.approx([-0.122, 0.072, 0.012])
    fig = report.figures(first)
    assert (fig.baseline_bpb, fig.best_bpb, fig.crashed) == (2.6, 2.478, 0)
    assert [k.delta for k in fig.kept] == pytest.approx([-0.122, 0.0])
    assert first[-1]["baseline_bpb"] == 2.6 and first[-1]["best_bpb"] == 2.478

    fig = report.figures(second)
    assert (fig.baseline_bpb, fig.best_bpb) == (2.793, 2.7)
    assert [k.delta for k in fig.kept] == pytest.approx([-0.093])
    fig = report.figures(third)
    assert (fig.baseline_bpb, fig.best_bpb, fig.candidates) == (1.5, 1.4, 1)
    assert len({log[0]["session"] for log in (first, second, third)}) == 3


def test_each_file_of_a_checkout_is_its_own_import(tmp_path, capsys, monkeypatch):
    checkout = ar.make(tmp_path / "autoresearch")
    head = git.Repo(checkout).head.commit.hexsha[:7]  # both files start at the same commit
    rows = [SESSIONS[0], (head, *SESSIONS[1][1:]), *SESSIONS[2:6]]
    ar.write_results(checkout / "results.tsv", rows)
    ar.write_results(checkout / "results-gpu2.tsv", rows[:5])
    ws = make_ws(tmp_path / "ws")
    assert main.main(["import", str(checkout / "results.tsv"), "-C", str(ws)]) == 0
    assert main.main(["import", str(checkout / "results-gpu2.tsv"), "-C", str(ws)]) == 0
    logs = sessions_in(ws)
    assert sorted(Path(log[0]["source"]).name for log in logs) == [
        "results-gpu2.tsv", "results.tsv"]
    assert len({log[0]["session"] for log in logs}) == 2

    # a session of another file in the way is never replaced silently
    monkeypatch.setattr(importer, "session_name", lambda *_args: "20250101-000000-import-x")
    assert main.main(["import", str(checkout / "results.tsv"), "-C", str(ws), "--force"]) == 0
    ar.write_results(checkout / "results-old.tsv", rows[:4])
    capsys.readouterr()
    assert main.main(["import", str(checkout / "results-old.tsv"), "-C", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ratchet: error:") and err.count("\n") == 1
    assert "an import of" in err and "results.tsv" in err and "--force" in err
    assert main.main(["import", str(checkout / "results-old.tsv"), "-C", str(ws),
                      "--force"]) == 0
    assert sorted(Path(log[0]["source"]).name for log in sessions_in(ws)) == [
        "results-gpu2.tsv", "results-old.tsv"]
