"""What a benchmark ran on: the machine, its software, whether bf16 is native, whether the peer is installed."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..device import NATIVE_BF16_CPU_FLAGS, bf16_supported, cpu_flags
from .points import PEER, PEER_VERSION


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine and software a benchmark ran on (recorded beside every result)."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "hostname": platform.node(), "device": device,
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
        names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
        info["cpu_bf16_flags"] = sorted(cpu_flags(cpuinfo) & set(NATIVE_BF16_CPU_FLAGS))
    info["native_bf16"] = bf16_supported(device)
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal"))
        info["memory_bytes"] = int(total.split()[1]) * 1024
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here, timeout=10)
        if commit.returncode == 0:
            info["senformer_commit"] = commit.stdout.strip()
            changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                     text=True, cwd=here, timeout=10)
            info["senformer_uncommitted_changes"] = bool(changed.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def peer_status() -> tuple[bool, str]:
    """Whether enformer-pytorch can be imported, and its version or why not (checked in a subprocess: it
    imports transformers, which the parent should not pay for)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import enformer_pytorch, importlib.metadata as m; print(m.version('enformer-pytorch'))"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, f"{PEER} is not importable ({last}); install it with pip install {PEER}=={PEER_VERSION}"
    return True, probe.stdout.strip()
