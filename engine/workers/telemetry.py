"""Resource samples for the dashboard: CPU and memory from psutil, GPUs from NVML.

NVML comes from the optional `nvidia-ml-py` package (`import pynvml`). Without it, or when it
fails, samples carry `gpus: []` and `source: "psutil"`; a failure switches NVML off for the
rest of the process rather than paying for (and logging) it every 1.5 s. NVML reports every GPU
in the machine, whatever CUDA_VISIBLE_DEVICES says.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

CPU_PRIME_SECONDS = 0.1  # first sample measures over this long; later ones since the last


class _Cpu:
    """System CPU percent from cpu_times deltas: psutil.cpu_percent's no-wait state is kept per
    thread in some versions and globally in others, so keep our own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Any = None

    def percent(self) -> float:
        with self._lock:
            last = self._last
            if last is None:
                last = psutil.cpu_times()
                time.sleep(CPU_PRIME_SECONDS)
            now = psutil.cpu_times()
            self._last = now
        busy = _busy(now) - _busy(last)
        total = sum(now) - sum(last)
        if total <= 0:
            return 0.0
        return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)


def _busy(times: Any) -> float:
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class _Nvml:
    """Lazily initialised NVML; `None` from `gpus()` means NVML is not available."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mod: Any = None
        self._state = "unknown"  # unknown | on | off
        self._names: dict[int, str] = {}

    def _module(self) -> Any:
        if self._state == "unknown":
            try:
                import pynvml

                pynvml.nvmlInit()
            except Exception:  # noqa: BLE001 - ImportError, NVMLError, a missing driver library
                self._state = "off"
            else:
                self._mod, self._state = pynvml, "on"
        return self._mod if self._state == "on" else None

    def gpus(self) -> list[dict] | None:
        with self._lock:
            nv = self._module()
            if nv is None:
                return None
            try:
                return [self._gpu(nv, i) for i in range(nv.nvmlDeviceGetCount())]
            except Exception:  # noqa: BLE001 - a lost GPU or driver: psutil-only from now on
                self._state, self._mod = "off", None
                return None

    def names(self) -> list[str] | None:
        with self._lock:
            nv = self._module()
            if nv is None:
                return None
            try:
                return [self._name(nv, i) for i in range(nv.nvmlDeviceGetCount())]
            except Exception:  # noqa: BLE001
                return None

    def _name(self, nv: Any, index: int) -> str:
        if index not in self._names:
            name = nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(index))
            self._names[index] = name.decode() if isinstance(name, bytes) else str(name)
        return self._names[index]

    def _gpu(self, nv: Any, index: int) -> dict:
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        mem = _optional(lambda: nv.nvmlDeviceGetMemoryInfo(handle))
        power_mw = _optional(lambda: nv.nvmlDeviceGetPowerUsage(handle))
        return {
            "index": index,
            "name": self._name(nv, index),
            # A field a card does not report (MIG, some consumer boards) is None, not a failure.
            "util": _optional(lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu),
            "mem_used_mb": round(mem.used / 2**20) if mem is not None else None,
            "mem_total_mb": round(mem.total / 2**20) if mem is not None else None,
            "temp_c": _optional(
                lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)
            ),
            "power_w": round(power_mw / 1000, 1) if power_mw is not None else None,
        }


def _optional(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None


_CPU = _Cpu()
_NVML = _Nvml()


def sample() -> dict:
    """One resource sample (the `resources` event's fields). Never raises.

    The first call in a process blocks for CPU_PRIME_SECONDS to measure CPU use; later calls
    measure since the previous one and do not block.
    """
    try:
        cpu = _CPU.percent()
    except Exception:  # noqa: BLE001
        cpu = None
    try:
        vm = psutil.virtual_memory()
        memory_percent = vm.percent
        memory_used_gb = round((vm.total - vm.available) / 2**30, 2)
    except Exception:  # noqa: BLE001
        memory_percent = memory_used_gb = None
    gpus = _NVML.gpus()
    return {
        "cpu_percent": cpu,
        "memory_percent": memory_percent,
        "memory_used_gb": memory_used_gb,
        "gpus": gpus or [],
        "source": "psutil" if gpus is None else "nvml",
    }


def hardware() -> dict:
    """What the machine has, for `session_start`: {cpu_count, memory_gb, gpus: [names]}.

    GPU names come from NVML, or else from `nvidia-smi` (never from torch, which would create a
    CUDA context in the engine process).
    """
    try:
        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        memory_gb = None
    names = _NVML.names()
    if names is None:
        names = _smi_names()
    return {"cpu_count": os.cpu_count(), "memory_gb": memory_gb, "gpus": names}


def _smi_names() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class ResourceSampler(threading.Thread):
    """Calls `callback(sample())` at once and then every `interval` seconds until `stop()`.

    An exception in the callback is counted (`errors`, `last_error`), never fatal: a dashboard
    feed must not die because one write failed.
    """

    def __init__(self, callback: Callable[[dict], None], interval: float = 1.5) -> None:
        super().__init__(name="ratchet-resources", daemon=True)
        self.callback = callback
        self.interval = interval
        self.errors = 0
        self.last_error: BaseException | None = None
        self._stopping = threading.Event()  # not `_stop`: threading.Thread has a method so named

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.callback(sample())
            except Exception as exc:  # noqa: BLE001
                self.errors += 1
                self.last_error = exc
            self._stopping.wait(self.interval)

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)
