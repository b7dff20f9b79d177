"""One entry point for every weights format: detect it, convert to senformer names, check, load.

All formats meet at one state dict in senformer's parameter names (converters only rename and reshape);
the config comes from the native ``config.json`` or is inferred from the tensor shapes, and user overrides
(attention kind, sparse settings, ``positional_basis_length``, ...) go on top.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import EnformerConfig
from ..errors import UserError
from .infer import infer_config
from .native import CONFIG_NAME, WEIGHTS_NAME, is_native_config, read_native, read_safetensors

FORMATS = ("native", "tf-checkpoint", "tf-savedmodel", "enformer-pytorch")

_PEER_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_STATE_DICT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass
class LoadReport:
    """What a load matched; in strict mode any problem is an error listing all of them."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, limit: int | None = 20) -> str:
        """One line per kind of problem, listing names (the first ``limit`` of each)."""

        def listed(items: list[str]) -> str:
            shown = items if limit is None else items[:limit]
            more = "" if len(shown) == len(items) else f", ... ({len(items) - len(shown)} more)"
            return ", ".join(shown) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing: {listed(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected: {listed(self.unexpected)}")
        if self.mismatched:
            items = [f"{name} (model {list(want)}, weights {list(got)})" for name, want, got in self.mismatched]
            parts.append(f"{len(items)} with the wrong shape: {listed(items)}")
        return "; ".join(parts)


@dataclass
class LoadedWeights:
    model: Any  # Enformer
    report: LoadReport
    source_format: str


# Reading ---------------------------------------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """The weights format at ``path`` (one of :data:`FORMATS`), or a UserError saying what was found."""
    path = Path(path)
    tf_index = _tf_index_path(path)
    if tf_index is not None:
        return "tf-checkpoint"
    if path.is_dir():
        if (path / "variables" / "variables.index").is_file():
            return "tf-savedmodel"
        if (path / CONFIG_NAME).is_file() and is_native_config(path / CONFIG_NAME) and (path / WEIGHTS_NAME).is_file():
            return "native"
        if any((path / name).is_file() for name in _PEER_WEIGHT_NAMES):
            return "enformer-pytorch"
        raise UserError(
            f"{path} holds no weights senformer knows: expected config.json + model.safetensors (native or "
            "Hugging Face), pytorch_model.bin, variables/ (TF-Hub SavedModel) or a TF checkpoint (*.index)"
        )
    if path.is_file() and path.name.endswith(_STATE_DICT_SUFFIXES):
        return "native" if _has_native_names(path) else "enformer-pytorch"
    if not path.exists():
        raise FileNotFoundError(f"no such weights file or directory: {path}")
    raise UserError(f"{path}: unknown weights format (expected a directory, *.safetensors, *.bin/*.pt or a TF checkpoint)")


def _tf_index_path(path: Path) -> Path | None:
    """The ``.index`` file of a TF checkpoint given as a prefix, an index/data file or a folder holding one."""
    text = str(path)
    if text.endswith(".index") and path.is_file():
        return path
    if Path(text + ".index").is_file():
        return Path(text + ".index")
    if ".data-" in path.name:
        candidate = Path(text.split(".data-")[0] + ".index")
        return candidate if candidate.is_file() else None
    if path.is_dir() and not (path / "variables").is_dir():
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0]
    return None


def _has_native_names(path: Path) -> bool:
    state = _read_state_dict_file(path)
    return "stem.conv.weight" in state


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        # weights_only: plain tensors and containers, never arbitrary pickled code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or unsafe files
        raise UserError(f"{path} is not a readable PyTorch state dict ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return state


def read_weights(path: str | os.PathLike, format: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(state dict in senformer names, base config values, format)`` of the weights at ``path``.

    The base config values come from a native ``config.json`` (complete) or from what a foreign format
    records beyond the shapes (e.g. enformer-pytorch's ``target_length``).
    """
    path = Path(path)
    format = format or detect_format(path)
    if format not in FORMATS:
        raise UserError(f"unknown weights format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "native":
        if path.is_dir():
            state, config = read_native(path)
            return state, config.to_dict(), format
        state = _read_state_dict_file(path)
        config_path = path.parent / CONFIG_NAME
        base = EnformerConfig.from_json(config_path).to_dict() if is_native_config(config_path) else {}
        return state, base, format
    if format in ("tf-checkpoint", "tf-savedmodel"):
        from .tf_checkpoint import read_tf_checkpoint

        prefix = path / "variables" / "variables" if format == "tf-savedmodel" else _tf_index_path(path)
        return read_tf_checkpoint(prefix), {}, format
    from .enformer_pytorch import convert_enformer_pytorch, peer_config_values

    if path.is_dir():
        weights_file = next((path / name for name in _PEER_WEIGHT_NAMES if (path / name).is_file()), None)
        base = peer_config_values(path / CONFIG_NAME) if (path / CONFIG_NAME).is_file() else {}
    else:
        weights_file = path
        base = peer_config_values(path.parent / CONFIG_NAME) if (path.parent / CONFIG_NAME).is_file() else {}
    return convert_enformer_pytorch(_read_state_dict_file(weights_file)), base, format


# Checking and loading ---------------------------------------------------------------------------------
def compare_state(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> LoadReport:
    """Names present in both with equal shapes (loaded), missing, unexpected and mismatched."""
    report = LoadReport()
    for name, tensor in expected.items():
        if name not in given:
            report.missing.append(name)
        elif tuple(given[name].shape) != tuple(tensor.shape):
            report.mismatched.append((name, tuple(tensor.shape), tuple(given[name].shape)))
        else:
            report.loaded.append(name)
    report.unexpected = [name for name in given if name not in expected]
    return report


def _raise_if_incomplete(report: LoadReport, source: str) -> None:
    if not report.complete:
        raise UserError(
            f"{source} do not match the model ({report.problems()}); use strict=False / --partial to load "
            "only the matching tensors"
        )


def load_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True, source: str = "weights") -> LoadReport:
    """Copy ``state`` into ``model``; strict: every tensor present once with the right shape, else one
    UserError listing every missing, unexpected and mismatched name. Partial: load the matches."""
    report = compare_state(model.state_dict(), state)
    if strict:
        _raise_if_incomplete(report, source)
    with torch.no_grad():
        model.load_state_dict({name: state[name] for name in report.loaded}, strict=False)
    return report


def load_weights(
    path: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
    format: str | None = None,
) -> LoadedWeights:
    """Build the model described by the weights at ``path`` (plus ``overrides``) and load them."""
    state, base, source_format = read_weights(path, format)
    config = infer_config(state, overrides, base) if source_format != "native" else _native_config(base, overrides)
    model, report = _build_and_load(config, state, strict, f"the weights in {path}")
    if not report.complete:
        warnings.warn(f"partial load from {path}: {report.problems()}", stacklevel=2)
    return LoadedWeights(model.eval(), report, source_format)


def _build_and_load(config: EnformerConfig, state: Mapping[str, torch.Tensor], strict: bool, source: str):
    """The model of ``config`` holding ``state``. A complete state is assigned into a model built on the
    meta device (no initialisation: seconds saved for the full model); a partial one loads into a freshly
    initialised model."""
    from ..model.enformer import Enformer

    with torch.device("meta"):
        skeleton = Enformer(config)
    expected = skeleton.state_dict()
    report = compare_state(expected, state)
    if strict:
        _raise_if_incomplete(report, source)  # before paying for a full initialisation
    if report.complete:
        skeleton.load_state_dict(
            {name: state[name].to(dtype=tensor.dtype) for name, tensor in expected.items()}, assign=True
        )
        tensors = [*skeleton.parameters(), *skeleton.buffers()]
        if not any(tensor.is_meta for tensor in tensors):
            return skeleton, report
    model = Enformer(config)
    return model, load_state(model, state, strict=strict, source=source)


def _native_config(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> EnformerConfig:
    try:
        return EnformerConfig.from_dict({**base, **(overrides or {})})
    except ValueError as error:
        raise UserError(str(error)) from None


def load_model(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None, strict: bool = True):
    """An :class:`Enformer` in eval mode from weights in any supported format.

    Args:
        path: a native directory (``config.json`` + ``model.safetensors``), a TF checkpoint prefix
            (``.../enformer-fine-tuned-human-1``; or its ``.index`` file or folder), a TF-Hub SavedModel
            folder, an enformer-pytorch / Hugging Face folder or a state-dict file.
        overrides: EnformerConfig fields set on top of the stored or inferred config,
            e.g. ``{"attention": "bigbird", "positional_basis_length": 1536}``.
        strict: require every tensor present once with the right shape; ``False`` loads what matches
            (a warning lists the rest) and keeps the fresh initialisation elsewhere.
    """
    return load_weights(path, overrides, strict).model


def save_pretrained(model, directory: str | os.PathLike) -> Path:
    """Write ``model`` in the native format (``config.json`` + ``model.safetensors``) into ``directory``."""
    from .native import save_native

    return save_native(model, directory)


def convert(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
    format: str | None = None,
) -> LoadedWeights:
    """Read weights in any format and write them natively to ``destination``; returns what was loaded."""
    loaded = load_weights(source, overrides, strict, format)
    save_pretrained(loaded.model, destination)
    return loaded
