"""Which device a command runs on, and whether that device computes bf16 natively.

bf16 only pays where the hardware multiplies it: a CUDA GPU with bf16 units, or a CPU with AVX512-BF16 or
AMX. Elsewhere PyTorch emulates it, and a bf16 matmul can run a hundred times slower than fp32 (0.26
GFLOP/s on one 2-core development machine), so callers run fp32 there and say so instead.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from .errors import UserError

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of a CPU that multiplies bf16 in hardware."""

_DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")
_warned_no_bf16: set[str] = set()


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` names: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises UserError for a malformed name or a CUDA device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not _DEVICE_NAME.fullmatch(name):
        raise UserError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r}: no CUDA device is available (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from ``cpuinfo`` (empty where there is no such file, e.g. off Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def bf16_supported(device: str | torch.device = "cpu", cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether ``device`` multiplies bf16 natively: CUDA with bf16 units, or a CPU with
    :data:`NATIVE_BF16_CPU_FLAGS` in ``cpuinfo``. Other devices, and CPUs whose flags cannot be read, are not."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return not cpu_flags(cpuinfo).isdisjoint(NATIVE_BF16_CPU_FLAGS)
    return False


def no_native_bf16_reason(device: str | torch.device = "cpu") -> str:
    """Why bf16 is not used on ``device`` (one line, for warnings and benchmark records)."""
    device = torch.device(device)
    if device.type == "cpu":
        return (f"this CPU has none of {', '.join(NATIVE_BF16_CPU_FLAGS)} (AVX512-BF16, AMX), so bf16 would be "
                "emulated and slower than fp32")
    return f"{device} has no native bf16 units, so bf16 would be emulated and slower than fp32"


def use_bf16(requested: bool, device: str | torch.device = "cpu") -> bool:
    """Whether to run in bf16: ``requested`` and native on ``device``. A request that cannot be honoured
    warns once per device type and returns False (the caller runs fp32)."""
    if not requested:
        return False
    if bf16_supported(device):
        return True
    device = torch.device(device)
    if device.type not in _warned_no_bf16:
        _warned_no_bf16.add(device.type)
        warnings.warn(f"--bf16 ignored, running fp32: {no_native_bf16_reason(device)}", stacklevel=2)
    return False
