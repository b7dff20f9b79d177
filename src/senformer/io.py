"""Atomic writers and safe reading: every file senformer writes appears whole or not at all.

Every file is written to a temporary name beside it and renamed when complete, so a reader sees either the
previous complete file or the new complete one: :func:`write_json` (one serialiser, :func:`jsonable`, for
numpy scalars and arrays, tensors, paths, dataclasses and tuples; NaN and infinities become ``null`` so the
file is strict JSON), :func:`write_csv`, :func:`write_npz`, :func:`save_figure`, all built on
:func:`atomic_path`. Loading never executes code (:func:`load_torch_file`).

A result (a command's ``--out``, a library writer's file) goes through :class:`senformer.outputs.Output`,
which owns its lock, the existing-output rule, the partial output, the run record and the finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Iterator

import numpy as np

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        if temporary_path.exists():  # mkstemp makes 0600 files; give the usual umask-based mode instead
            temporary_path.chmod(0o666 & ~_umask())
        os.replace(temporary_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


# Reading ---------------------------------------------------------------------------------------------
def load_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only, never code.

    Every failure is one :class:`UserError` line naming ``path`` and ``what`` it should have been; a file
    holding other pickled objects (an old format, or a crafted file) is refused before any of them runs.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            # Older senformer files pickled numpy arrays; a crafted file pickles anything: neither is read.
            raise UserError(
                f"{path} holds pickled Python objects, which are never loaded: it predates the safe {what} "
                "format or was not written by senformer"
            ) from None
        raise UserError(f"{path} is not a readable {what} ({_first_line(error)})") from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise UserError(f"{path} is not a readable {what} ({type(error).__name__}: {_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# JSON ---------------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: the one serialiser behind every JSON file senformer writes.

    numpy scalars and arrays, torch tensors, dtypes and devices, paths, enums, dates, dataclasses (through
    their ``to_dict`` when they have one), tuples and sets are converted; non-finite floats become ``None``
    (an undefined metric, such as the Pearson r of a constant track, is ``null``, never a bare ``NaN``).
    Anything else raises ``TypeError`` naming its type rather than being written as its ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {_json_key(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(item) for item in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if callable(getattr(value, "to_dict", None)):
            return jsonable(value.to_dict())
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    torch = sys.modules.get("torch")  # only present if the caller imported it; never imported here
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return jsonable(value.detach().cpu().tolist())
        if isinstance(value, (torch.dtype, torch.device)):
            return str(value)
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__} is not JSON serialisable")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    converted = jsonable(key)
    return converted if isinstance(converted, str) else json.dumps(converted)


def json_text(value: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``value`` as strict JSON text (see :func:`jsonable`); one line when ``indent`` is None."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False, sort_keys=sort_keys)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``value`` as strict JSON (see :func:`jsonable`) atomically, with a final newline."""
    atomic_write_text(path, json_text(value, indent, sort_keys) + "\n")
    return Path(path)


# Tables, arrays, figures --------------------------------------------------------------------------
def write_csv(path: str | os.PathLike, frame, index: bool = False, **to_csv: Any) -> Path:
    """Write a pandas DataFrame atomically (without its index unless ``index``); ``sep="\\t"`` for TSV."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=index, **to_csv)
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write ``arrays`` (name -> array) to a compressed ``.npz`` atomically; the name is used as given."""
    with atomic_path(path) as temporary:
        # Through a handle: given a path, numpy appends ".npz" to the temporary name.
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return Path(path)


def save_figure(path: str | os.PathLike, figure, dpi: int = 110) -> Path:
    """Render a matplotlib figure to ``path`` atomically (format from the suffix, PNG by default) and close it."""
    path = Path(path)
    file_format = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=file_format, dpi=dpi)
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:  # figures made with pyplot stay registered (and in memory) until closed
            pyplot.close(figure)
    return path
