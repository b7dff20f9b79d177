"""What a benchmark ran on: the machine, its software, whether bf16 is native, whether the peer is installed."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from ..device import bf16_supported
from ..record import git_commit
from ..record import machine_info as record_machine_info
from .points import PEER, PEER_VERSION


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine and software a benchmark ran on (:func:`senformer.record.machine_info`), with the device
    it measured, whether that device computes bf16 natively, and the senformer commit."""
    return {**record_machine_info(device), "device": device, "native_bf16": bf16_supported(device),
            "senformer_commit": git_commit()}


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
