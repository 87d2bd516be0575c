"""bench/gpu_check.sh --dry-run: the GPU check's steps on CPU, so the script a GPU machine runs
in one call is known to work up to what needs the GPU itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("nvidia-smi", "versions", "init", "tune", "sandbox", "nvml", "throughput", "loop",
         "dashboard")


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_the_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "GPU_CHECK_KEEP_LOGS": "1",
           "TMPDIR": str(tmp_path), "RATCHET_PROBE_SECONDS": "0"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=270)
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stderr
    assert summary.startswith("gpu check --dry-run: cpu")
    for name in STEPS:
        assert f"step {name}: ok" in summary, summary
        assert (out / "logs" / f"{name}.log").is_file()
    # the loop ran three experiments (a baseline and two candidates) on its own workspace:
    # `ratchet run --headless` with real training, start to end
    log = list(map(json.loads, (out / "events.jsonl").read_text().splitlines()))
    ends = [e for e in log if e["type"] == "exp_end"]
    assert [e["kind"] for e in ends] == ["baseline", "candidate", "candidate"]
    assert sum(1 for e in log if e["type"] in ("proposal", "proposal_failed")) == 2
    assert log[-1]["type"] == "session_end" and log[-1]["reason"] == "max_experiments"
    assert {"session_start", "agent_delta", "proposal", "exp_start", "train_log", "exp_end",
            "resources", "session_end"} <= {e["type"] for e in log}
    printed = (out / "logs" / "loop.log").read_text()  # one line per experiment, then the end
    assert printed.count("\n#") == len(ends) and "session ended (max_experiments)" in printed
    assert (out / "dashboard.svg").read_text().lstrip().startswith("<svg")
    sandbox = (out / "logs" / "sandbox.log").read_text()
    assert '"matmul_device": "cpu"' in sandbox
    assert "tokens/s" in (out / "logs" / "throughput.log").read_text()
    # the temporary workspace is gone; only the results stay
    assert not list(tmp_path.glob("ratchet-gpu-check.*"))
