"""What the machine has: CUDA devices and their peak throughput, for MFU."""

from __future__ import annotations

import functools

# Dense bf16 tensor-core peak, FLOP/s, by a substring of the device name (first match wins).
PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10", 125e12),
    ("4090", 165e12),
    ("3090", 71e12),
)


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def resolve(device: str) -> str:
    """A configured device as this machine has it: auto is cuda where torch sees a GPU."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def peak_flops(device_name: str) -> float | None:
    for marker, flops in PEAK_BF16_FLOPS:
        if marker in device_name:
            return flops
    return None


def mfu(flops: float, seconds: float, device_name: str) -> float | None:
    """Model FLOPs utilisation in percent, where the card's peak is known."""
    peak = peak_flops(device_name)
    if not peak or seconds <= 0 or flops <= 0:
        return None
    return round(100.0 * flops / seconds / peak, 2)
