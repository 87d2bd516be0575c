"""`ratchet import` as an autoresearch user meets it: times from each commit to the next, a
confirmation imported as one, a grown results.tsv imported again, the branch each session ran
on, and "the newest session" meaning the newest by start time."""

from __future__ import annotations

import os
from pathlib import Path

import autoresearch_checkout as ar
import git
import pytest
from test_compat_statistics import run_session
from test_import import commit, make_ws

from ratchet.cli import headless, main
from ratchet.engine.loop import ledger
from ratchet.engine.protocol import paths
from ratchet.engine.runner import compat
from ratchet.engine.workspace import catalog, results_tsv
from ratchet.engine.workspace import config as configmod

T0 = 1_760_000_000
HEADER = ("commit", "val_bpb", "memory_gb", "status", "description")


def spans(log: list[dict]) -> dict[int, tuple[float, float]]:
    starts = {e["exp"]: e["t"] for e in log if e["type"] == "exp_start"}
    return {e["exp"]: (starts[e["exp"]], e["t"]) for e in log if e["type"] == "exp_end"}


def imported(ws: Path) -> list[list[dict]]:
    return [catalog.load(s.folder) for s in catalog.summarise_all(catalog.locate(ws))]


@pytest.fixture
def two_sessions(tmp_path) -> Path:
    """A checkout whose results.tsv two sessions wrote, a day after its base commit: each
    baseline row names that old commit (or the last session's best), its candidates commits
    made as they ran, and the file and autoresearch's run.log written as the last run ended."""
    root = tmp_path / "autoresearch"
    root.mkdir()
    repo = git.Repo.init(root, initial_branch="master")
    base = commit(repo, 8, T0 - 86_400, "initial")
    repo.git.checkout("-b", "autoresearch/mon")
    first = [commit(repo, 7, T0 + 300, "depth 7"), commit(repo, 6, T0 + 600, "depth 6")]
    repo.git.checkout("-b", "autoresearch/tue")
    second = [commit(repo, 5, T0 + 5_000, "depth 5"), commit(repo, 4, T0 + 5_300, "depth 4")]
    rows = [HEADER,
            (base[:7], "1.100000", "44.0", "keep", "baseline"),
            (first[0][:7], "1.090000", "44.0", "keep", "depth 7"),
            (first[1][:7], "1.080000", "44.0", "keep", "depth 6"),
            (first[1][:7], "1.070000", "44.0", "keep", "baseline"),
            (second[0][:7], "1.060000", "44.0", "keep", "depth 5"),
            (second[1][:7], "1.050000", "44.0", "keep", "depth 4")]
    ar.write_results(root / "results.tsv", rows)
    (root / "run.log").write_text("---\nval_bpb: 1.05\n")
    os.utime(root / "run.log", (T0 + 5_590, T0 + 5_590))
    os.utime(root / "results.tsv", (T0 + 5_595, T0 + 5_595))
    repo.git.checkout("master")  # the checkout has moved on since
    return root


def test_each_experiment_runs_from_its_commit_to_the_next(two_sessions, tmp_path):
    ws = make_ws(tmp_path / "ws")
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 0
    first, second = imported(ws)
    # the baseline ran the step before the session's first commit, not since its old commit
    assert spans(first) == {1: (T0, T0 + 300), 2: (T0 + 300, T0 + 600),
                            3: (T0 + 600, T0 + 900)}
    assert first[0]["t"] == T0
    # the last experiment of the file ends when autoresearch's run.log was last written
    assert spans(second) == {1: (T0 + 4_700, T0 + 5_000), 2: (T0 + 5_000, T0 + 5_300),
                             3: (T0 + 5_300, T0 + 5_590)}
    assert second[0]["t"] == T0 + 4_700


def test_status_of_an_import_names_the_branch_it_ran_on(two_sessions, tmp_path):
    ws = make_ws(tmp_path / "ws")
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 0
    folders = [s.folder for s in catalog.summarise_all(catalog.locate(ws))]
    assert [imported_log[0]["branch"] for imported_log in imported(ws)] == [
        "autoresearch/mon", "autoresearch/tue"]
    status = headless.status_text(folders[0])
    (line,) = [s for s in status.splitlines() if s.startswith("branch")]
    assert "autoresearch/mon" in line and "master" not in line
    assert "pid" not in line and "imported from" in status


def test_a_grown_results_file_imports_its_new_sessions(two_sessions, tmp_path, capsys):
    ws = make_ws(tmp_path / "ws")
    tsv = two_sessions / "results.tsv"
    lines = tsv.read_text().splitlines(keepends=True)
    tsv.write_text("".join(lines[:4]))  # the first session alone
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 0
    (alone,) = catalog.summarise_all(catalog.locate(ws))
    capsys.readouterr()
    tsv.write_text("".join(lines[:6]))  # the second session begins
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 0
    assert "imported 2 experiments" in capsys.readouterr().out
    tsv.write_text("".join(lines))  # and grows
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 0
    assert "imported 3 experiments" in capsys.readouterr().out
    summaries = catalog.summarise_all(catalog.locate(ws))
    assert [s.experiments for s in summaries] == [3, 3]
    assert summaries[0].id == alone.id  # the session that did not change stays as it was
    # nothing new: still refused in one line
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 2
    err = capsys.readouterr().err
    assert "already imported" in err and err.count("\n") == 1
    # a file changed otherwise (not only grown) is not replaced without --force
    tsv.write_text("".join(lines).replace("1.090000", "1.095000"))
    assert main.main(["import", str(two_sessions), "-C", str(ws)]) == 2
    assert "--force" in capsys.readouterr().err
    assert [s.experiments for s in catalog.summarise_all(catalog.locate(ws))] == [3, 3]


def seeded_checkout(tmp_path: Path) -> Path:
    seeded = ar.REAL.replace("SEED = 42", "SEED = int(os.environ.get('RATCHET_SEED', 42))")
    root = ar.make(tmp_path / "autoresearch", train=seeded)
    config = compat.checkout_config(root)
    config.loop.baseline_seeds = 2  # the paired rule: a winner runs on both seeds
    configmod.save(root, config)
    return root


def test_the_import_reads_the_labels_the_loop_writes():
    # the loop's ledger writes results.tsv rows; the importer, a layer below it, reads their
    # labels from results_tsv
    end = {"kind": "confirm", "description": "wider", "commit": "abc1234"}
    assert ledger.row(end, "discard")[4] == results_tsv.CONFIRM + "wider"
    moved = {"type": "exp_end", "kind": "confirm", "decision": "confirm_again", "confirms": 4,
             "description": "wider", "commit": "abc1234"}
    assert ledger.rows_for(moved, {})[-1][4].endswith(results_tsv.AGAIN)


def test_an_import_of_ratchet_s_rows_reads_as_the_native_session(tmp_path, capsys):
    """Two compat sessions with the paired rule: a kept change's further run is a row of its
    own (`confirm: ...`); the import counts one keep, as the session did, and names each
    session's branch."""
    root = seeded_checkout(tmp_path)
    said: list[str] = []
    run_session(root, said, "one", [("MATRIX_LR", 0.04)], 1)
    run_session(root, said, "two", [("DEPTH", 6)], 1)
    native = [catalog.summarise(f) for f in paths.sessions(root / "runs")]
    assert [s.kept for s in native] == [1, 1]
    ws = make_ws(tmp_path / "ws")
    assert main.main(["import", str(root), "-C", str(ws)]) == 0
    capsys.readouterr()
    logs = imported(ws)
    assert [catalog.summarise(s.folder).kept for s in catalog.summarise_all(
        catalog.locate(ws))] == [1, 1]
    for log, ran in zip(logs, native, strict=True):
        ends = [e for e in log if e["type"] == "exp_end"]
        assert [(e["kind"], e["decision"]) for e in ends] == [
            ("baseline", "baseline"), ("baseline", "baseline"),
            ("candidate", "pending_confirm"), ("confirm", "keep")]
        assert ends[-1]["confirms"] == ends[-2]["exp"]
        assert log[-1]["best_bpb"] == ran.best_bpb and log[-1]["kept"] == 1
        # no experiment took a day (or nothing): times come from this session's own commits
        assert all(0 < end - start < 120 for start, end in spans(log).values()), spans(log)
    assert [log[0]["branch"] for log in logs] == ["ratchet/one", "ratchet/two"]


def test_the_newest_session_is_the_newest_by_start_time(tmp_path, capsys):
    """A run, then an import of older runs: `ratchet status` with no session still shows the
    run, not the import written after it."""
    root = seeded_checkout(tmp_path)
    run_session(root, [], "now", [("MATRIX_LR", 0.04)], 1)
    older = tmp_path / "older"
    older.mkdir()
    repo = git.Repo.init(older, initial_branch="autoresearch/old")
    base = commit(repo, 8, T0, "baseline")
    ar.write_results(older / "results.tsv", [
        HEADER, (base[:7], "1.1", "44.0", "keep", "baseline"),
        (commit(repo, 6, T0 + 300, "depth 6")[:7], "1.0", "44.0", "keep", "depth 6")])
    assert main.main(["import", str(older), "-C", str(root)]) == 0
    capsys.readouterr()
    assert [p.name for p in paths.sessions(root / "runs")][-1] == "now"
    assert main.main(["status", "-C", str(root)]) == 0
    assert capsys.readouterr().out.startswith("session   now ")
