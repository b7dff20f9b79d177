"""Training checkpoints: everything needed to continue a run exactly, written atomically, the last K kept.

A checkpoint holds the model (our parameter names), optimizer, scheduler, step, the data position of every
head, the RNG states of every rank, the EnformerConfig and the training settings. It is a ``torch.save``
file written to a temporary name and renamed, so a crash never leaves a truncated ``step-*.pt``.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_path

FORMAT = "senformer-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d{8})\.pt$")

# Settings that may change on resume without changing the run's meaning (bookkeeping, not maths).
RESUMABLE_CHANGES = frozenset({
    "steps", "eval_every", "eval_examples", "eval_batch_size", "log_every", "checkpoint_every",
    "keep_checkpoints", "progress", "device", "threads", "decay", "final_lr_factor", "eval_split", "deterministic",
})


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if _NAME.match(path.name))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """Every global generator a training step draws from (dropout, numpy/python for user code)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | os.PathLike, step: int, payload: Mapping[str, Any], keep: int) -> Path:
    """Write ``payload`` (plus format tags) as ``step-XXXXXXXX.pt`` atomically, then keep only the last ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint_name(step)
    with atomic_path(target) as temporary:
        torch.save({"format": FORMAT, "version": VERSION, "step": step, **payload}, temporary)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        # Our own files hold numpy RNG state and python tuples: not loadable with weights_only.
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise UserError(f"{path} is not a readable training checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a senformer training checkpoint")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {payload.get('version')} is not {VERSION}")
    return payload


def check_compatible(path: Path, payload: Mapping[str, Any], config: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Raise a UserError naming every field where the checkpoint's run differs from this one."""
    differences = []
    stored_config = payload.get("config", {})
    for key in sorted(set(stored_config) | set(config)):
        if key in ("checkpoint_transformer", "checkpoint_conv_tower", "conv_tile_length"):
            continue  # memory switches: same maths
        if stored_config.get(key) != config.get(key):
            differences.append(f"config.{key}: checkpoint {stored_config.get(key)!r}, now {config.get(key)!r}")
    stored_settings = payload.get("settings", {})
    for key in sorted(set(stored_settings) | set(settings)):
        if key in RESUMABLE_CHANGES or key in ("init_weights", "teacher", "data", "genome", "model_config", "preset",
                                                "attention", "model_overrides", "checkpoint_activations",
                                                "checkpoint_conv_tower"):
            continue  # paths may move; the model itself is compared through its config above
        if stored_settings.get(key) != settings.get(key):
            differences.append(f"{key}: checkpoint {stored_settings.get(key)!r}, now {settings.get(key)!r}")
    if (stored_settings.get("teacher") is None) != (settings.get("teacher") is None):
        differences.append(f"teacher: checkpoint {stored_settings.get('teacher')!r}, now {settings.get('teacher')!r}")
    if differences:
        raise UserError(f"{path} comes from a different run: " + "; ".join(differences))
