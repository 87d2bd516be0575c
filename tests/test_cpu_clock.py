"""The CPU clock: on a CPU workspace the budget is the trainer's CPU time, measured by the engine
over its whole process tree, so machine load moves no run's budget and no trainer can hide work
from the count."""

from __future__ import annotations

import subprocess
import sys
import time

import trainers
from conftest import run_with

from ratchet.engine.runner import cpu_clock

# Burns CPU in children that exit before the parent is ever measured much: the parent itself
# only waits. A count of live processes alone would see a trainer that uses nothing.
FARMS_OUT = '''
import multiprocessing as mp
import time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

print("farming out", flush=True)
while True:
    workers = [mp.Process(target=burn, args=(0.5,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
'''

# Ignores the budget and spins: its CPU time runs out long before the wall-clock backstop.
SPINS = '''
print("spinning", flush=True)
while True:
    pass
'''


def test_cpu_time_of_children_that_exited_is_counted(tmp_path):
    done = tmp_path / "done"
    child = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "subprocess.run([sys.executable, '-c', 'import time\\n"
        "end = time.process_time() + 1.0\\nwhile time.process_time() < end: pass'])\n"
        f"open({str(done)!r}, 'w').close()\n"
        "time.sleep(30)\n")])
    try:
        tree = cpu_clock.TreeCpu(child.pid)
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # not measured meanwhile: the grandchild is gone when it is
        assert tree.used() >= 1.0  # the grandchild exited; its parent reaped it
    finally:
        child.kill()
        child.wait()


def test_the_clock_is_cpu_on_a_cpu_device_and_wall_on_a_gpu():
    assert cpu_clock.resolve("auto", "cpu") == cpu_clock.CPU
    assert cpu_clock.resolve("auto", "cuda") == cpu_clock.WALL
    assert cpu_clock.resolve("wall", "cpu") == cpu_clock.WALL
    wall, cpu = cpu_clock.allowance(cpu_clock.CPU, 10.0)
    assert (wall, cpu) == (10.0 * cpu_clock.WALL_FACTOR, 10.0 * cpu_clock.cores())
    assert cpu_clock.allowance(cpu_clock.WALL, 10.0) == (10.0, 0.0)


def test_a_trainer_that_spins_past_its_budget_is_stopped_by_its_cpu_time(make_workspace,
                                                                          monkeypatch):
    monkeypatch.setattr(cpu_clock, "WALL_FACTOR", 20.0)  # a loaded machine never reaches it
    ws = make_workspace(budget_seconds=2.0)
    started = time.monotonic()
    result = run_with(ws, SPINS)
    assert result.status == "over_budget", (result.status, result.error)
    assert "CPU seconds" in result.error
    # killed on its CPU time (2 CPU-s per core), well before the wall clock's backstop
    assert time.monotonic() - started < 2.0 * cpu_clock.WALL_FACTOR
    assert result.clock == "cpu"


def test_work_done_in_short_lived_children_counts_against_the_budget(make_workspace,
                                                                     monkeypatch):
    monkeypatch.setattr(cpu_clock, "WALL_FACTOR", 20.0)
    ws = make_workspace(budget_seconds=2.0)
    result = run_with(ws, FARMS_OUT)
    assert result.status == "over_budget", (result.status, result.error)
    assert "CPU seconds" in result.error  # not the wall clock's backstop: its children counted


def test_an_honest_run_reports_the_cpu_time_the_engine_measured(make_workspace):
    ws = make_workspace(budget_seconds=16.0, eval_tokens=65536)
    result = run_with(ws, trainers.loop_bigram())
    assert result.status == "ok", result.error
    assert result.clock == "cpu"
    assert 0 < result.trainer_cpu_seconds <= 16.0 * cpu_clock.cores()


def test_a_sleeping_trainer_still_ends_at_the_wall_clock_backstop(make_workspace):
    ws = make_workspace(budget_seconds=1.0)
    started = time.monotonic()
    result = run_with(ws, trainers.HANGS)
    assert result.status == "over_budget"
    assert "exceeded" in result.error
    assert time.monotonic() - started < 1.0 * cpu_clock.WALL_FACTOR + 30
