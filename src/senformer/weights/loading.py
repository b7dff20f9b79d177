"""One entry point for every weights format: detect it, convert to senformer names, check, load.

All formats meet at one state dict in senformer's parameter names (converters only rename and reshape);
the config comes from the native ``config.json`` or is inferred from the tensor shapes, and user overrides
(attention kind, sparse settings, ``positional_basis_length``, ...) go on top. New heads and parameters
named by ``skip`` keep the model's own initialisation; everything else loads exactly (strict) or where it
matches (partial).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import EnformerConfig
from ..errors import UserError
from ..model.enformer import Enformer
from .infer import infer_config
from .native import CONFIG_NAME, WEIGHTS_NAME, is_native_config, read_native, read_safetensors

FORMATS = ("native", "tf-checkpoint", "tf-savedmodel", "enformer-pytorch")

_PEER_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_STATE_DICT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")

# ``skip="attention"``: every tensor of the transformer's attention modules (to_q, to_k, to_v, to_out,
# to_r_k, r_w_bias, r_r_bias), not their LayerNorm (``attention_norm``) or the MLP: the layers the
# S-Enformer report replaced and trained afresh.
ATTENTION_TENSORS = r"^transformer\.\d+\.attention\."


@dataclass
class LoadReport:
    """What a load did, in senformer's tensor names; a strict load refuses any missing, unexpected or
    mismatched tensor with one error listing all of them."""

    source_format: str = ""
    loaded: list[str] = field(default_factory=list)  # model tensors copied from the weights
    fresh: list[str] = field(default_factory=list)  # model tensors kept fresh on request (new heads, skip)
    skipped: list[str] = field(default_factory=list)  # tensors of the weights matched by skip, not loaded
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every tensor not kept fresh on request was loaded, and the weights held nothing else."""
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


def _read_weights(path: str | os.PathLike, format: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
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
def load_model(
    path: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
    *,
    format: str | None = None,
    new_heads: Mapping[str, int] | None = None,
    skip: str | None = None,
    with_report: bool = False,
):
    """An :class:`Enformer` in eval mode from weights in any supported format.

    Args:
        path: a native directory (``config.json`` + ``model.safetensors``), a TF checkpoint prefix
            (``.../enformer-fine-tuned-human-1``; or its ``.index`` file or folder), a TF-Hub SavedModel
            folder, an enformer-pytorch / Hugging Face folder or a state-dict file.
        overrides: EnformerConfig fields set on top of the stored or inferred config,
            e.g. ``{"attention": "bigbird", "positional_basis_length": 1536}``.
        strict: require every tensor (other than those kept fresh below) present once with the right
            shape; ``False`` loads what matches (a warning lists the rest) and keeps the fresh
            initialisation elsewhere.
        format: one of :data:`FORMATS` (default: detected).
        new_heads: ``{head: tracks}`` added to the model, freshly initialised (an existing name is an error).
        skip: ``"attention"`` (every tensor of the transformer's attention modules) or a regular expression
            searched in tensor names: matched tensors keep the model's own initialisation and may differ in
            shape from the weights or be absent from them; matched tensors of the weights are not loaded.
        with_report: return ``(model, LoadReport)`` instead of the model alone.
    """
    state, base, source_format = _read_weights(path, format)
    config = _config(state, base, source_format, overrides)
    if new_heads:
        clash = [name for name in new_heads if name in config.output_heads]
        if clash:
            raise UserError(f"new head(s) {', '.join(clash)} already exist in {path}")
        config = config.replace(output_heads={**config.output_heads, **dict(new_heads)})
    kept_fresh = _skip_pattern(skip)
    with torch.device("meta"):
        skeleton = Enformer(config)
    expected = skeleton.state_dict()
    requested = {f"heads.{head}." for head in (new_heads or {})}
    report = _compare(expected, state, lambda name: name.startswith(tuple(requested)), kept_fresh)
    report.source_format = source_format
    if kept_fresh is not None and not (report.skipped or any(kept_fresh.search(name) for name in expected)):
        raise UserError(
            f"skip={skip!r} matches no tensor of the model or of {path} "
            "(names look like 'transformer.0.attention.to_q.weight')"
        )
    if strict and not report.complete:
        raise UserError(
            f"the weights in {path} do not match the model ({report.problems()}); use strict=False / --partial "
            "to load only the matching tensors"
        )
    model = _assign(skeleton, expected, state, report) or _initialise_and_load(config, state, report)
    if not report.complete:
        warnings.warn(f"partial load from {path}: {report.problems()}", stacklevel=2)
    model.eval()
    return (model, report) if with_report else model


def _config(state: Mapping[str, torch.Tensor], base: Mapping[str, Any], source_format: str, overrides) -> EnformerConfig:
    """The stored config (native) or the one the tensor shapes imply, with ``overrides`` on top."""
    if source_format == "native":
        return EnformerConfig.from_dict({**base, **(overrides or {})})
    return infer_config(state, overrides, base)


def _skip_pattern(skip: str | None) -> re.Pattern | None:
    if skip is None:
        return None
    if skip == "attention":
        return re.compile(ATTENTION_TENSORS)
    try:
        return re.compile(skip)
    except re.error as error:
        raise UserError(f"skip={skip!r} is neither 'attention' nor a valid regular expression: {error}") from None


def _compare(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], is_new, skip: re.Pattern | None) -> LoadReport:
    """Sort every tensor name of the model and of the weights into the report's lists."""
    report = LoadReport()
    skipped = (lambda name: False) if skip is None else (lambda name: skip.search(name) is not None)
    for name, tensor in expected.items():
        if is_new(name) or skipped(name):
            report.fresh.append(name)
        elif name not in given:
            report.missing.append(name)
        elif tuple(given[name].shape) != tuple(tensor.shape):
            report.mismatched.append((name, tuple(tensor.shape), tuple(given[name].shape)))
        else:
            report.loaded.append(name)
    for name in given:
        if skipped(name):
            report.skipped.append(name)
        elif name not in expected:
            report.unexpected.append(name)
    return report


def _assign(skeleton: Enformer, expected, state, report: LoadReport) -> Enformer | None:
    """The meta-device ``skeleton`` holding ``state`` when every tensor loads (no initialisation: seconds
    saved for the full model); None when some tensor has to keep a fresh initialisation."""
    if len(report.loaded) != len(expected):
        return None
    skeleton.load_state_dict({name: state[name].to(dtype=tensor.dtype) for name, tensor in expected.items()}, assign=True)
    if any(tensor.is_meta for tensor in [*skeleton.parameters(), *skeleton.buffers()]):
        return None
    return skeleton


def _initialise_and_load(config: EnformerConfig, state, report: LoadReport) -> Enformer:
    """A freshly initialised model (the model's own initialisation) with the report's loaded tensors copied in."""
    model = Enformer(config)
    with torch.no_grad():
        model.load_state_dict({name: state[name] for name in report.loaded}, strict=False)
    return model
