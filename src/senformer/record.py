"""The run record written beside every result: what ran, on what, from which inputs.

``run_record(command, settings, inputs, device)`` returns a plain dict; :class:`senformer.outputs.Output`
writes it as ``run.json`` (in a result directory) or as ``OUT.run.json`` beside a file. Fields::

    format_version  the output format of the result this record describes (a command bumps its own)
    senformer       {"version", "commit"}: commit is None outside a git checkout
    command, argv   the subcommand and the exact command line (sys.argv)
    settings        the resolved settings (every default filled in)
    inputs          input name -> fingerprint (digests of files, weights, regions)
    fingerprint     one digest of everything the result depends on (see senformer.outputs), or None
    torch, device, threads, machine (see :func:`machine_info`), created (UTC, ISO 8601)
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .version import __version__
from .io import jsonable

FORMAT_VERSION = 1


def machine_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Versions, platform, CPU model, cores and threads, memory, and the GPU when CUDA is available."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "hostname": platform.node(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    info["cpu_bf16_flags"] = _cpu_bf16_flags()
    memory = _memory_bytes()
    if memory is not None:
        info["memory_bytes"] = memory
    if torch.cuda.is_available():
        index = _cuda_index(device)
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(index).total_memory
        info["cuda"] = torch.version.cuda
    return info


def run_record(
    command: str,
    settings: Mapping[str, Any] | Any,
    inputs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    *,
    fingerprint: str | None = None,
    format_version: int = FORMAT_VERSION,
) -> dict[str, Any]:
    """The record of one run of ``command`` (``"predict"``, ``"analyze variants"``...) as plain JSON values.

    ``settings`` are the resolved settings (a dict or a dataclass); ``inputs`` maps each input to its
    fingerprint; ``fingerprint`` is the digest the existing-output rule compares (:func:`senformer.fingerprint.value_digest`).
    """
    return {
        "format_version": format_version,
        "senformer": {"version": __version__, "commit": git_commit()},
        "command": command,
        "argv": list(sys.argv),
        "settings": jsonable(settings),
        "inputs": jsonable(dict(inputs or {})),
        "fingerprint": fingerprint,
        "torch": torch.__version__,
        "device": None if device is None else str(device),
        "threads": torch.get_num_threads(),
        "machine": machine_info(device),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# The checkout ------------------------------------------------------------------------------------
def git_commit(package_dir: Path | None = None) -> str | None:
    """The commit of the git checkout holding this package's source, read from ``.git`` (no ``git`` process).

    None when the package is not inside a checkout (an installed wheel) or the repository cannot be read.
    """
    package_dir = (package_dir or Path(__file__).resolve().parent)
    root = next((parent for parent in package_dir.parents if (parent / ".git").exists()), None)
    # Only a checkout whose source tree holds this package counts: a venv inside some other repository does not.
    if root is None or package_dir not in (root / "src" / package_dir.name, root / package_dir.name):
        return None
    try:
        git_dir = _git_dir(root / ".git")
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return _commit_or_none(head)
        reference = head.split(":", 1)[1].strip()
        common = git_dir
        if (git_dir / "commondir").is_file():  # a linked worktree keeps branches in the main repository
            common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (git_dir, common):
            if (base / reference).is_file():
                return _commit_or_none((base / reference).read_text(encoding="utf-8").strip())
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == reference:
                    return _commit_or_none(parts[0])
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _git_dir(dot_git: Path) -> Path:
    if dot_git.is_dir():
        return dot_git
    text = dot_git.read_text(encoding="utf-8").strip()  # a worktree's ".git" file: "gitdir: PATH"
    if not text.startswith("gitdir:"):
        raise OSError(f"{dot_git} is not a git directory link")
    linked = Path(text.split(":", 1)[1].strip())
    return linked if linked.is_absolute() else (dot_git.parent / linked).resolve()


def _commit_or_none(text: str) -> str | None:
    return text if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text) else None


# The machine -------------------------------------------------------------------------------------
def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _cpu_model() -> str:
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_bf16_flags() -> list[str]:
    from .device import cpu_flags

    return sorted(flag for flag in cpu_flags() if "bf16" in flag or flag.startswith("amx"))


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) * 1024  # reported in KiB
    except (OSError, ValueError):
        pass
    return None


def _cuda_index(device: str | torch.device | None) -> int:
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is not None:
            return device.index
    return torch.cuda.current_device()
