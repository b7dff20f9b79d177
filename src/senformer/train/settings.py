"""``TrainSettings``: every knob of a training run, from a YAML/JSON file and/or flags, saved with the run.

Unknown keys are errors that name the key and the file; the resolved settings are written as
``settings.json`` beside the outputs and inside every checkpoint.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..config import PRESETS, EnformerConfig, preset
from ..errors import UserError

LOSSES = ("poisson", "poisson_mn")  # Enformer's Poisson; Borzoi's Poisson-multinomial (train/losses.py)
TRAINABLE_CHOICES = ("all", "attention", "heads")  # besides a parameter-name pattern (train/freeze.py)


@dataclass(frozen=True)
class TrainSettings:
    """A training run. Defaults follow the official training colab (Adam 5e-4, 5,000 warm-up steps,
    Poisson loss, human and mouse batches alternating, shift and reverse-complement augmentation)."""

    # Data: head name -> Basenji2-layout directory (`human`, `mouse`, or a new head's dataset).
    data: Mapping[str, str] = field(default_factory=dict)
    genome: Mapping[str, str] = field(default_factory=dict)  # head -> FASTA to extend inputs (optional)
    sequence_length: int | None = None  # None: the records' own length
    train_split: str = "train"
    eval_split: str = "valid"
    max_train_examples: int | None = None  # a subset of the training split (quick runs)
    shuffle_buffer: int = 0  # Basenji datasets: examples held for shuffling (0: file order)

    # Model.
    preset: str = "enformer"
    model_config: str | None = None  # EnformerConfig JSON (replaces the preset)
    attention: str | None = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)  # EnformerConfig fields
    init_weights: str | None = None  # any format senformer.load_model reads
    # `attention` or a regular expression on tensor names: these keep their fresh initialisation and may
    # differ in shape from init_weights or be absent from them; everything else must load exactly.
    init_skip: str | None = None
    new_heads: Mapping[str, int] = field(default_factory=dict)  # head -> tracks, freshly initialised

    # What trains and how.
    train: str = "all"  # all | attention | heads | a regular expression on parameter names
    steps: int = 1000  # optimizer steps per head (one human then one mouse update per step)
    batch_size: int = 1  # per rank, per update
    grad_accumulation: int = 1
    learning_rate: float = 5e-4
    warmup_steps: int = 5000
    decay: str = "none"  # none | cosine
    final_lr_factor: float = 0.0  # cosine floor, as a fraction of learning_rate
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    shift: int = 3  # random shift of the input by up to +-shift bp (paper: 3)
    reverse_complement: bool = True
    teacher: str | None = None  # full-attention teacher weights for distillation
    distill_weight: float = 0.5  # 0: data only, 1: teacher only
    loss: str = "poisson"  # one of LOSSES: poisson (Enformer's) or poisson_mn (Borzoi's)
    total_weight: float = 0.2  # poisson_mn: weight of the total term (0.2 published)
    batchnorm: str = "cross-rank"  # cross-rank | local: BatchNorm statistics in training mode
    bf16: bool = False
    checkpoint_activations: bool = False  # transformer blocks
    checkpoint_conv_tower: bool = False

    # Evaluation, logging, checkpoints.
    eval_every: int = 500
    eval_examples: int | None = 64  # None: the whole split
    eval_batch_size: int | None = None  # None: batch_size
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    progress: bool = True

    # Reproducibility and hardware.
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch.set_num_threads per process

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", {str(k): str(v) for k, v in dict(self.data).items()})
        object.__setattr__(self, "genome", {str(k): str(v) for k, v in dict(self.genome).items()})
        object.__setattr__(self, "model_overrides", dict(self.model_overrides))
        problems: list[str] = []
        try:
            object.__setattr__(self, "new_heads", {str(k): _whole(v) for k, v in dict(self.new_heads).items()})
        except (TypeError, ValueError):
            problems.append(f"new_heads={self.new_heads!r} must map head names to whole track counts")
        try:
            betas = tuple(float(b) for b in self.adam_betas)
            if len(betas) != 2:
                raise ValueError(betas)
            object.__setattr__(self, "adam_betas", betas)
        except (TypeError, ValueError):
            problems.append(f"adam_betas={self.adam_betas!r} must be two numbers")
        if not self.data:
            problems.append("data is empty: give at least one head's dataset directory (e.g. --data human=DIR)")
        for name in self.genome:
            if name not in self.data:
                problems.append(f"genome for head {name!r} but no data for it")
        if self.preset not in PRESETS:
            problems.append(f"preset={self.preset!r} is not one of {', '.join(PRESETS)}")
        for name in ("steps", "batch_size", "grad_accumulation", "log_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "shift", "shuffle_buffer"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate={self.learning_rate} must be positive")
        if self.decay not in ("none", "cosine"):
            problems.append(f"decay={self.decay!r} is not one of none, cosine")
        if not 0.0 <= self.distill_weight <= 1.0:
            problems.append(f"distill_weight={self.distill_weight} is not in [0, 1]")
        if self.loss not in LOSSES:
            problems.append(f"loss={self.loss!r} is not one of {', '.join(LOSSES)}")
        if not 0.0 <= self.total_weight < float("inf"):
            problems.append(f"total_weight={self.total_weight} must be a finite number >= 0")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            problems.append(f"clip_grad_norm={self.clip_grad_norm} must be positive or null")
        if self.batchnorm not in ("cross-rank", "local"):
            problems.append(f"batchnorm={self.batchnorm!r} is not one of cross-rank, local")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device={self.device!r} is not one of auto, cpu, cuda")
        if self.eval_examples is not None and self.eval_examples < 1:
            problems.append(f"eval_examples={self.eval_examples} must be positive or null (whole split)")
        if self.init_skip is not None:
            if self.init_weights is None:
                problems.append(f"init_skip={self.init_skip!r} needs init_weights (--init) to skip tensors of")
            elif self.init_skip != "attention":
                try:
                    re.compile(self.init_skip)
                except re.error as error:
                    problems.append(f"init_skip={self.init_skip!r} is neither attention nor a valid regular expression: {error}")
        if not self.train:
            problems.append(f"train is empty; choose {', '.join(TRAINABLE_CHOICES)} or a parameter-name pattern")
        for name, tracks in self.new_heads.items():
            if not str(name).isidentifier() or not isinstance(tracks, int) or tracks < 1:
                problems.append(f"new head {name!r}:{tracks} needs an identifier name and a positive track count")
        if problems:
            raise UserError("invalid training settings: " + "; ".join(problems))

    # Model configuration ------------------------------------------------------------------------
    def config_overrides(self) -> dict[str, Any]:
        """The EnformerConfig fields these settings name explicitly (the preset's own fields unless
        ``model_config`` replaces the preset, then ``model_overrides``, the attention kind and the
        checkpointing switches); initial weights keep every other field of their own config (the default
        preset, ``enformer``, names none)."""
        preset_fields = {} if self.model_config else PRESETS[self.preset]
        values = {**preset_fields, **self.model_overrides}
        if self.attention:
            values["attention"] = self.attention
        if self.checkpoint_activations:
            values["checkpoint_transformer"] = True
        if self.checkpoint_conv_tower:
            values["checkpoint_conv_tower"] = True
        return values

    def model_config_dict(self) -> dict[str, Any]:
        """EnformerConfig fields requested by these settings on top of the preset or JSON (not weights)."""
        base = EnformerConfig.from_json(self.model_config) if self.model_config else preset(self.preset)
        return {**base.to_dict(), **self.config_overrides()}

    # Serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["adam_betas"] = list(self.adam_betas)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "settings") -> "TrainSettings":
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise UserError(f"{source}: unknown setting(s) {', '.join(hints)}")
        coerced = {key: _coerce(key, value, source) for key, value in values.items()}
        try:
            return cls(**coerced)
        except TypeError as error:
            raise UserError(f"{source}: {error}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> "TrainSettings":
        """Read YAML or JSON (a mapping at the top level) and apply ``overrides`` on top."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"settings file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
        except yaml.YAMLError as error:
            raise UserError(f"{path}: not valid YAML/JSON: {str(error).splitlines()[0]}") from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise UserError(f"{path}: the top level must be a mapping of settings, got {type(values).__name__}")
        return cls.from_dict(merge_settings(values, overrides or {}), source=str(path))

    def replace(self, **changes: Any) -> "TrainSettings":
        return dataclasses.replace(self, **changes)


def _whole(value: Any) -> int:
    """``value`` as an int when it is a whole number (``3``, ``"3"``, ``3.0``); ValueError otherwise."""
    number = float(value)
    if isinstance(value, bool) or not number.is_integer():
        raise ValueError(value)
    return int(number)


def merge_settings(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; mapping settings (data, genome, new_heads, model_overrides) merge
    key by key so a flag adds one head without dropping the file's others."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check a file or flag value against the field's type. Numbers that YAML 1.1 reads as strings
    (``5e-4`` is a string to PyYAML) become numbers; anything else of the wrong type is an error."""
    hint = typing.get_type_hints(TrainSettings)[key]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = set(typing.get_args(hint)) if union else {hint}
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"{source}: {key} may not be null")
    scalar = next((kind for kind in (bool, int, float) if kind in allowed), None)
    if scalar is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{source}: {key}={value!r} is not true or false")
    if scalar is not None:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise UserError(f"{source}: {key}={value!r} is not a number")
        if scalar is int:
            if not float(number).is_integer():
                raise UserError(f"{source}: {key}={value!r} is not a whole number")
            return int(number)
        return float(number)
    if str in allowed and not isinstance(value, str):
        raise UserError(f"{source}: {key}={value!r} is not a string")
    origins = {typing.get_origin(kind) for kind in allowed}
    if origins & {collections.abc.Mapping, dict} and not isinstance(value, Mapping):
        raise UserError(f"{source}: {key} must be a mapping, got {value!r}")
    if tuple in origins and not isinstance(value, (list, tuple)):
        raise UserError(f"{source}: {key} must be a list, got {value!r}")
    return value
