"""senformer's native weights: a directory with ``config.json`` (EnformerConfig) and ``model.safetensors``.

safetensors holds plain tensors only, so loading never runs pickled code. Tensors are stored exactly as the
model holds them (dtype and values), so native -> model -> native is lossless.

``config.json`` also records ``weights_sha256``, the SHA-256 of the whole ``model.safetensors`` file, and
loading verifies it: a flipped bit anywhere in the file is refused in one line instead of loading as wrong
weights. The digest is of the file's bytes rather than of the loaded tensors
(:func:`senformer.fingerprint.weights_digest`): it is streamed from disk without a second in-memory copy of
the weights, and it covers the header as well, where one flipped byte can turn ``F32`` into ``I32`` and
reinterpret a tensor's bytes with the data section unchanged. Files written before the checksum existed
load with a check for non-finite values instead (:func:`check_finite`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import WEIGHTS_CHECKSUM_KEY
from ..errors import UserError
from ..fingerprint import file_digest
from ..io import atomic_path, write_json
from ..model.enformer import Enformer
from ..version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "senformer"


def is_native_config(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a config.json written by senformer (not an enformer-pytorch / HF config)."""
    values = read_config_file(path)
    return values is not None and "num_conv_tower_blocks" in values and "output_heads" in values


def read_config_file(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file. A file that is there but does not
    parse (truncated, not UTF-8, not an object) is a UserError naming it: read as absent, the architecture
    would be inferred from the shapes and a model trained with other settings would run silently."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: damaged config, not readable as JSON ({error})") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the config ({error.strerror or error})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: damaged config, expected a JSON object, got {type(values).__name__}")
    return values


def save_model(model: Enformer, directory: str | os.PathLike) -> Path:
    """Write ``model`` in the native format, ``config.json`` and ``model.safetensors``, into ``directory``
    (created if needed), each file atomically; returns ``directory``. Any format :func:`load_model` reads
    converts to this one by loading and saving. ``config.json`` records the SHA-256 of ``model.safetensors``
    and is written last, so a config always describes the weights beside it."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as temporary:
        try:
            save_file(state, str(temporary), metadata={"format": FORMAT_TAG, "senformer_version": __version__})
        except SafetensorError as error:  # its writer's I/O errors (a full disk) carry the errno only in the text
            found = re.search(r"os error (\d+)", str(error))
            if found is None:
                raise
            number = int(found.group(1))
            raise OSError(number, os.strerror(number), str(directory / WEIGHTS_NAME)) from None
        checksum = file_digest(temporary)
    values = {**model.config.to_dict(), WEIGHTS_CHECKSUM_KEY: checksum}
    write_json(directory / CONFIG_NAME, values, sort_keys=True)
    return directory


def tensor_names(path: str | os.PathLike) -> list[str]:
    """The tensor names of a safetensors file, read from its header alone."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error})") from None


def _read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on the CPU, with a clear error for a damaged file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error})") from None


def check_finite(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse, in one line naming ``path`` and the first such tensor, weights holding NaN or infinity: in a
    format without a checksum this is how damage shows, and such a model computes nothing but NaN."""
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            if not bool(torch.isfinite(tensor).all()):
                raise UserError(f"{path}: tensor {name} holds non-finite values (NaN or infinity): damaged weights")


def verify_checksum(weights_path: str | os.PathLike, config_path: str | os.PathLike) -> bool:
    """Whether ``config_path`` records a checksum for ``weights_path`` (then verified: a mismatch is one
    UserError line); False for a config written before senformer recorded one."""
    expected = (read_config_file(config_path) or {}).get(WEIGHTS_CHECKSUM_KEY)
    if expected is None:
        return False
    if not Path(weights_path).is_file():
        raise FileNotFoundError(f"no such weights file: {weights_path}")
    if file_digest(weights_path) != expected:
        raise UserError(f"{weights_path} does not match the checksum in {Path(config_path).name}: damaged or replaced")
    return True


def read_native_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a native ``model.safetensors``, verified against the checksum of the ``config.json``
    beside it, or checked for non-finite values where no checksum is recorded."""
    path = Path(path)
    config_path = path.parent / CONFIG_NAME
    verified = path.name == WEIGHTS_NAME and is_native_config(config_path) and verify_checksum(path, config_path)
    state = _read_safetensors(path)
    if not verified:
        check_finite(state, path)
    return state
