"""senformer's native weights: a directory with ``config.json`` (EnformerConfig) and ``model.safetensors``.

safetensors holds plain tensors only, so loading never runs pickled code. Tensors are stored exactly as the
model holds them (dtype and values), so native -> model -> native is lossless.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import EnformerConfig
from ..errors import UserError
from ..io import atomic_path, atomic_write_text
from ..model.enformer import Enformer
from ..version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "senformer"


def is_native_config(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a config.json written by senformer (not an enformer-pytorch / HF config)."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(values, dict) and "num_conv_tower_blocks" in values and "output_heads" in values


def save_model(model: Enformer, directory: str | os.PathLike) -> Path:
    """Write ``model`` in the native format, ``config.json`` and ``model.safetensors``, into ``directory``
    (created if needed), each file atomically; returns ``directory``. Any format :func:`load_model` reads
    converts to this one by loading and saving."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as temporary:
        save_file(state, str(temporary), metadata={"format": FORMAT_TAG, "senformer_version": __version__})
    atomic_write_text(directory / CONFIG_NAME, model.config.to_json() + "\n")
    return directory


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on the CPU, with a clear error for a damaged file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error})") from None


def read_native(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], EnformerConfig]:
    """(state dict, config) of a native directory."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}")
    return read_safetensors(directory / WEIGHTS_NAME), EnformerConfig.from_json(config_path)
