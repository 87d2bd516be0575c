"""`ratchet run --compat autoresearch`: the checkout's own train.py, its metric self-reported."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import autoresearch_checkout as ar
import git
import pytest

from ratchet.engine.protocol import events, paths
from ratchet.engine.runner import compat, experiment
from ratchet.engine.workspace import autoresearch, catalog, layout, results_tsv
from ratchet.engine.workspace import config as configmod


@pytest.fixture
def checkout(tmp_path) -> Path:
    return ar.make(tmp_path / "autoresearch")


def ratchet(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_compat_run_end_to_end(checkout, tmp_path):
    done = ratchet("run", "--compat", "autoresearch", "--headless", "--max-experiments", "2",
                   "--tag", "c1", cwd=checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "val_bpb is self-reported" in done.stderr
    # autoresearch's train.py fixes its seed: said once, and only clear gains are kept
    (said,) = [line for line in done.stdout.splitlines() if "takes no seed" in line]
    assert "min_improvement = 0.01" in said
    repo = git.Repo(checkout)
    assert not repo.is_dirty(untracked_files=True)  # ratchet.toml and runs/ are excluded
    config = layout.Workspace(checkout).config()
    assert config.experiment.compat == "autoresearch"
    assert config.experiment.budget_seconds == 2.0  # prepare.py's TIME_BUDGET
    assert config.experiment.min_improvement == compat.MIN_IMPROVEMENT == 0.01
    assert (config.loop.baseline_seeds, config.loop.confirm) == (1, False)

    (folder,) = paths.sessions(layout.Workspace(checkout).runs_dir())
    # every run used the checkout's own .venv, though it trains in a worktree under runs/
    uses = ar.venv_uses(checkout)
    assert len(uses) == 3 and all(Path(u).is_relative_to(folder / "worktrees") for u in uses)
    log = list(events.iter_events(folder / "events.jsonl"))
    start = log[0]
    assert start["type"] == "session_start" and start["compat"] == "autoresearch"
    ends = [e for e in log if e["type"] == "exp_end"]
    assert [e["kind"] for e in ends] == ["baseline", "candidate", "candidate"]
    for end in ends:
        assert end["status"] == "ok", end["result"]["error"]
        assert end["result"]["metric_source"] == "self_reported"
        source = repo.git.show(f"{end['commit']}:train.py")
        assert end["val_bpb"] == ar.expected_bpb(source), end["description"]
        assert end["result"]["peak_memory_mb"] == 45060.2
        assert end["result"]["steps"] == 953 and end["result"]["reported"]["depth"] > 0
        assert end["margin"] == pytest.approx(0.01)
    assert any(e["type"] == "train_log" and e["tok_s"] == 12345.0 for e in log)
    assert log[-1]["type"] == "session_end" and log[-1]["reason"] == "max_experiments"

    # results.tsv stays in autoresearch's five columns, one row per experiment
    lines = (checkout / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(results_tsv.COLUMNS)
    rows = results_tsv.read(checkout / "results.tsv")
    assert len(rows) == 3 and rows[0]["memory_gb"] == "44.0"
    assert rows[0]["val_bpb"] == f"{ends[0]['val_bpb']:.6f}"

    report = ratchet("report", "--no-chart", cwd=checkout)
    assert report.returncode == 0, report.stderr
    assert "self-reported by train.py" in report.stdout

    # A second session appends to the same file; each begins at its baseline row, the header
    # stays the only one, so autoresearch's tools read it and `ratchet import` splits it.
    again = ratchet("run", "--compat", "autoresearch", "--headless", "--max-experiments", "1",
                    "--tag", "c2", cwd=checkout)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = (checkout / "results.tsv").read_text().splitlines()
    assert len(lines) == 1 + 3 + 2 and lines.count(lines[0]) == 1
    assert all(len(line.split("\t")) == 5 for line in lines)
    descriptions = [line.split("\t")[4] for line in lines[1:]]
    assert descriptions[0] == descriptions[3] == "baseline"
    ws = tmp_path / "ws"
    ws.mkdir()
    configmod.save(ws, configmod.Config())
    imported = ratchet("import", str(checkout), "-C", str(ws), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    sessions = catalog.summarise_all(layout.Workspace(ws))
    assert [s.experiments for s in sessions] == [3, 2]
    ran = [catalog.summarise(f) for f in paths.sessions(layout.Workspace(checkout).runs_dir())]
    assert [s.baseline_bpb for s in sessions] == [s.baseline_bpb for s in ran]


def test_compat_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    done = ratchet("run", "--compat", "autoresearch", "--headless", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("ratchet: error:") and "prepare.py" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "ratchet.toml").exists()


def prepared(checkout: Path, train: str | None = None, **experiment_settings):
    if train is not None:
        (checkout / "train.py").write_text(train)
    ws = compat.prepare_checkout(checkout, echo=lambda _line: None)
    config = ws.config()
    for key, value in experiment_settings.items():
        setattr(config.experiment, key, value)
    return ws, config


def run_once(checkout: Path, train: str, tmp_path: Path, **kwargs) -> experiment.Result:
    ws, config = prepared(checkout, train)
    return experiment.run(ws, config, tmp_path / "exp", **kwargs)


def test_without_a_venv_it_says_which_interpreter_runs_train_py(tmp_path):
    root = ar.make(tmp_path / "autoresearch", venv=False)
    said: list[str] = []
    compat.prepare_checkout(root, echo=said.append)
    (line,) = [s for s in said if "interpreter" in s]
    assert f"no .venv/bin/python in {root}" in line and sys.executable in line


def test_a_train_py_that_takes_a_seed_gets_the_native_statistics(tmp_path):
    seeded = ar.TRAIN.replace("SEED = 42", "SEED = int(os.environ.get('RATCHET_SEED', 42))") \
        .replace('print(f"depth:', 'print(f"seed:             {SEED}")\nprint(f"depth:')
    root = ar.make(tmp_path / "autoresearch", train=seeded)
    said: list[str] = []
    ws = compat.prepare_checkout(root, echo=said.append)
    config, native = ws.config(), configmod.Config()
    assert (config.loop.baseline_seeds, config.loop.confirm) == (native.loop.baseline_seeds, True)
    assert config.experiment.min_improvement == native.experiment.min_improvement
    assert any("reads RATCHET_SEED" in s for s in said)
    assert not any("takes no seed" in s for s in said)
    result = experiment.run(ws, config, tmp_path / "exp", seed=7)
    assert result.status == "ok" and result.reported["seed"] == 7


def test_a_run_without_val_bpb_is_a_crash_with_its_tail(checkout, tmp_path):
    result = run_once(checkout, "print('loss went nan, giving up')\n", tmp_path)
    assert result.status == "crash" and result.val_bpb is None
    assert "no `val_bpb:` line" in result.error
    assert "giving up" in result.tail
    assert result.metric_source == "self_reported"


def test_a_run_that_edits_prepare_py_is_undone(checkout, tmp_path):
    cheat = ("open('prepare.py', 'a').write('\\nTIME_BUDGET = 1\\n')\n"
             "print('---')\nprint('val_bpb: 0.5')\n")
    result = run_once(checkout, cheat, tmp_path)
    assert result.status == "crash" and "modified prepare.py" in result.error
    assert (checkout / "prepare.py").read_text() == ar.PREPARE


def test_the_budget_is_train_py_s_training_time(checkout, tmp_path):
    result = run_once(checkout, ar.TRAIN, tmp_path, budget=1.0)
    assert result.status == "ok", result.error
    assert result.reported["training_seconds"] == 1.0  # train.py trained for the budget
    assert result.training_seconds == 1.0
    assert (checkout / "prepare.py").read_text() == ar.PREPARE  # by import, not on disk
    assert run_once(checkout, ar.TRAIN, tmp_path).reported["training_seconds"] == 2.0


# after its summary: more output, a `---` among it, then a long wait (saving a checkpoint, say)
LINGERS = ar.TRAIN + "print('---')\nfor i in range(300):\n    print(f'saved: {i}')\n" \
    "time.sleep(60)\n"


@pytest.mark.parametrize("grace, handoff", [(1.0, 5.0), (30.0, 0.5)],
                         ids=["deadline-first", "handoff-first"])
def test_a_run_that_printed_its_summary_keeps_its_result(checkout, tmp_path, monkeypatch,
                                                         grace, handoff):
    monkeypatch.setattr(compat, "HANDOFF_S", handoff)
    ws, config = prepared(checkout, LINGERS, grace_seconds=grace)
    began = time.monotonic()
    result = experiment.run(ws, config, tmp_path / "exp")
    assert result.status == "ok", result.error
    assert result.val_bpb == ar.expected_bpb(LINGERS)
    assert result.reported["num_steps"] == 953  # 300 lines after it did not push it out
    assert time.monotonic() - began < 2.0 + min(grace, handoff) + 4.0


def test_a_run_that_fails_after_its_summary_keeps_its_result(checkout, tmp_path):
    result = run_once(checkout, ar.TRAIN + "raise SystemExit(3)\n", tmp_path)
    assert result.status == "ok" and result.val_bpb == ar.expected_bpb(ar.TRAIN)


def test_train_log_is_written_as_output_arrives(checkout, tmp_path):
    slow = ar.TRAIN.replace("print()\nval_bpb", "print(flush=True)\ntime.sleep(3)\nval_bpb")
    ws, config = prepared(checkout, slow)
    out = tmp_path / "exp"
    run = threading.Thread(target=experiment.run, args=(ws, config, out))
    run.start()
    seen = b""  # the log while train.py sleeps: its progress there, its summary not yet
    while run.is_alive() and b"step 00003" not in seen:
        time.sleep(0.05)
        seen = (out / "train.log").read_bytes() if (out / "train.log").is_file() else b""
    run.join()
    assert b"step 00003" in seen and b"val_bpb" not in seen


def test_startup_and_compile_seconds_come_from_the_summary(checkout, tmp_path):
    train = ar.TRAIN.replace('print(f"depth:', 'print("startup_seconds:  3.5")\n'
                             'print("compile_seconds:  12.25")\nprint(f"depth:')
    result = run_once(checkout, train, tmp_path)
    assert (result.startup_seconds, result.compile_seconds) == (3.5, 12.25)


def test_summary_and_budget_parsing():
    text = "step 00001 | loss: 3.0\n---\nval_bpb:          0.997900\npeak_vram_mb:     45060.2\n" \
           "total_tokens_M:   1,499.6\nnote: text\n"
    assert compat.parse_summary(text) == {"val_bpb": 0.9979, "peak_vram_mb": 45060.2,
                                          "total_tokens_M": 1499.6}
    assert autoresearch.time_budget("TIME_BUDGET = 300  # seconds\n") == 300.0
    assert autoresearch.time_budget("TIME_BUDGET = 5 * 60\n") is None  # not plain: default
    assert autoresearch.time_budget("import os\n") is None
