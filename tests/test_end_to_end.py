"""The quick-start path: a new workspace, one real 20 s CPU experiment, a trustworthy metric."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from ratchet.cli import main
from ratchet.engine.runner import experiment
from ratchet.engine.workspace import layout
from ratchet.model import prepare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Init a workspace through the CLI and run the default 20 s experiment once."""
    root = tmp_path_factory.mktemp("e2e") / "ws"
    with pytest.MonkeyPatch.context() as patch:  # test_hidden_validation.py runs the probe
        patch.setenv("RATCHET_PROBE_SECONDS", "0")
        assert main.main(["init", str(root), "--device", "cpu"]) == 0
    assert main.main(["experiment", "-C", str(root), "-q"]) == 0
    runs = sorted((root / "runs" / "experiments").iterdir())
    result = json.loads((runs[-1] / "result.json").read_text())
    return root, runs[-1], result


def test_default_cpu_experiment_learns_far_below_uniform(trained):
    _, _, result = trained
    assert result["status"] == "ok"
    assert math.isfinite(result["val_bpb"])
    # 8.0 bits is a uniform byte model; the CPU profile reaches 2.5-3.2 in 20 s on 2 cores,
    # depending on how fast the cores are (steps differ by half between machines seen)
    assert result["val_bpb"] < 4.0
    assert result["steps"] > 100
    assert 19.0 <= result["training_seconds"] < 25.0


def test_summary_block_is_printed(trained, capsys):
    root, _, _ = trained
    main.main(["experiment", "-C", str(root), "-q", "--budget", "2"])
    out = capsys.readouterr().out
    assert "\nval_bpb:" in out and "status:           ok" in out
    assert "training_seconds:" in out and "num_params_M:" in out


def test_training_log_lines_reach_the_result(trained):
    _, run_dir, _ = trained
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert len(records) > 10
    assert {"step", "loss", "lr", "tok_s", "elapsed"} <= set(records[0])
    assert records[-1]["loss"] < records[0]["loss"]


def test_evaluating_one_saved_model_twice_gives_the_same_val_bpb(trained, tmp_path):
    root, run_dir, result = trained
    ws = layout.Workspace(root)
    config = ws.config()
    corpus = ws.corpus(config)
    shape = (config.data.eval_batch, config.data.eval_seq)
    model = tmp_path / "model.pt2"
    shutil.copy(run_dir / "model" / "model.pt2", model)
    first = prepare.evaluate_bpb(str(model), str(corpus.val_path), config.data.eval_tokens,
                                 "cpu", shape)
    second = prepare.evaluate_bpb(str(model), str(corpus.val_path), config.data.eval_tokens,
                                  "cpu", shape)
    assert first["val_bpb"] == pytest.approx(second["val_bpb"], abs=1e-6)
    assert first["val_bpb"] == pytest.approx(result["val_bpb"], abs=1e-6)


def test_experiment_summary_text_matches_result(trained):
    _, run_dir, result = trained
    text = experiment.summary_text(experiment.Result(**{
        k: v for k, v in result.items() if k in experiment.Result.__dataclass_fields__}))
    assert f"val_bpb:          {result['val_bpb']:.6f}" in text
