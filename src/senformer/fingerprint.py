"""Fingerprints of the inputs a result was computed from, re-checked when a run resumes or is rerun.

Every digest is SHA-256 in hex. Weights are identified by every byte of every tensor (with its name, dtype and
shape), not by a sample of values, so two checkpoints that differ in one weight never share a fingerprint.
Input sequences are identified by the exact bases the model saw (after N padding), so a resume against another
genome build, or a FASTA rewritten in place, is detected row by row.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import torch

from .io import jsonable

_CHUNK = 1 << 20


def weights_digest(weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a model's state dict (or any name -> tensor mapping): names, dtypes, shapes and all bytes."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\t{tensor.dtype}\t{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def bases_digest(sequence: str) -> str:
    """SHA-256 of the exact bases of one model input (upper case, N padding included)."""
    return hashlib.sha256(sequence.encode("ascii", errors="replace")).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def value_digest(value: Any) -> str:
    """SHA-256 of a value (settings, a table of digests) as canonical JSON through :func:`senformer.io.jsonable`,
    with sorted keys so the order of options does not matter: the same inputs give the same digest."""
    text = json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def combine(parts: Mapping[str, str]) -> str:
    """One digest of several named digests (e.g. weights, settings, inputs)."""
    return value_digest(dict(parts))
