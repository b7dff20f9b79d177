"""``EnformerConfig``: a frozen, validated description of the model, and the named presets."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from .constants import CROP_MARGIN, NUM_TRACKS, SEQUENCE_LENGTH, TARGET_LENGTH
from .errors import UserError

ATTENTION_KINDS = ("full", "chunked", "bigbird")


# The one key a native config.json holds beside the fields: the SHA-256 of the model.safetensors next to it
# (senformer.weights.native). Reading such a file as a config (``--config weights/config.json``) ignores it.
WEIGHTS_CHECKSUM_KEY = "weights_sha256"


def _default_heads() -> dict[str, int]:
    return dict(NUM_TRACKS)


@dataclass(frozen=True)
class EnformerConfig:
    """Hyper-parameters of Enformer and of its attention kind.

    Defaults are the published model (DeepMind ``enformer.py``, ``attention_module.py``).
    """

    # Not fields (no JSON key): what the family fixes. The relative-position basis families
    # (model/positional.py) and the LayerNorm epsilon (sonnet's 1e-5).
    positional_functions: ClassVar[tuple[str, ...]] = ("exponential", "central_mask", "gamma")
    layer_norm_eps: ClassVar[float] = 1e-5
    published_sequence_length: ClassVar[int] = SEQUENCE_LENGTH  # the default input (inference.py)

    dim: int = 1536
    depth: int = 11
    heads: int = 8
    key_size: int = 64
    value_size: int | None = None  # None: dim // heads (192 in the published model)
    num_poolings: int = 7  # stem pooling + 6 conv-tower poolings: 2**7 = 128 bp per position
    num_conv_tower_blocks: int = 6
    conv_tower_divisible_by: int = 128  # tower filters rounded to this (official); tiny test models use less
    target_length: int | None = TARGET_LENGTH  # None: trim CROP_MARGIN bins per side instead
    output_heads: Mapping[str, int] = field(default_factory=_default_heads)

    # Dropout rates of the published model.
    dropout_rate: float = 0.4  # after attention and in the MLP
    attention_dropout_rate: float = 0.05
    positional_dropout_rate: float = 0.01
    final_dropout_rate: float = 0.05  # 0.4 / 8 in DeepMind's code

    # Attention.
    attention: str = "full"
    relative_positions: bool = True
    num_relative_position_features: int | None = None  # None: dim // heads (192), 6 families x 32
    positional_basis_length: int | None = None  # None: the actual number of positions
    chunk_size: int = 256  # query positions per chunk for "chunked"
    block_size: int = 64  # BigBird
    num_window_blocks: int = 3  # odd: the query block and (n - 1) / 2 on each side
    num_global_blocks: int = 2  # first and last block (0 or 2)
    num_random_blocks: int = 3
    attention_seed: int = 0  # seeds the random blocks; the same pattern in training and evaluation
    # Attention variants of the accuracy study (issue 23); the defaults are the published layer, and a config
    # writes them only when set (STUDY_DEFAULTS), so every other model's config.json is as before.
    # Random blocks drawn only from blocks 1 .. round(fraction x blocks): Google BigBird's plan at 1,536
    # positions in blocks of 64 (the S-Enformer report's) draws from blocks 1-9 of 24, 0.375.
    random_block_fraction: float = 1.0
    attention_bias: bool = False  # q/k/v projections with biases (the report's layer)
    attention_output_init: str = "zero"  # the output projection's start: zero, or normal (std 0.02, the report's)
    # Positions besides (or instead of) the relative term: none, rotary (q and k, the whole key size) or
    # absolute (a fixed sinusoidal table added to the input of q and k).
    added_positions: str = "none"

    # Memory switches (used by training and long-sequence inference).
    checkpoint_transformer: bool = False
    checkpoint_conv_tower: bool = False
    # Inference (eval mode) runs the stem and conv tower over overlapping windows of this many bp, halo
    # included, when the input is longer: exact, and memory set by the window (model/tiling.py). None: never.
    conv_tile_length: int | None = 131_072

    def __post_init__(self) -> None:
        # Types first: a value of the wrong type (``--set depth=1.5``, a string from a hand-edited JSON)
        # would otherwise fail later inside torch with a traceback instead of one line naming the field.
        wrong_types = _type_problems(self)
        if wrong_types:
            raise UserError("invalid EnformerConfig: " + "; ".join(wrong_types))
        object.__setattr__(self, "output_heads", dict(self.output_heads))
        problems: list[str] = []
        if self.dim <= 0 or self.depth < 0 or self.heads <= 0 or self.key_size <= 0:
            problems.append(
                f"dim={self.dim}, depth={self.depth}, heads={self.heads}, key_size={self.key_size} "
                "must be positive (depth may be 0)"
            )
        if self.dim % self.heads:
            problems.append(f"dim={self.dim} is not divisible by heads={self.heads}")
        if self.dim % 2:
            problems.append(f"dim={self.dim} must be even (the stem has dim // 2 channels)")
        if self.value_size is not None and self.value_size <= 0:
            problems.append(f"value_size={self.value_size} must be positive")
        if self.num_poolings != self.num_conv_tower_blocks + 1:
            problems.append(
                f"num_poolings={self.num_poolings} must equal num_conv_tower_blocks + 1 "
                f"= {self.num_conv_tower_blocks + 1} (one pooling in the stem, one per tower block)"
            )
        if self.num_conv_tower_blocks < 1:
            problems.append(f"num_conv_tower_blocks={self.num_conv_tower_blocks} must be at least 1")
        if self.conv_tower_divisible_by <= 0:
            problems.append(f"conv_tower_divisible_by={self.conv_tower_divisible_by} must be positive")
        elif self.dim > 0 and min(self.conv_tower_filters) <= 0:
            problems.append(
                f"conv_tower_divisible_by={self.conv_tower_divisible_by} rounds a tower filter of dim={self.dim} to 0"
                + self._tower_divisor_fix()
            )
        elif self.dim > 0 and self.conv_tower_filters[-1] != self.dim:
            problems.append(
                f"conv_tower_divisible_by={self.conv_tower_divisible_by} rounds the last tower filter of dim={self.dim} "
                f"to {self.conv_tower_filters[-1]}; the transformer needs {self.dim}" + self._tower_divisor_fix()
            )
        if self.target_length is not None and self.target_length <= 0:
            problems.append(f"target_length={self.target_length} must be positive or None")
        problems += _head_and_rate_problems(self)
        if self.attention not in ATTENTION_KINDS:
            problems.append(f"attention={self.attention!r} is not one of {', '.join(ATTENTION_KINDS)}")
        features = self.relative_features
        if self.relative_positions and features % 6:
            problems.append(
                f"num_relative_position_features={features} is not divisible by 6 "
                "(3 families, symmetric and sign-multiplied copies)"
            )
        problems += _attention_setting_problems(self)
        problems += _study_variant_problems(self)
        if self.conv_tile_length is not None and (
            self.conv_tile_length <= 0 or self.conv_tile_length % (2**self.num_poolings)
        ):
            problems.append(
                f"conv_tile_length={self.conv_tile_length} must be None or a positive multiple of "
                f"{2**self.num_poolings} bp"
            )
        if problems:
            raise UserError("invalid EnformerConfig: " + "; ".join(problems))

    # Derived sizes -------------------------------------------------------------------------
    @property
    def head_value_size(self) -> int:
        return self.value_size if self.value_size is not None else self.dim // self.heads

    @property
    def conv_tower_filters(self) -> list[int]:
        """Filters of the conv tower blocks: [768, 896, 1024, 1152, 1280, 1536] for dim 1536.

        DeepMind's ``exponential_linspace_int(dim // 2, dim, num_blocks, divisible_by=128)``, rounding half
        to even as numpy does.
        """
        return _tower_filters(self.dim, self.num_conv_tower_blocks, self.conv_tower_divisible_by)

    def _tower_divisor_fix(self) -> str:
        divisor = self._fitting_tower_divisor()
        return f" (--set conv_tower_divisible_by={divisor} fits dim={self.dim})" if divisor else ""

    def _fitting_tower_divisor(self) -> int | None:
        """The largest power of two up to 128 whose rounding gives every tower filter a width and the last
        one ``dim``: the fix a too-small or odd-sized config needs (None when none does)."""
        for divisor in (128, 64, 32, 16, 8, 4, 2, 1):
            filters = _tower_filters(self.dim, self.num_conv_tower_blocks, divisor)
            if min(filters) > 0 and filters[-1] == self.dim:
                return divisor
        return None

    @property
    def relative_features(self) -> int:
        if self.num_relative_position_features is not None:
            return self.num_relative_position_features
        return self.dim // self.heads

    @property
    def bin_size(self) -> int:
        return 2**self.num_poolings

    def num_positions(self, sequence_length: int) -> int:
        """Positions after pooling for an input of ``sequence_length`` bp."""
        return sequence_length // self.bin_size

    def output_length(self, sequence_length: int) -> int:
        """Output bins for an input of ``sequence_length`` bp."""
        if self.target_length is not None:
            return self.target_length
        return self.num_positions(sequence_length) - 2 * CROP_MARGIN

    def min_sequence_length(self) -> int:
        """The shortest valid input in bp."""
        if self.target_length is not None:
            return self.target_length * self.bin_size
        return (2 * CROP_MARGIN + 1) * self.bin_size

    def validate_sequence_length(self, sequence_length: int) -> None:
        """Raise a :class:`UserError` (a ``ValueError``) naming the length and the nearest valid ones."""
        _check_sequence_length(sequence_length, self.bin_size, self.min_sequence_length())

    # Serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for name, default in STUDY_DEFAULTS.items():
            if name in values and values[name] == default:  # BorzoiConfig shares this method
                del values[name]
        return values

    def to_json(self) -> str:
        """The config as JSON text (sorted keys); writing it is the caller's (``io.atomic_write_text``)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "EnformerConfig":
        if not isinstance(values, Mapping):
            raise UserError(f"an EnformerConfig must be a mapping of field names to values, got {type(values).__name__}")
        values = {key: value for key, value in values.items() if key != WEIGHTS_CHECKSUM_KEY}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown EnformerConfig fields: {', '.join(map(str, unknown))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> "EnformerConfig":
        """A config from JSON text or a JSON file; a problem in a file is a UserError naming the file."""
        text = str(text_or_path)
        if text.lstrip().startswith("{"):
            return cls.from_dict(json.loads(text))
        with open(text_or_path, encoding="utf-8") as handle:
            text = handle.read()
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as error:
            raise UserError(f"{text_or_path}: not valid JSON ({error})") from None
        except UserError as error:
            raise UserError(f"{text_or_path}: {error}") from None

    def replace(self, **changes: Any) -> "EnformerConfig":
        return dataclasses.replace(self, **changes)


def _head_and_rate_problems(config) -> list[str]:
    """Either family's output heads (identifiers, positive track counts) and dropout rates (in [0, 1))."""
    problems = []
    if not config.output_heads:
        problems.append("output_heads is empty")
    for name, tracks in config.output_heads.items():
        if not isinstance(name, str) or not name.isidentifier() or not _is_whole(tracks) or tracks <= 0:
            problems.append(f"output head {name!r}: {tracks!r} tracks (need an identifier and a positive count)")
    for rate_name in ("dropout_rate", "attention_dropout_rate", "positional_dropout_rate", "final_dropout_rate"):
        rate = getattr(config, rate_name)
        if not 0.0 <= rate < 1.0:
            problems.append(f"{rate_name}={rate} is not in [0, 1)")
    return problems


def _attention_setting_problems(config) -> list[str]:
    """Either family's position basis and the settings of the chunked and BigBird kinds."""
    problems = []
    if config.positional_basis_length is not None and config.positional_basis_length < 2:
        problems.append(f"positional_basis_length={config.positional_basis_length} must be at least 2")
    if config.chunk_size <= 0:
        problems.append(f"chunk_size={config.chunk_size} must be positive")
    if config.block_size <= 0:
        problems.append(f"block_size={config.block_size} must be positive")
    if config.num_window_blocks < 1 or config.num_window_blocks % 2 == 0:
        problems.append(f"num_window_blocks={config.num_window_blocks} must be odd and positive")
    if config.num_global_blocks not in (0, 2):
        problems.append(f"num_global_blocks={config.num_global_blocks} must be 0 or 2 (first and last block)")
    if config.num_random_blocks < 0:
        problems.append(f"num_random_blocks={config.num_random_blocks} must be >= 0")
    return problems


# The study's attention variants at their defaults: left out of to_dict (a config without them is unchanged).
STUDY_DEFAULTS = {"random_block_fraction": 1.0, "attention_bias": False, "attention_output_init": "zero",
                  "added_positions": "none"}


def _study_variant_problems(config: EnformerConfig) -> list[str]:
    problems = []
    if not 0.0 < config.random_block_fraction <= 1.0:
        problems.append(f"random_block_fraction={config.random_block_fraction} must be in (0, 1]")
    if config.attention_output_init not in ("zero", "normal"):
        problems.append(f"attention_output_init={config.attention_output_init!r} must be zero or normal")
    if config.added_positions not in ("none", "rotary", "absolute"):
        problems.append(f"added_positions={config.added_positions!r} must be none, rotary or absolute")
    elif config.added_positions == "rotary" and config.key_size % 2:
        problems.append(f"added_positions='rotary' needs an even key_size, not {config.key_size}")
    elif config.added_positions == "absolute" and config.dim % 2:
        problems.append(f"added_positions='absolute' needs an even dim, not {config.dim}")
    return problems


def _check_sequence_length(sequence_length: int, multiple: int, minimum: int) -> None:
    """UserError naming ``sequence_length`` and the nearest valid lengths unless it is a multiple of
    ``multiple`` and at least ``minimum`` bp."""
    if sequence_length % multiple == 0 and sequence_length >= minimum:
        return
    below = (sequence_length // multiple) * multiple
    above = below + multiple if below != sequence_length else below
    above = max(above, minimum)
    nearest = sorted({length for length in (below, above) if length >= minimum})
    hint = " or ".join(f"{n:,}" for n in nearest)
    raise UserError(
        f"sequence length {sequence_length:,} bp is not valid: it must be a multiple of {multiple} "
        f"and at least {minimum:,} bp; nearest valid: {hint}"
    )


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolves the string annotations once, not per config


def _type_problems(config: EnformerConfig) -> list[str]:
    """One line per field whose value is not of the declared type (ints are not floats, bools not ints)."""
    problems = []
    hints = _field_types(type(config))
    for item in dataclasses.fields(config):
        value, hint = getattr(config, item.name), hints[item.name]
        is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed = typing.get_args(hint) if is_union else (hint,)
        if value is None:
            if type(None) not in allowed:
                problems.append(f"{item.name} may not be null")
            continue
        if bool in allowed:
            valid, wanted = isinstance(value, bool), "true or false"
        elif int in allowed:
            valid, wanted = _is_whole(value), "a whole number"
        elif float in allowed:
            valid, wanted = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
        elif str in allowed:
            valid, wanted = isinstance(value, str), "a string"
        else:  # output_heads
            valid, wanted = isinstance(value, Mapping), "a mapping of head name to track count"
        if not valid:
            problems.append(f"{item.name}={value!r} is not {wanted}")
    return problems


# Borzoi and Flashzoi ------------------------------------------------------------------------------
BORZOI_ATTENTION_KINDS = (*ATTENTION_KINDS, "rotary")  # "rotary": Flashzoi's grouped-query rotary attention
BORZOI_TRACKS = {"human": 7611, "mouse": 2608}
"""Output tracks of the published Borzoi heads (calico's ``targets_human.txt`` / ``targets_mouse.txt``)."""
BORZOI_TRAINING_POSITIONS = 4096
"""Transformer positions of the published models (524,288 bp / 128): their relative-position basis."""


def _borzoi_heads() -> dict[str, int]:
    return dict(BORZOI_TRACKS)


@dataclass(frozen=True)
class BorzoiConfig:
    """Hyper-parameters of Borzoi (Linder et al. 2025) and Flashzoi, and of the attention kind.

    Defaults are the published model (calico's ``params_pred.json`` read by baskerville's ``seqnn``):

        524,288 bp -> conv (15) + max pool -> 6 x [BatchNorm -> GELU -> conv (5) -> max pool]   (T, dim) at 128 bp
          -> depth x transformer block -> U-Net: 2 x [upsample x2 + 1x1 conv of the tower's skip -> separable conv]
          -> crop 16 bins per side -> BatchNorm -> GELU -> conv (1920) -> GELU -> heads (softplus)   (16,352 bins of 32 bp)

    The tower's skips are its outputs before pooling at 64 and 32 bp. ``attention="rotary"`` is Flashzoi:
    ``heads`` query heads sharing ``kv_heads`` key/value heads of size ``key_size``, rotary positions on the
    first ``rotary_dims`` dimensions of each head and no relative-position term.
    """

    # Keras's epsilons (calico trained in Keras): BatchNormalization and LayerNormalization both 1e-3.
    positional_functions: ClassVar[tuple[str, ...]] = ("borzoi_central_mask",)
    layer_norm_eps: ClassVar[float] = 1e-3
    batch_norm_eps: ClassVar[float] = 1e-3
    published_sequence_length: ClassVar[int] = 524_288

    family: str = "borzoi"  # the key a config.json is told apart by
    dim: int = 1536
    depth: int = 8
    heads: int = 8
    key_size: int = 64
    value_size: int | None = None  # None: dim // heads (192)
    stem_channels: int = 512
    stem_width: int = 15
    num_conv_tower_blocks: int = 6
    conv_tower_start: int = 608  # first tower block's filters, growing exponentially to dim
    conv_tower_width: int = 5
    conv_tower_divisible_by: int = 32
    unet_levels: int = 2  # U-Net steps back up: 128 -> 64 -> 32 bp
    unet_upsample_conv: bool = True  # a 1x1 conv on the upsampled path (params_pred; not params_micro)
    unet_width: int = 3  # the separable conv after each step
    crop: int = 16  # bins trimmed from each end when target_length is None (Cropping1D)
    target_length: int | None = None  # keep the central bins instead (borzoi-pytorch returns 6,144)
    final_channels: int | None = 1920  # the conv before the heads; None: none (params_micro)
    output_heads: Mapping[str, int] = field(default_factory=_borzoi_heads)

    dropout_rate: float = 0.2  # after attention and in the MLP
    attention_dropout_rate: float = 0.05
    positional_dropout_rate: float = 0.01
    final_dropout_rate: float = 0.1

    attention: str = "full"
    relative_positions: bool = True
    num_relative_position_features: int | None = 32  # central mask only: 16 widths and their sign copies
    positional_basis_length: int | None = None  # None: the actual positions (baskerville); published: 4,096
    chunk_size: int = 256
    block_size: int = 64
    num_window_blocks: int = 3
    num_global_blocks: int = 2
    num_random_blocks: int = 3
    attention_seed: int = 0
    kv_heads: int | None = None  # rotary: key/value heads shared by heads // kv_heads queries; None: heads
    rotary_dims: int = 128  # rotary: leading dimensions of each head that rotate
    rotary_base: float = 20_000.0

    checkpoint_transformer: bool = False
    # Training recomputes the stem, each tower block and each U-Net step in backward, keeping only their inputs
    # (and each conv block's BatchNorm + GELU, as Enformer's switch does); memory only, the same results.
    checkpoint_conv_tower: bool = False
    # Inference runs the stem and tower (and the U-Net's skips) over overlapping windows of this many bp,
    # halo included, when the input is longer: exact, memory set by the window (model/tiling.py). None: never.
    conv_tile_length: int | None = 131_072

    def __post_init__(self) -> None:
        wrong_types = _type_problems(self)
        if wrong_types:
            raise UserError("invalid BorzoiConfig: " + "; ".join(wrong_types))
        object.__setattr__(self, "output_heads", dict(self.output_heads))
        problems: list[str] = []
        if self.family != "borzoi":
            problems.append(f"family={self.family!r} must be 'borzoi'")
        positive = ("dim", "heads", "key_size", "stem_channels", "stem_width", "num_conv_tower_blocks",
                    "conv_tower_start", "conv_tower_width", "conv_tower_divisible_by", "unet_width")
        for name in positive:
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        if self.depth < 0 or self.crop < 0:
            problems.append(f"depth={self.depth} and crop={self.crop} must not be negative")
        for name in ("value_size", "target_length", "final_channels", "num_relative_position_features", "kv_heads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name}={value} must be positive or null")
        if self.heads > 0 and self.dim % self.heads:
            problems.append(f"dim={self.dim} is not divisible by heads={self.heads}")
        if self.stem_width % 2 == 0 or self.conv_tower_width % 2 == 0 or self.unet_width % 2 == 0:
            problems.append(f"stem_width={self.stem_width}, conv_tower_width={self.conv_tower_width} and "
                            f"unet_width={self.unet_width} must be odd (SAME padding on both sides)")
        if not 0 <= self.unet_levels <= self.num_conv_tower_blocks:
            problems.append(f"unet_levels={self.unet_levels} must be between 0 and num_conv_tower_blocks="
                            f"{self.num_conv_tower_blocks} (each level adds a skip of one tower block)")
        if not problems and self.conv_tower_filters[-1] != self.dim:
            problems.append(f"the conv tower from {self.conv_tower_start} rounded to {self.conv_tower_divisible_by} "
                            f"ends at {self.conv_tower_filters[-1]} channels; the transformer needs dim={self.dim}")
        problems += _head_and_rate_problems(self)
        if self.attention not in BORZOI_ATTENTION_KINDS:
            problems.append(f"attention={self.attention!r} is not one of {', '.join(BORZOI_ATTENTION_KINDS)}")
        features = self.relative_features
        if self.relative_positions and features % (2 * len(self.positional_functions)):
            problems.append(f"num_relative_position_features={features} is not even (widths and their sign copies)")
        if self.attention == "rotary":
            if self.relative_positions:
                problems.append("attention='rotary' has no relative-position term: set relative_positions=false")
            if self.key_size != self.head_value_size:
                problems.append(f"attention='rotary' needs key_size={self.key_size} equal to the value size "
                                f"{self.head_value_size} (one head size for queries, keys and values)")
            if self.heads % self.key_value_heads:
                problems.append(f"heads={self.heads} is not divisible by kv_heads={self.kv_heads}")
            if self.rotary_dims <= 0 or self.rotary_dims % 2 or self.rotary_dims > self.key_size:
                problems.append(f"rotary_dims={self.rotary_dims} must be even and between 2 and key_size={self.key_size}")
            if self.rotary_base <= 1.0:
                problems.append(f"rotary_base={self.rotary_base} must exceed 1")
        problems += _attention_setting_problems(self)
        unit = 2 ** (self.num_conv_tower_blocks + 1)
        if self.conv_tile_length is not None and (self.conv_tile_length <= 0 or self.conv_tile_length % unit):
            problems.append(f"conv_tile_length={self.conv_tile_length} must be None or a positive multiple of {unit} bp")
        if problems:
            raise UserError("invalid BorzoiConfig: " + "; ".join(problems))

    # Derived sizes -------------------------------------------------------------------------
    @property
    def head_value_size(self) -> int:
        return self.value_size if self.value_size is not None else self.dim // self.heads

    @property
    def key_value_heads(self) -> int:
        return self.kv_heads if self.kv_heads is not None else self.heads

    @property
    def relative_features(self) -> int:
        return self.num_relative_position_features if self.num_relative_position_features is not None else 32

    @property
    def conv_tower_filters(self) -> list[int]:
        """Filters of the tower blocks: [608, 736, 896, 1056, 1280, 1536] published.

        baskerville's ``res_tower``: a running product of ``start`` and ``(dim / start)**(1 / (blocks - 1))``,
        each rounded (half to even) to ``conv_tower_divisible_by``.
        """
        count, divisor = self.num_conv_tower_blocks, self.conv_tower_divisible_by
        multiplier = math.exp(math.log(self.dim / self.conv_tower_start) / (count - 1)) if count > 1 else 1.0
        filters, current = [], float(self.conv_tower_start)
        for _ in range(count):
            filters.append(int(round(current / divisor) * divisor))
            current *= multiplier
        return filters

    @property
    def num_poolings(self) -> int:
        """Poolings by 2 before the transformer: the stem's and one per tower block (128 bp published)."""
        return self.num_conv_tower_blocks + 1

    @property
    def bin_size(self) -> int:
        """bp per output bin: the transformer's resolution refined by the U-Net (32 published)."""
        return 2 ** (self.num_poolings - self.unet_levels)

    def num_positions(self, sequence_length: int) -> int:
        """Transformer positions for an input of ``sequence_length`` bp."""
        return sequence_length // 2**self.num_poolings

    def output_length(self, sequence_length: int) -> int:
        """Output bins for an input of ``sequence_length`` bp."""
        if self.target_length is not None:
            return self.target_length
        return sequence_length // self.bin_size - 2 * self.crop

    def min_sequence_length(self) -> int:
        """The shortest valid input in bp."""
        unit = 2**self.num_poolings
        bins = self.target_length if self.target_length is not None else 2 * self.crop + 1
        return -(-bins * self.bin_size // unit) * unit

    def validate_sequence_length(self, sequence_length: int) -> None:
        """Raise a :class:`UserError` naming the length and the nearest valid ones."""
        _check_sequence_length(sequence_length, 2**self.num_poolings, self.min_sequence_length())

    # Serialisation: EnformerConfig's, on these fields -------------------------------------------
    to_dict = EnformerConfig.to_dict
    to_json = EnformerConfig.to_json
    from_json = classmethod(EnformerConfig.from_json.__func__)
    replace = EnformerConfig.replace

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "BorzoiConfig":
        if not isinstance(values, Mapping):
            raise UserError(f"a BorzoiConfig must be a mapping of field names to values, got {type(values).__name__}")
        values = {key: value for key, value in values.items() if key != WEIGHTS_CHECKSUM_KEY}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"unknown BorzoiConfig fields: {', '.join(map(str, unknown))}")
        return cls(**values)


ModelConfig = EnformerConfig | BorzoiConfig


def config_from_dict(values: Mapping[str, Any]) -> ModelConfig:
    """The config of either family: a ``"family": "borzoi"`` key makes it a BorzoiConfig."""
    if isinstance(values, Mapping) and values.get("family") == "borzoi":
        return BorzoiConfig.from_dict(values)
    return EnformerConfig.from_dict(values)


def config_from_json(path: str | os.PathLike) -> ModelConfig:
    """The config of either family from a JSON file; a problem is a UserError naming the file."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    try:
        return config_from_dict(values)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


PRESETS: dict[str, dict[str, Any]] = {
    # The published model.
    "enformer": {},
    # BigBird block-sparse attention keeping Enformer's relative positions; loads official weights.
    "senformer": {"attention": "bigbird"},
    # The S-Enformer report's layer: BigBird without relative positions, key size 192.
    "s-enformer-report": {"attention": "bigbird", "relative_positions": False, "key_size": 192},
    # Long inputs: output grows with the input, sparse attention.
    "senformer-long": {"attention": "bigbird", "target_length": None},
}


# Borzoi's family (BorzoiConfig): the published models and the two conversion fixtures of
# ../shared/fixtures/borzoi_keras (calico's params_pred.json shrunk, and params_micro.json).
BORZOI_PRESETS: dict[str, dict[str, Any]] = {
    # The published model; its weights were trained at 4,096 positions (borzoi-pytorch's basis length).
    "borzoi": {"positional_basis_length": BORZOI_TRAINING_POSITIONS},
    # Borzoi's trunk with 8 query heads over 4 key/value heads of 192, rotary on 128 dims, base 20,000.
    "flashzoi": {"attention": "rotary", "relative_positions": False, "key_size": 192, "kv_heads": 4},
    # params_pred.json shrunk by pred_small_overrides.json: every block kind, small widths.
    "borzoi-pred-small": {"dim": 96, "depth": 2, "heads": 4, "key_size": 16, "stem_channels": 32,
                          "conv_tower_start": 40, "conv_tower_divisible_by": 8, "final_channels": 120,
                          "output_heads": {"human": 12, "mouse": 6}},
    # params_micro.json as published: no upsampling conv, no crop, no final conv, one head of 2 tracks.
    "borzoi-micro": {"dim": 320, "depth": 4, "heads": 4, "key_size": 32, "stem_channels": 128, "stem_width": 11,
                     "conv_tower_start": 160, "conv_tower_divisible_by": 8, "unet_upsample_conv": False,
                     "crop": 0, "final_channels": None, "output_heads": {"human": 2}, "dropout_rate": 0.1,
                     "attention_dropout_rate": 0.01},
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named configuration: Enformer's (``enformer``, ``senformer``, ``s-enformer-report``,
    ``senformer-long``) or Borzoi's (``borzoi``, ``flashzoi``, ``borzoi-pred-small``, ``borzoi-micro``)."""
    if name in BORZOI_PRESETS:
        return BorzoiConfig(**{**BORZOI_PRESETS[name], **overrides})
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join([*PRESETS, *BORZOI_PRESETS])}")
    return EnformerConfig(**{**PRESETS[name], **overrides})


def _tower_filters(dim: int, count: int, divisor: int) -> list[int]:
    """``exponential_linspace_int(dim // 2, dim, count, divisible_by=divisor)`` (see
    :attr:`EnformerConfig.conv_tower_filters`)."""
    start, end = dim // 2, dim
    if count == 1:
        return [int(round(end / divisor) * divisor)]
    base = (end / start) ** (1.0 / (count - 1))
    return [int(round(start * base**i / divisor) * divisor) for i in range(count)]
