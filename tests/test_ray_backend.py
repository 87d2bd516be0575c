"""The Ray backend end to end, on a local Ray cluster with a custom resource standing in for
GPUs: experiments run as Ray tasks, and a worker lost mid-experiment is recorded and retried."""

from __future__ import annotations

import signal
import threading
import time

import psutil
import pytest
import trainers
from paced_agent import PacedAgent
from test_loop import check_ratchet_invariants, commit_workspace, read_log, wait_for
from test_parallel import SETTINGS, configure

from ratchet.engine.loop.session import RunOptions, Session

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster(_private_cache):
    """One local Ray for the module; its workers inherit the private corpus cache."""
    ray.init(num_cpus=2, resources={"ratchet_gpu": 2}, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def ray_task_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("ray::run_task"):
            found.append(proc)
    return found


def test_experiments_run_as_ray_tasks_and_a_lost_worker_is_retried(ray_cluster, make_workspace):
    ws = make_workspace("ray", **SETTINGS)
    commit_workspace(ws, trainers.fixed_duration(wall=4.0))
    configure(ws, baseline_seeds=1, backend="ray", ray_resource="ratchet_gpu")
    options = RunOptions(session="s-ray", tag="ray", max_experiments=1)
    session = Session(ws, ws.config(), options, PacedAgent(seconds=0.5))
    codes: list[int] = []
    engine = threading.Thread(target=lambda: codes.append(session.run()), daemon=True)
    engine.start()
    folder = ws.runs_dir() / "s-ray"
    try:
        wait_for(folder, lambda log: any(e["type"] == "exp_start" for e in log), timeout=120)
        deadline = time.monotonic() + 60
        while not ray_task_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # mid-experiment
        victims = ray_task_processes()
        assert victims, "no Ray task process found"
        victims[0].send_signal(signal.SIGKILL)  # a Ray worker dies, as when its node goes away
        engine.join(timeout=300)
    finally:
        if engine.is_alive():
            session.request_stop("stopped")
            engine.join(timeout=60)
    assert codes == [0]
    log = read_log(folder)
    ends = [e for e in log if e["type"] == "exp_end"]
    [lost] = [e for e in ends if e["status"] == "lost"]
    assert lost["decision"] == "retry"
    assert "Ray worker lost" in lost["result"]["error"]
    retry = next(e for e in log if e["type"] == "exp_start" and e.get("retry_of") == lost["exp"])
    assert retry["exp"] == lost["retried_as"] and retry["kind"] == lost["kind"]
    finished = {e["exp"]: e for e in ends}
    assert finished[retry["exp"]]["status"] == "ok"
    assert sorted(e["kind"] for e in ends if e["status"] == "ok") == ["baseline", "candidate"]
    # the engine still wrote everything: live train logs and results, tagged with the Ray slot
    assert any(e["type"] == "train_log" and e["exp"] == retry["exp"] for e in log)
    for event in log:
        if event["type"] in ("exp_start", "exp_end", "train_log"):
            assert event["worker"].startswith("ray-"), event
    check_ratchet_invariants(ws, log)
