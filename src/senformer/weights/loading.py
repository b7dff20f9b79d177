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

from ..config import ModelConfig, config_from_dict, config_from_json
from ..errors import UserError
from ..model.borzoi import build_model
from ..model.enformer import Enformer
from ..io import load_torch_file
from .infer import infer_config, uninferred_defaults
from .native import (
    CONFIG_NAME, WEIGHTS_NAME, _read_safetensors, check_finite, is_native_config, read_native_file, tensor_names,
)

FORMATS = ("native", "tf-checkpoint", "tf-savedmodel", "enformer-pytorch", "keras-h5", "borzoi-pytorch")

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
    wrong_kind: list[tuple[str, torch.dtype, torch.dtype]] = field(default_factory=list)  # integer vs floating
    notes: list[str] = field(default_factory=list)  # one line each: config fields the weights did not tell

    @property
    def complete(self) -> bool:
        """Every tensor not kept fresh on request was loaded, and the weights held nothing else."""
        return not (self.missing or self.unexpected or self.mismatched or self.wrong_kind)

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
        if self.wrong_kind:
            items = [f"{name} (model {str(want).removeprefix('torch.')}, weights {str(got).removeprefix('torch.')})"
                     for name, want, got in self.wrong_kind]
            parts.append(f"{len(items)} of the wrong kind of dtype: {listed(items)}")
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
        # senformer's tensors without their config.json: native names decide, not the file name.
        if (path / WEIGHTS_NAME).is_file() and _has_native_names(path / WEIGHTS_NAME):
            return "native"
        if any((path / name).is_file() for name in _PEER_WEIGHT_NAMES):
            return _peer_format(next(path / name for name in _PEER_WEIGHT_NAMES if (path / name).is_file()))
        if any(path.glob("*.h5")):
            return "keras-h5"
        raise UserError(
            f"{path} holds no weights senformer knows: expected config.json + model.safetensors (native or "
            "Hugging Face), pytorch_model.bin, variables/ (TF-Hub SavedModel) or a TF checkpoint (*.index)"
        )
    if path.is_file() and path.name.endswith(_STATE_DICT_SUFFIXES):
        return "native" if _has_native_names(path) else _peer_format(path)
    if path.is_file() and path.suffix == ".h5":
        return "keras-h5"
    if not path.exists():
        raise FileNotFoundError(f"no such weights file or directory: {path} (the official weights: "
                                "`senformer download enformer`, then --weights enformer)")
    raise UserError(f"{path}: unknown weights format (expected a directory, *.safetensors, *.bin/*.pt or a TF checkpoint)")


def weights_files(path: str | os.PathLike) -> list[Path]:
    """Every file loading ``path`` may read (weights, index and data shards, config.json), sorted; for a
    fingerprint of the source taken before anything is loaded."""
    path = Path(path)
    tf_index = _tf_index_path(path)
    if tf_index is not None:
        return [tf_index, *_tf_shards(tf_index)]
    if path.is_dir():
        variables = path / "variables" / "variables.index"
        found = [path / name for name in (CONFIG_NAME, WEIGHTS_NAME, *_PEER_WEIGHT_NAMES)] + list(path.glob("*.h5"))
        if variables.is_file():
            found += [variables, *_tf_shards(variables)]
        return sorted({file for file in found if file.is_file()})
    return sorted({file for file in (path, path.parent / CONFIG_NAME) if file.is_file()})


def _tf_shards(index: Path) -> list[Path]:
    prefix = index.name[: -len(".index")]
    return sorted(index.parent.glob(f"{prefix}.data-*"))


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


def _peer_format(path: Path) -> str:
    """``borzoi-pytorch`` or ``enformer-pytorch``, by the names in a peer's state-dict file."""
    from .borzoi_pytorch import is_borzoi_pytorch

    names = tensor_names(path) if path.suffix == ".safetensors" else _read_state_dict_file(path, check=False)
    return "borzoi-pytorch" if is_borzoi_pytorch(names) else "enformer-pytorch"


def _has_native_names(path: Path) -> bool:
    names = tensor_names(path) if path.suffix == ".safetensors" else _read_state_dict_file(path, check=False)
    return "stem.conv.weight" in names


def _read_state_dict_file(path: Path, check: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (safetensors or a ``torch.save`` dict, read with weights_only).

    ``check``: refuse non-finite values (these formats carry no checksum). A native ``model.safetensors``
    whose config.json records a checksum is verified against it instead.
    """
    if path.suffix == ".safetensors":
        return read_native_file(path) if check else _read_safetensors(path)
    state = load_torch_file(path, "PyTorch state dict")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    if check:
        check_finite(state, path)
    return state


@dataclass
class _Weights:
    """What :func:`_read_weights` found: tensors in senformer names and what is known beyond their shapes."""

    state: dict[str, torch.Tensor]
    base: dict[str, Any]  # config values from a config file (complete for a native config.json)
    format: str
    complete_config: bool  # base is a whole native config: nothing to infer


def _read_weights(path: str | os.PathLike, format: str | None = None, overrides: Mapping[str, Any] | None = None) -> _Weights:
    """The weights at ``path`` in senformer names, with what a config file says about them.

    The base config values come from a native ``config.json`` (complete) or from what a foreign format
    records beyond the shapes (e.g. enformer-pytorch's ``target_length``).
    """
    path = Path(path)
    format = format or detect_format(path)
    if format not in FORMATS:
        raise UserError(f"unknown weights format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "native":
        weights_file = path / WEIGHTS_NAME if path.is_dir() else path
        config_path = weights_file.parent / CONFIG_NAME
        state = _read_state_dict_file(weights_file)
        if is_native_config(config_path):
            return _Weights(state, config_from_json(config_path).to_dict(), format, True)
        return _Weights(state, {}, format, False)
    if format in ("tf-checkpoint", "tf-savedmodel"):
        from .tf_checkpoint import read_tf_checkpoint

        # No finiteness check: the checkpoint's own CRCs (verified by the reader) prove its bytes.
        prefix = path / "variables" / "variables" if format == "tf-savedmodel" else _tf_index_path(path)
        return _Weights(read_tf_checkpoint(prefix), {}, format, False)
    if format == "keras-h5":
        from .keras_h5 import keras_files, read_keras_borzoi_files

        # The model_config graph gives the whole architecture; h5py reads no pickled code.
        files = keras_files(path)
        if not files:
            raise UserError(f"{path} holds no Keras .h5 files")
        state, values = read_keras_borzoi_files(files)
        check_finite(state, path)
        return _Weights(state, values, format, True)
    from .enformer_pytorch import convert_enformer_pytorch, peer_config_values

    if path.is_dir():
        weights_file = next((path / name for name in _PEER_WEIGHT_NAMES if (path / name).is_file()), None)
        if weights_file is None:
            raise UserError(f"{path} holds no {' or '.join(_PEER_WEIGHT_NAMES)}")
    else:
        weights_file = path
    config_path = weights_file.parent / CONFIG_NAME
    if format == "borzoi-pytorch":
        from . import borzoi_pytorch

        base = (borzoi_pytorch.peer_config_values(config_path) if config_path.is_file()
                else {"positional_basis_length": borzoi_pytorch.BORZOI_TRAINING_POSITIONS})
        known = {**base, **(overrides or {})}  # Flashzoi's packed Wqkv splits by the head counts
        state = borzoi_pytorch.convert_borzoi_pytorch(_read_state_dict_file(weights_file), known.get("heads", 8),
                                                      known.get("kv_heads"))
        return _Weights(state, base, format, False)
    base = peer_config_values(config_path) if config_path.is_file() else {}
    state = convert_enformer_pytorch(_read_state_dict_file(weights_file))
    return _Weights(state, base, format, False)


# Checking and loading ---------------------------------------------------------------------------------
def load_local_model(
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
    weights = _read_weights(path, format, overrides)
    state, source_format = weights.state, weights.format
    config = _config(weights, overrides, path)
    if new_heads:
        clash = [name for name in new_heads if name in config.output_heads]
        if clash:
            raise UserError(f"new head(s) {', '.join(clash)} already exist in {path}")
        config = config.replace(output_heads={**config.output_heads, **dict(new_heads)})
    kept_fresh = _skip_pattern(skip)
    with torch.device("meta"):
        skeleton = build_model(config)
    expected = skeleton.state_dict()
    requested = {f"heads.{head}." for head in (new_heads or {})}
    report = _compare(expected, state, lambda name: name.startswith(tuple(requested)), kept_fresh)
    report.source_format = source_format
    report.notes.extend(_inference_notes(weights, overrides, path))
    if kept_fresh is not None and not (report.skipped or any(kept_fresh.search(name) for name in expected)):
        raise UserError(
            f"skip={skip!r} matches no tensor of the model or of {path} "
            "(names look like 'transformer.0.attention.to_q.weight')"
        )
    if strict and not report.complete:
        raise UserError(
            f"the weights in {path} do not match the model ({report.problems()}); use strict=False / --partial "
            "to load only the matching tensors, or skip= / --init-skip to keep named ones freshly initialised"
        )
    model = _assign(skeleton, expected, state, report) or _initialise_and_load(config, state, report)
    for note in report.notes:
        warnings.warn(note, stacklevel=2)
    if not report.complete:
        warnings.warn(f"partial load from {path}: {report.problems()}", stacklevel=2)
    model.eval()
    return (model, report) if with_report else model


def _config(weights: _Weights, overrides: Mapping[str, Any] | None, path) -> ModelConfig:
    """The stored config (native, Keras) or the one the tensor shapes imply, with ``overrides`` on top."""
    if weights.complete_config:
        return config_from_dict({**weights.base, **(overrides or {})})
    try:
        return infer_config(weights.state, overrides, weights.base)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def _inference_notes(weights: _Weights, overrides: Mapping[str, Any] | None, path) -> list[str]:
    """One line naming the config fields that neither the shapes, a config file nor ``overrides`` gave.

    DeepMind's checkpoints are the published model, whose values are the defaults; an enformer-pytorch
    model is full attention with the published dropout, so only its output length can be unknown.
    """
    if weights.complete_config or weights.format not in ("native", "enformer-pytorch"):
        return []
    fields = ("target_length", "attention", "dropout_rate") if weights.format == "native" else ("target_length",)
    unknown = uninferred_defaults(weights.state, {**weights.base, **(overrides or {})}, fields)
    if not unknown:
        return []
    return [f"{path} has no senformer config.json: the architecture comes from the tensor shapes; "
            f"defaults used for {', '.join(unknown)} (override them to change)"]


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
        elif given[name].is_floating_point() != tensor.is_floating_point():
            # Precision may differ (float64 or float16 weights load into float32), but integers in a
            # floating tensor's place are another tensor's bytes (a damaged header's dtype), never weights.
            report.wrong_kind.append((name, tensor.dtype, given[name].dtype))
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


def _initialise_and_load(config: ModelConfig, state, report: LoadReport) -> Enformer:
    """A freshly initialised model (the model's own initialisation) with the report's loaded tensors copied in."""
    model = build_model(config)
    with torch.no_grad():
        model.load_state_dict({name: state[name] for name in report.loaded}, strict=False)
    return model
