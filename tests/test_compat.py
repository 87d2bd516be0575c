"""`ratchet run --compat autoresearch`: the checkout's own train.py, its metric self-reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import git
import pytest

from ratchet.engine.loop import results_tsv
from ratchet.engine.protocol import events, paths
from ratchet.engine.runner import compat, experiment
from ratchet.engine.workspace import layout

# Shaped like autoresearch's: constants at the top, imports its own prepare.py, `\r` progress
# lines, and the summary block after `---`. The metric is a plain function of the constants.
TRAIN = '''import time

import prepare

DEPTH = 4
MATRIX_LR = 0.02
WARMUP_RATIO = 0.0

t0 = time.time()
for step in range(4):
    print(f"\\rstep {step:05d} ({step * 25:.1f}%) | loss: {3.0 - step * 0.1:.6f} | lrm: 1.00 | "
          f"dt: 10ms | tok/sec: 12,345 | mfu: 1.0% | epoch: 1 | remaining: 0s    ",
          end="", flush=True)
    time.sleep(0.3)
print()
val_bpb = prepare.evaluate_bpb(MATRIX_LR, DEPTH)
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {prepare.TIME_BUDGET:.1f}")
print(f"total_seconds:    {time.time() - t0:.1f}")
print("peak_vram_mb:     45060.2")
print("mfu_percent:      39.80")
print("total_tokens_M:   499.6")
print("num_steps:        953")
print("num_params_M:     50.3")
print(f"depth:            {DEPTH}")
'''

PREPARE = '''"""Frozen data and evaluation (tiny)."""
MAX_SEQ_LEN = 64
TIME_BUDGET = 2  # training seconds


def evaluate_bpb(lr, depth):
    return 1.0 + (lr - 0.04) ** 2 * 100 + abs(depth - 6) * 0.01
'''


def expected_bpb(source: str) -> float:
    scope: dict = {}
    exec(source.split("t0 = time.time()")[0].replace("import prepare", ""), scope)
    value = 1.0 + (scope["MATRIX_LR"] - 0.04) ** 2 * 100 + abs(scope["DEPTH"] - 6) * 0.01
    return float(f"{value:.6f}")


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "autoresearch"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    (root / "prepare.py").write_text(PREPARE)
    (root / "program.md").write_text("# autoresearch\nImprove val_bpb by editing train.py.\n")
    (root / ".gitignore").write_text("results.tsv\n")
    repo = git.Repo.init(root, initial_branch="master")
    repo.index.add(["train.py", "prepare.py", "program.md", ".gitignore"])
    repo.index.commit("autoresearch")
    return root


def ratchet(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ratchet.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_compat_run_end_to_end(checkout):
    done = ratchet("run", "--compat", "autoresearch", "--headless", "--max-experiments", "2",
                   "--tag", "c1", cwd=checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "val_bpb is self-reported" in done.stderr
    repo = git.Repo(checkout)
    assert not repo.is_dirty(untracked_files=True)  # ratchet.toml and runs/ are excluded
    config = layout.Workspace(checkout).config()
    assert config.experiment.compat == "autoresearch"
    assert config.experiment.budget_seconds == 2.0  # prepare.py's TIME_BUDGET

    (folder,) = paths.sessions(layout.Workspace(checkout).runs_dir())
    log = list(events.iter_events(folder / "events.jsonl"))
    start = log[0]
    assert start["type"] == "session_start" and start["compat"] == "autoresearch"
    ends = [e for e in log if e["type"] == "exp_end"]
    assert [e["kind"] for e in ends] == ["baseline", "candidate", "candidate"]
    for end in ends:
        assert end["result"]["metric_source"] == "self_reported"
        source = repo.git.show(f"{end['commit']}:train.py")
        assert end["val_bpb"] == expected_bpb(source), end["description"]
        assert end["result"]["peak_memory_mb"] == 45060.2
        assert end["result"]["steps"] == 953 and end["result"]["reported"]["depth"] > 0
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


def test_compat_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    done = ratchet("run", "--compat", "autoresearch", "--headless", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("ratchet: error:") and "prepare.py" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "ratchet.toml").exists()


def run_once(checkout: Path, train: str, tmp_path: Path) -> experiment.Result:
    (checkout / "train.py").write_text(train)
    ws = compat.prepare_checkout(checkout, echo=lambda _line: None)
    return experiment.run(ws, ws.config(), tmp_path / "exp")


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
    assert (checkout / "prepare.py").read_text() == PREPARE


def test_summary_and_budget_parsing():
    text = "step 00001 | loss: 3.0\n---\nval_bpb:          0.997900\npeak_vram_mb:     45060.2\n" \
           "total_tokens_M:   1,499.6\nnote: text\n"
    assert compat.parse_summary(text) == {"val_bpb": 0.9979, "peak_vram_mb": 45060.2,
                                          "total_tokens_M": 1499.6}
    assert compat.time_budget("TIME_BUDGET = 300  # seconds\n") == 300.0
    assert compat.time_budget("TIME_BUDGET = 5 * 60\n") is None  # not plain: the default applies
    assert compat.time_budget("import os\n") is None
