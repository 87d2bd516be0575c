"""The Python steps of bench/gpu_check.sh: each prints what it found and exits 0 when it worked.

    python bench/gpu_check_steps.py versions
    python bench/gpu_check_steps.py tune WS [EVAL_TOKENS] # one run per experiment, committed
    python bench/gpu_check_steps.py sandbox               # torch + a matmul inside the sandbox
    python bench/gpu_check_steps.py nvml                  # the GPU pane's readings
    python bench/gpu_check_steps.py screenshot EVENTS SVG # the dashboard on a session's log
"""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

# What the sandboxed child reports: the GPU's device nodes, the driver's libraries and a matmul
# on the device torch picks, so one log line says whether a trainer can use the GPU in there.
_SANDBOX_PROBE = r"""
import glob, json, os, time
found = {"dev_nvidia": sorted(glob.glob("/dev/nvidia*")),
         "libcuda": sorted(p for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64",
                                       "/usr/local/nvidia/lib64", "/usr/local/cuda/compat")
                           for p in glob.glob(d + "/libcuda.so*"))}
import torch
found["torch"] = torch.__version__
found["cuda_available"] = torch.cuda.is_available()
dev = "cuda" if found["cuda_available"] else "cpu"
a = torch.randn(1024, 1024, device=dev)
t0 = time.time()
b = (a @ a).sum().item()
if dev == "cuda":
    torch.cuda.synchronize()
    found["device_name"] = torch.cuda.get_device_name()
found["matmul_device"], found["matmul_seconds"] = dev, round(time.time() - t0, 4)
print(json.dumps(found))
"""


def versions() -> int:
    import torch

    from ratchet.engine.runner import sandbox

    info = {"python": sys.version.split()[0], "machine": platform.machine(),
            "torch": torch.__version__, "torch.version.cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "bwrap": sandbox.bwrap_path(), "sandbox": sandbox.hardening_line()}
    if torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        info["cudnn"] = torch.backends.cudnn.version()
    for name in ("textual", "git", "optuna", "pyseccomp", "pynvml", "tokenizers", "numpy"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "present")
        except Exception as exc:  # noqa: BLE001 - a missing package is a finding, not a crash
            info[name] = f"missing ({type(exc).__name__}: {exc})"
    print(json.dumps(info, indent=1))
    return 0


def tune(workspace: str, eval_tokens: str = "") -> int:
    """One baseline seed and one run per candidate (margin rule, no confirmation), so
    `--max-experiments 2` is three experiments: a baseline and two candidates."""
    import git

    from ratchet.engine.workspace import config as configmod
    from ratchet.engine.workspace import gitrepo

    root = Path(workspace)
    config = configmod.load(root)
    config.loop.baseline_seeds, config.loop.rule, config.loop.confirm = 1, "margin", False
    if eval_tokens:  # a shorter evaluation, for the dry run on a CPU
        config.data.eval_tokens = int(eval_tokens)
    configmod.save(root, config)
    repo = git.Repo(root)
    repo.index.add([configmod.CONFIG_NAME])
    repo.index.commit("gpu check: one run per experiment", author=gitrepo.AUTHOR,
                      committer=gitrepo.AUTHOR)
    print(f"{root}: baseline_seeds = 1, margin rule without confirmation, "
          f"budget {config.experiment.budget_seconds:g} s, device {config.experiment.device}, "
          f"eval {config.data.eval_tokens:,} bytes")
    return 0


def sandbox_check() -> int:
    from ratchet.engine.runner import sandbox

    with tempfile.TemporaryDirectory(prefix="ratchet-gpu-check-") as tmp:
        argv, sandboxed = sandbox.wrap([sys.executable, "-I", "-c", _SANDBOX_PROBE],
                                       cwd=Path(tmp), readable=[], writable=[Path(tmp)],
                                       hidden=[], devices=True)
        print(f"sandboxed: {sandboxed}" + ("" if sandboxed else
                                           f" ({sandbox.unavailable_reason()})"))
        done = subprocess.run(argv, env=sandbox.child_env({}), capture_output=True, text=True,
                              timeout=120)
    print(done.stdout.strip())
    if done.returncode:
        print(done.stderr.strip()[-2000:])
    return done.returncode


def nvml() -> int:
    from ratchet.engine.workers import telemetry

    telemetry.sample()  # the first sample primes the CPU reading
    reading = telemetry.sample()
    print(json.dumps({"hardware": telemetry.hardware(), "sample": reading}, indent=1))
    if reading["source"] != "nvml":
        print("note: no NVML readings here (nvidia-ml-py missing or no driver): the GPU pane "
              "shows CPU and RAM")
    return 0


def screenshot(events: str, svg: str) -> int:
    from ratchet.tui.app import RatchetDashboard
    from ratchet.tui.sources import LogFileSource

    async def shoot() -> None:
        app = RatchetDashboard(LogFileSource(Path(events)), read_only=True)
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(600):  # up to 60 s to read the log
                if app.caught_up:
                    break
                await pilot.pause(0.1)
            app.refresh_dashboard()
            await pilot.pause(0.5)
            target = Path(svg)
            app.save_screenshot(filename=target.name, path=str(target.parent))

    asyncio.run(shoot())
    print(f"{svg}: {Path(svg).stat().st_size:,} bytes from {events}")
    return 0


def main(argv: list[str]) -> int:
    steps = {"versions": versions, "tune": tune, "sandbox": sandbox_check, "nvml": nvml,
             "screenshot": screenshot}
    if not argv or argv[0] not in steps:
        print(__doc__, file=sys.stderr)
        return 2
    return steps[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
