"""The GPU path as far as a CPU-only machine can take it: the CUDA profile `ratchet init` writes,
the template's CUDA branches (bf16 autocast, torch.compile, fused AdamW) at tiny size on CPU, the
GPU pane against a stand-in NVML, one worker per device, and the clock a CUDA workspace uses."""

from __future__ import annotations

import ast
import contextlib
import json
import sys
import threading
import types
from pathlib import Path

import git
import pytest
import torch
import torch.nn.functional as F
from dashboard_helpers import caught_up
from test_resources import fake_pynvml

from ratchet.cli import main
from ratchet.engine.data import profiles
from ratchet.engine.runner import cpu_clock, devices, experiment
from ratchet.engine.workers import pool, telemetry
from ratchet.engine.workspace import layout
from ratchet.tui.app import RatchetDashboard
from ratchet.tui.sources import LogFileSource

TEMPLATE = Path(layout.__file__).resolve().parents[2] / "model" / "train.py"


@pytest.fixture(autouse=True)
def _no_probe(monkeypatch):
    monkeypatch.setenv("RATCHET_PROBE_SECONDS", "0")  # test_hidden_validation.py runs it


def _constants(source: str) -> dict:
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _corpus(root: Path) -> Path:
    root.mkdir()
    for i in range(60):  # a validation split longer than the GPU profile's 2048-token window
        (root / f"doc{i}.txt").write_text("".join(f"doc {i} line {j}: {i * j} and {j ** 3}\n"
                                                  for j in range(200)))
    return root


@pytest.mark.parametrize("tokenizer", ["bytes", "bpe"])
def test_init_for_cuda_writes_the_gpu_profile(tmp_path, capsys, tokenizer):
    ws_dir = tmp_path / "ws"
    code = main.main(["init", str(ws_dir), "--device", "cuda", "--text",
                      str(_corpus(tmp_path / "text")), "--tokenizer", tokenizer,
                      *(["--vocab-size", "300"] if tokenizer == "bpe" else [])])
    assert code == 0, capsys.readouterr().err
    written = _constants((ws_dir / "train.py").read_text())
    template = _constants(TEMPLATE.read_text())
    expected = {**template, **profiles.train_constants("cuda", tokenizer)}
    assert {k: written[k] for k in expected} == expected
    assert written["COMPILE"] is True and written["N_EMBD"] == 768 and written["SEQ_LEN"] == 2048
    if tokenizer == "bpe":
        assert written["GRAD_ACCUM"] == 8 and written["LEARNING_RATE"] == 0.0018
    config = layout.Workspace(ws_dir).config()
    assert config.experiment.device == "cuda"
    assert config.experiment.budget_seconds == 360.0
    assert config.experiment.eval_timeout_seconds == 300.0
    for key, value in profiles.EVAL["cuda"].items():
        assert getattr(config.data, key) == value
    # the wall clock: on a GPU faster code should win more steps, and devices are shown
    assert config.experiment.clock == "auto"
    assert experiment.run_clock(config) == cpu_clock.WALL
    assert cpu_clock.allowance(experiment.run_clock(config), 360.0) == (360.0, 0.0)
    assert "RATCHET_CORES" in cpu_clock.trainer_env(cpu_clock.WALL)
    assert "OMP_WAIT_POLICY" not in cpu_clock.trainer_env(cpu_clock.WALL)


def test_an_auto_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    assert devices.resolve("auto") == "cuda"
    assert cpu_clock.resolve("auto", devices.resolve("auto")) == cpu_clock.WALL
    assert cpu_clock.resolve("cpu", "cuda") == cpu_clock.CPU  # a setting always wins


def _template_model(**constants) -> dict:
    """The template's hyperparameters and model classes, with `constants` overriding them,
    loaded without its training loop (which needs the harness and a workspace)."""
    source = TEMPLATE.read_text()
    source = source[:source.index("# Set-up")]
    source = source.replace("import prepare\n", "")
    fake_prepare = types.SimpleNamespace(VOCAB_SIZE=64)
    namespace: dict = {"__name__": "template_train", "prepare": fake_prepare}
    exec(compile(source, str(TEMPLATE), "exec"), namespace)
    namespace.update(constants)
    return namespace


def test_the_templates_cuda_branches_run_on_cpu_at_tiny_size():
    tiny = _template_model(N_LAYER=2, N_EMBD=32, N_HEAD=2, SEQ_LEN=16, BATCH_SIZE=2)
    torch.manual_seed(0)
    model = tiny["GPT"](max_len=16)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # as the template on CUDA: fused AdamW, torch.compile (its graph capture without a C
    # compiler: aot_eager) and bf16 autocast, with the loss in float32
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-2,
                                  fused=True)
    step_model = torch.compile(model, backend="aot_eager")
    autocast = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    x = torch.randint(0, 64, (2, 16))
    losses = []
    for _ in range(3):
        with autocast:
            logits = step_model(x)
            assert logits.dtype == torch.bfloat16
            loss = F.cross_entropy(logits.float().view(-1, 64), x.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    # the eager model agrees with the compiled one
    with torch.no_grad(), autocast:
        assert torch.allclose(model(x).float(), step_model(x).float(), atol=0.1)


def _gpu_session(path: Path, samples: list[dict]) -> None:
    t = 1.8e9
    lines = [{"t": t, "type": "session_start", "session": "gpu", "tag": "g", "config": {},
              "agent": "offline", "pid": 1}]
    for n, worker in ((1, "0"), (2, "1")):
        lines.append({"t": t + n, "type": "exp_start", "exp": n, "kind": "candidate",
                      "commit": f"{n:07x}", "seed": 1, "budget": 60, "worker": worker,
                      "description": f"change {n}"})
    lines += [{"t": t + 3 + i, "type": "resources", **s} for i, s in enumerate(samples)]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


@pytest.mark.asyncio
async def test_the_gpu_pane_shows_nvml_readings(tmp_path, monkeypatch):
    monkeypatch.setattr(telemetry, "_NVML", telemetry._Nvml())
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    samples = [telemetry.sample() for _ in range(3)]
    assert {s["source"] for s in samples} == {"nvml"}
    assert telemetry.hardware()["gpus"] == ["NVIDIA H100 80GB HBM3", "NVIDIA H100"]
    path = tmp_path / "events.jsonl"
    _gpu_session(path, samples)
    app = RatchetDashboard(LogFileSource(path))
    async with app.run_test(size=(160, 48)) as pilot:
        await caught_up(pilot)
        pane = app.screen.query_one("GpuPane")
        assert pane.border_title == "3 GPU"
        first = str(app.screen.query_one("#gpu0-label").content)
        second = str(app.screen.query_one("#gpu1-label").content)
        assert first.startswith("GPU0 NVIDIA H100 80GB HBM3 · #1"), first
        assert "util 97%" in first and "mem 40.0/80 GiB" in first
        assert "61°C" in first and "312 W" in first
        assert second.startswith("GPU1 NVIDIA H100 · #2"), second
        assert list(app.screen.query_one("#gpu0-spark").data) == [97, 97, 97]
        assert not app.screen.query("#cpu-label")


def test_cli_gpus_parse_to_devices():
    """`ratchet run --gpus 0,1` names two devices (the loop on them: test_parallel.py)."""
    args = main.build_parser().parse_args(["run", "--headless", "--gpus", "0,1"])
    assert args.gpus == [0, 1]


def test_one_worker_per_device_each_seeing_only_its_own(make_workspace, monkeypatch, tmp_path):
    ws = make_workspace("gpus")
    repo = git.Repo(ws.root)
    seen: list[tuple[str, str, dict, Path]] = []
    prestarted: list[dict] = []
    lock = threading.Lock()

    def fake_run(tree, config, out_dir, *, seed=None, env=None, **kwargs):
        with lock:
            seen.append((threading.current_thread().name, tree.root.name, dict(env), out_dir))
        return experiment.Result(status="ok", seed=seed, val_bpb=2.0)

    monkeypatch.setattr(experiment, "run", fake_run)
    monkeypatch.setattr(experiment, "prestart",
                        lambda ws, config, stage, env=None: prestarted.append(dict(env)))
    hooks = pool.Hooks(on_log=lambda job, record: None, on_phase=lambda job, name: None)
    backend = pool.LocalBackend(ws, ws.config(), repo, tmp_path / "session", [0, 1], hooks)
    assert backend.workers == ["0", "1"]
    head = repo.head.commit.hexsha
    outcomes: list[pool.Outcome] = []
    try:
        for exp, worker in ((1, "0"), (2, "1"), (3, "0")):
            job = pool.Job(exp=exp, kind="candidate", commit=head, seed=exp, description="x")
            backend.start(job, worker)
            while exp == 2 and len(outcomes) < 2:  # worker 0 takes #3 once #1 is back
                outcomes += backend.wait(10.0)
        while len(outcomes) < 3:
            outcomes += backend.wait(10.0)
    finally:
        backend.close()
    by_exp = {int(out.name.split("-")[1]): (thread, tree, env) for thread, tree, env, out in seen}
    assert by_exp[1] == ("worker-0", "0", {"CUDA_VISIBLE_DEVICES": "0"})
    assert by_exp[2] == ("worker-1", "1", {"CUDA_VISIBLE_DEVICES": "1"})
    assert by_exp[3] == ("worker-0", "0", {"CUDA_VISIBLE_DEVICES": "0"})
    assert sorted(o.job.exp for o in outcomes) == [1, 2, 3]
    assert all(o.result.status == "ok" for o in outcomes)
    # each device's next trainer is started ahead with that device alone visible
    assert prestarted == [{"CUDA_VISIBLE_DEVICES": w} for w in ("0", "1", "0")]
