"""Resource samples: sane values on this CPU-only machine, NVML through a stand-in, the sampler."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from ratchet.engine.workers import telemetry

KEYS = {"cpu_percent", "memory_percent", "memory_used_gb", "gpus", "source"}
GPU_KEYS = {"index", "name", "util", "mem_used_mb", "mem_total_mb", "temp_c", "power_w"}


@pytest.fixture
def fresh_nvml(monkeypatch):
    """A fresh NVML state, so one test's fake (or failure) does not leak into the next."""
    monkeypatch.setattr(telemetry, "_NVML", telemetry._Nvml())


@pytest.fixture
def no_nvml(fresh_nvml, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError


def test_sample_on_a_cpu_only_machine(no_nvml):
    first = telemetry.sample()
    second = telemetry.sample()
    for s in (first, second):
        assert set(s) == KEYS
        assert 0.0 <= s["cpu_percent"] <= 100.0
        assert 0.0 < s["memory_percent"] < 100.0
        assert 0.0 < s["memory_used_gb"] < 4096
        assert s["gpus"] == [] and s["source"] == "psutil"


def test_later_samples_do_not_block(no_nvml):
    telemetry.sample()
    started = time.monotonic()
    for _ in range(5):
        telemetry.sample()
    assert time.monotonic() - started < telemetry.CPU_PRIME_SECONDS * 3


def test_hardware(no_nvml, monkeypatch):
    monkeypatch.setattr(telemetry.shutil, "which", lambda name: None)
    hw = telemetry.hardware()
    assert hw["cpu_count"] >= 1 and hw["memory_gb"] > 0 and hw["gpus"] == []


class NVMLError(Exception):
    pass


def fake_pynvml(*, fail_init=False, power=True):
    """A stand-in for nvidia-ml-py with two GPUs; `lost` makes every query fail."""
    nv = types.SimpleNamespace(NVML_TEMPERATURE_GPU=0, NVMLError=NVMLError, lost=False)

    def init():
        if fail_init:
            raise NVMLError("Driver Not Loaded")

    def check():
        if nv.lost:
            raise NVMLError("GPU is lost")

    def count():
        check()
        return 2

    def handle(i):
        check()
        return i

    def power_usage(h):
        if not power:
            raise NVMLError("Not Supported")
        return 312_345  # milliwatts

    nv.nvmlInit = init
    nv.nvmlDeviceGetCount = count
    nv.nvmlDeviceGetHandleByIndex = handle
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3" if h == 0 else "NVIDIA H100"
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=97, memory=40)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=40 * 2**30, total=80 * 2**30, free=40 * 2**30
    )
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 61
    nv.nvmlDeviceGetPowerUsage = power_usage
    return nv


def test_sample_with_nvml(fresh_nvml, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power=False))
    s = telemetry.sample()
    assert s["source"] == "nvml" and len(s["gpus"]) == 2
    gpu = s["gpus"][0]
    assert set(gpu) == GPU_KEYS
    assert gpu == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "util": 97,
        "mem_used_mb": 40 * 1024,
        "mem_total_mb": 80 * 1024,
        "temp_c": 61,
        "power_w": None,  # not supported by this card: a missing field, not a failure
    }
    assert s["gpus"][1]["name"] == "NVIDIA H100"
    assert telemetry.hardware()["gpus"] == ["NVIDIA H100 80GB HBM3", "NVIDIA H100"]


def test_power_in_watts(fresh_nvml, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    assert telemetry.sample()["gpus"][0]["power_w"] == 312.3


def test_nvml_init_failure_falls_back_to_psutil(fresh_nvml, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    s = telemetry.sample()
    assert s["source"] == "psutil" and s["gpus"] == [] and s["cpu_percent"] is not None


def test_nvml_failure_later_switches_it_off_for_good(fresh_nvml, monkeypatch):
    nv = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    assert telemetry.sample()["source"] == "nvml"
    nv.lost = True
    assert telemetry.sample()["source"] == "psutil"
    nv.lost = False  # no retrying every sample once NVML has failed
    assert telemetry.sample()["source"] == "psutil"


def test_hardware_asks_nvidia_smi_without_nvml(no_nvml, monkeypatch):
    monkeypatch.setattr(telemetry.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def run(cmd, **kwargs):
        assert cmd[0] == "/usr/bin/nvidia-smi"
        return types.SimpleNamespace(stdout="NVIDIA A100-SXM4-80GB\nNVIDIA A100-SXM4-80GB\n")

    monkeypatch.setattr(telemetry.subprocess, "run", run)
    assert telemetry.hardware()["gpus"] == ["NVIDIA A100-SXM4-80GB"] * 2


def test_sampler_calls_back_repeatedly_and_stops(no_nvml):
    got = []
    three = threading.Event()

    def callback(s):
        got.append(s)
        if len(got) >= 3:
            three.set()

    sampler = telemetry.ResourceSampler(callback, interval=0.01)
    assert sampler.daemon
    sampler.start()
    assert three.wait(5)
    sampler.stop()
    assert not sampler.is_alive()
    n = len(got)
    time.sleep(0.05)
    assert len(got) == n and set(got[0]) == KEYS


def test_a_raising_callback_does_not_stop_the_sampler(no_nvml):
    calls = []
    three = threading.Event()

    def callback(s):
        calls.append(s)
        if len(calls) >= 3:
            three.set()
        raise OSError("log is closed")

    sampler = telemetry.ResourceSampler(callback, interval=0.01)
    sampler.start()
    assert three.wait(5)
    assert sampler.is_alive()
    sampler.stop()
    assert sampler.errors >= 3 and isinstance(sampler.last_error, OSError)


def test_stop_before_start_is_harmless():
    telemetry.ResourceSampler(lambda s: None).stop()
