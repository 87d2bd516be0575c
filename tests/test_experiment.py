"""One experiment: failures become statuses, and cheating never moves the measured metric."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import psutil
import pytest
import trainers
from conftest import FAST, requires_sandbox, run_with, waiting_children

from ratchet.engine.runner import experiment
from ratchet.engine.runner.supervision import LOG_CAP_BYTES, TAIL_BYTES
from ratchet.engine.workspace import layout


def harness_hash(ws: layout.Workspace) -> str:
    return hashlib.sha256((ws.root / "prepare.py").read_bytes()).hexdigest()


# --- failures are recorded outcomes --------------------------------------------------------


def test_raising_train_py_is_a_crash_with_its_output_tail(make_workspace):
    result = run_with(make_workspace(**FAST), trainers.RAISES)
    assert result.status == "crash"
    assert "boom from train.py" in result.error
    assert "Traceback" in result.tail and "boom from train.py" in result.tail
    assert result.train_log == [{"step": 1, "loss": 5.5, "lr": 0.001, "tok_s": 10.0,
                                 "elapsed": 0.1}]


def test_nan_loss_stops_training_as_a_crash(make_workspace):
    ws = make_workspace(**FAST)
    source = (ws.root / "train.py").read_text()
    poisoned = source.replace("loss = F.cross_entropy(", "loss = float('nan') * F.cross_entropy(")
    assert poisoned != source
    result = run_with(ws, poisoned)
    assert result.status == "crash"
    assert "loss is nan" in result.error


def test_nan_model_is_a_crash_not_a_metric(make_workspace):
    result = run_with(make_workspace(**FAST), trainers.NAN_WEIGHTS)
    assert result.status == "crash"
    assert result.val_bpb is None
    assert "not finite" in result.error


def test_hanging_train_py_is_killed_over_budget_at_its_budget(make_workspace):
    ws = make_workspace(budget_seconds=3.0)
    started = time.monotonic()
    result = run_with(ws, trainers.HANGS)
    # the 3 s allowance starts after the imports, which a loaded 2-core machine makes slow
    assert time.monotonic() - started < 45
    assert result.status == "over_budget"
    assert result.trainer_seconds is None  # it never handed a model over
    assert "about to hang" in result.tail


@pytest.mark.parametrize("source", [trainers.FLOODS, trainers.FLOODS_NO_NEWLINE],
                         ids=["lines", "no-newline"])
def test_flooding_stdout_is_bounded_and_never_blocks(make_workspace, source):
    ws = make_workspace(budget_seconds=3.0)
    started = time.monotonic()
    result = run_with(ws, source)
    assert time.monotonic() - started < 45
    assert result.status == "over_budget"
    assert result.output_bytes > LOG_CAP_BYTES
    log_size = (ws.root / "runs" / "exp" / "train.log").stat().st_size
    assert LOG_CAP_BYTES <= log_size < LOG_CAP_BYTES + 200
    assert 0 < len(result.tail) <= TAIL_BYTES


def test_train_py_that_saves_no_model_is_a_crash(make_workspace):
    result = run_with(make_workspace(**FAST), trainers.NO_MODEL)
    assert result.status == "crash"
    assert "save_model" in result.error


def test_kill_request_stops_the_experiment(make_workspace):
    ws = make_workspace(budget_seconds=60.0)
    (ws.root / "train.py").write_text(trainers.HANGS)
    started = time.monotonic()
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "k",
                            should_kill=lambda: time.monotonic() - started > 1.0)
    assert result.status == "killed"
    assert time.monotonic() - started < 10


def test_result_json_is_written_for_every_outcome(make_workspace):
    ws = make_workspace(**FAST)
    run_with(ws, trainers.RAISES, "a")
    written = (ws.root / "runs" / "a" / "result.json").read_text()
    assert '"status": "crash"' in written


# --- the evaluator gets ready while training runs -------------------------------------------


def test_evaluator_waits_during_training_and_is_gone_after_a_crash(make_workspace):
    ws = make_workspace(**FAST)
    (ws.root / "train.py").write_text(trainers.RAISES)
    during = []
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "e",
                            on_log=lambda _record: during.extend(waiting_children(settle=0)))
    assert result.status == "crash" and "boom from train.py" in result.error
    assert during, "no evaluator was started while train.py ran"
    # the sandboxed python goes with its bwrap parent, a moment later
    _, alive = psutil.wait_procs(during, timeout=10)
    assert alive == [] and waiting_children() == []


def test_waiting_harness_exits_without_a_result_when_no_model_comes(tmp_path):
    out = tmp_path / "eval.json"
    done = subprocess.run(
        [sys.executable, "-I", str(layout.harness_path()), "evaluate", "--wait",
         "--model", str(tmp_path / "model.pt2"), "--val", str(tmp_path / "val.bin"),
         "--tokens", "1024", "--shape", "8,256", "--out", str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not out.exists()


# --- the metric cannot be gamed --------------------------------------------------------------


def test_printed_val_bpb_is_ignored(make_workspace, honest_bpb):
    result = run_with(make_workspace("fake", **FAST), trainers.honest(after=trainers.FAKE_METRIC))
    assert result.status == "ok"
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-9)


@requires_sandbox
def test_validation_file_is_not_readable_by_train_py(make_workspace, honest_bpb):
    result = run_with(make_workspace("peek", **FAST), trainers.honest(trainers.READ_VALIDATION))
    assert result.sandboxed
    assert "validation unreadable" in result.tail
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-9)


@requires_sandbox
def test_sandboxed_train_py_cannot_edit_the_harness(make_workspace, honest_bpb):
    ws = make_workspace("edit", **FAST)
    before = harness_hash(ws)
    result = run_with(ws, trainers.honest(trainers.EDIT_HARNESS))
    assert "could not edit prepare.py" in result.tail
    assert result.status == "ok"
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-9)
    assert harness_hash(ws) == before


def test_unsandboxed_harness_edit_is_a_crash_and_is_restored(make_workspace, no_sandbox):
    ws = make_workspace("edit", **FAST)
    before = harness_hash(ws)
    result = run_with(ws, trainers.honest(trainers.EDIT_HARNESS))
    assert "edited prepare.py" in result.tail
    assert result.status == "crash"
    assert result.val_bpb is None
    assert "modified prepare.py" in result.error
    assert harness_hash(ws) == before


def test_edited_harness_is_refused_before_training(make_workspace):
    ws = make_workspace(**FAST)
    with open(ws.root / "prepare.py", "a") as f:
        f.write("\n# tweak\n")
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "x")
    assert result.status == "crash"
    assert "differs from Ratchet's frozen harness" in result.error
    assert not (ws.root / "runs" / "x" / "train.log").exists()


def test_monkeypatching_the_evaluator_changes_nothing(make_workspace, honest_bpb, no_sandbox):
    # unsandboxed on purpose: the hooks land in the workspace, and evaluation must ignore them
    ws = make_workspace("patch", **FAST)
    result = run_with(ws, trainers.honest(after=trainers.MONKEYPATCH))
    assert (ws.root / "sitecustomize.py").exists()
    assert result.status == "ok"
    assert result.val_bpb == pytest.approx(honest_bpb, abs=1e-9)


def test_model_that_peeks_at_the_next_byte_is_rejected(make_workspace):
    result = run_with(make_workspace(**FAST), trainers.PEEKING_MODEL)
    assert result.status == "crash"
    assert result.val_bpb is None
    assert "not causal" in result.error


def test_model_exported_for_other_windows_is_rejected(make_workspace):
    result = run_with(make_workspace(**FAST), trainers.WRONG_SHAPE)
    assert result.status == "crash"
    assert "takes shape" in result.error


def test_api_keys_do_not_reach_train_py(make_workspace, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value")
    leak = "import os\nprint('KEY=' + os.environ.get('ANTHROPIC_API_KEY', 'absent'))\n"
    result = run_with(make_workspace(**FAST), leak + trainers.RAISES)
    assert "KEY=absent" in result.tail
    assert "sk-ant-secret-value" not in result.tail
