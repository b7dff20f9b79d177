"""``EnformerConfig``: a frozen, validated description of the model, and the named presets."""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from .constants import CROP_MARGIN, NUM_TRACKS, TARGET_LENGTH
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
        if not self.output_heads:
            problems.append("output_heads is empty")
        for name, tracks in self.output_heads.items():
            if not isinstance(name, str) or not name.isidentifier() or not _is_whole(tracks) or tracks <= 0:
                problems.append(f"output head {name!r}: {tracks!r} tracks (need an identifier and a positive count)")
        for rate_name in ("dropout_rate", "attention_dropout_rate", "positional_dropout_rate", "final_dropout_rate"):
            rate = getattr(self, rate_name)
            if not 0.0 <= rate < 1.0:
                problems.append(f"{rate_name}={rate} is not in [0, 1)")
        if self.attention not in ATTENTION_KINDS:
            problems.append(f"attention={self.attention!r} is not one of {', '.join(ATTENTION_KINDS)}")
        features = self.relative_features
        if self.relative_positions and features % 6:
            problems.append(
                f"num_relative_position_features={features} is not divisible by 6 "
                "(3 families, symmetric and sign-multiplied copies)"
            )
        if self.positional_basis_length is not None and self.positional_basis_length < 2:
            problems.append(f"positional_basis_length={self.positional_basis_length} must be at least 2")
        if self.chunk_size <= 0:
            problems.append(f"chunk_size={self.chunk_size} must be positive")
        if self.block_size <= 0:
            problems.append(f"block_size={self.block_size} must be positive")
        if self.num_window_blocks < 1 or self.num_window_blocks % 2 == 0:
            problems.append(f"num_window_blocks={self.num_window_blocks} must be odd and positive")
        if self.num_global_blocks not in (0, 2):
            problems.append(f"num_global_blocks={self.num_global_blocks} must be 0 or 2 (first and last block)")
        if self.num_random_blocks < 0:
            problems.append(f"num_random_blocks={self.num_random_blocks} must be >= 0")
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
        bin_size = self.bin_size
        minimum = self.min_sequence_length()
        if sequence_length % bin_size == 0 and sequence_length >= minimum:
            return
        below = (sequence_length // bin_size) * bin_size
        above = below + bin_size if below != sequence_length else below
        above = max(above, minimum)
        nearest = sorted({length for length in (below, above) if length >= minimum})
        hint = " or ".join(f"{n:,}" for n in nearest)
        raise UserError(
            f"sequence length {sequence_length:,} bp is not valid: it must be a multiple of {bin_size} "
            f"and at least {minimum:,} bp; nearest valid: {hint}"
        )

    # Serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            from .io import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

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


def preset(name: str, **overrides: Any) -> EnformerConfig:
    """A named configuration (``enformer``, ``senformer``, ``s-enformer-report``, ``senformer-long``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return EnformerConfig(**{**PRESETS[name], **overrides})


def _tower_filters(dim: int, count: int, divisor: int) -> list[int]:
    """``exponential_linspace_int(dim // 2, dim, count, divisible_by=divisor)`` (see
    :attr:`EnformerConfig.conv_tower_filters`)."""
    start, end = dim // 2, dim
    if count == 1:
        return [int(round(end / divisor) * divisor)]
    base = (end / start) ** (1.0 / (count - 1))
    return [int(round(start * base**i / divisor) * divisor) for i in range(count)]
