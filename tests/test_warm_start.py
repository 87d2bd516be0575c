"""Training processes started ahead of their turn measure exactly what a cold start does."""

from __future__ import annotations

import pytest
import trainers
from conftest import waiting_children
from test_experiment import FAST, run_with

from ratchet.engine.runner import experiment, warm_trainer
from ratchet.engine.workspace import layout

MARKER = '''
import sys
print(f"torch preloaded: {'torch' in sys.modules}", flush=True)
'''


@pytest.mark.parametrize(("source", "suits"), [
    ("import os\nimport torch\nprint(os.environ.get('HOME'), os.getenv('USER'))\n", True),
    ("import os\nos.environ['PYTORCH_CUDA_ALLOC_CONF'] = 'expandable_segments:True'\n", False),
    ("import os\nos.environ.setdefault('OMP_NUM_THREADS', '4')\n", False),
    ("from os import environ\nenviron.update(TORCH_LOGS='+dynamo')\n", False),
    ("import os\nos.putenv('X', '1')\n", False),
    ("import os\nenv = os.environ\nenv['X'] = '1'\n", False),
    ("import os\ndel os.environ['X']\n", False),
    ("def broken(:\n", False),
])
def test_only_a_train_py_that_sets_no_environment_starts_warm(tmp_path, source, suits):
    (tmp_path / "train.py").write_text(source)
    assert warm_trainer.suits(layout.Workspace(tmp_path)) is suits


def test_warm_started_run_measures_what_a_cold_one_does(make_workspace):
    ws = make_workspace(**FAST)
    cold = run_with(ws, MARKER + trainers.honest(), "cold")
    assert cold.status == "ok", cold.error
    # started on the spot, it too runs train.py only after its imports: one clock for all
    assert "torch preloaded: True" in (ws.root / "runs" / "cold" / "train.log").read_text()
    assert 0 < cold.trainer_seconds < FAST["budget_seconds"]
    assert not (ws.root / "runs" / "cold" / "trainer").exists()

    stage = ws.root / "runs" / "stage"
    warm = experiment.prestart(ws, ws.config(), stage)
    logged = []
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "warm", warm=warm,
                            on_log=logged.append)
    assert result.status == "ok", result.error
    assert result.val_bpb == cold.val_bpb
    assert result.sandboxed == cold.sandboxed
    assert logged == [{"step": 1, "loss": 1.0, "lr": 0.0, "tok_s": 1.0, "elapsed": 0.1}]
    out = ws.root / "runs" / "warm"
    assert "torch preloaded: True" in (out / "train.log").read_text()
    assert (out / "model" / "model.pt2").is_file()
    assert not stage.exists() and waiting_children() == []


def test_train_py_that_sets_the_environment_starts_cold(make_workspace):
    ws = make_workspace(**FAST)
    (ws.root / "train.py").write_text(
        "import os\nos.environ['OMP_NUM_THREADS'] = '1'\n" + MARKER + trainers.honest())
    warm = experiment.prestart(ws, ws.config(), ws.root / "runs" / "stage")
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "e", warm=warm)
    assert result.status == "ok", result.error
    assert "torch preloaded: False" in (ws.root / "runs" / "e" / "train.log").read_text()
    assert waiting_children() == []


def test_crash_in_a_warm_started_run_is_reported_like_a_cold_one(make_workspace):
    ws = make_workspace(**FAST)
    (ws.root / "train.py").write_text(trainers.RAISES)
    warm = experiment.prestart(ws, ws.config(), ws.root / "runs" / "stage")
    result = experiment.run(ws, ws.config(), ws.root / "runs" / "e", warm=warm)
    assert result.status == "crash"
    assert result.error == "train.py exited with 1; its last line: RuntimeError: boom from train.py"
    assert "Traceback" in result.tail


def test_warm_start_can_be_turned_off(make_workspace):
    ws = make_workspace(**FAST)
    config = ws.config()
    config.experiment.warm_start = False
    assert experiment.prestart(ws, config, ws.root / "runs" / "stage") is None
