"""The points of the scaling benchmark: one point's settings, their validation and the model they describe;
the default grids a sweep draws its points from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ..config import ATTENTION_KINDS, EnformerConfig
from ..constants import TARGET_LENGTH

MODES = ("inference", "fwd_bwd", "train")
PRECISIONS = ("fp32", "bf16")
# Activation checkpointing: "off"; "conv" (stem + conv tower: the full-resolution activations, while the
# transformer keeps its own, so attention memory shows); "all" (both switches; the peer's use_checkpointing).
CHECKPOINTS = ("off", "conv", "all")
CHECKPOINT_LABELS = {"off": "", "conv": " ckpt-conv", "all": " ckpt"}
PEER = "enformer-pytorch"
PEER_VERSION = "0.8.10"
IMPLEMENTATIONS = ("senformer", PEER)
# Figure 1's x axis: 131,072 .. 786,432 bp in 65,536 bp steps.
DEFAULT_LENGTHS = tuple(range(131_072, 786_432 + 1, 65_536))
# A run of a few minutes on an idle 2-core CPU: a quarter-width model (the smallest width enformer-pytorch
# also builds; heads and key size as published, so the attention itself is full size), 256 to 1,024
# positions, 1 and 3 layers, training step, 128 output bins so that 32,768 bp is a valid input.
QUICK = {"dim": 384, "lengths": (32_768, 65_536, 131_072), "depths": (1, 3), "modes": ("train",),
         "target_length": 128, "warmup": 1, "repeats": 1}


@dataclass(frozen=True)
class Point:
    """One measurement. Every field is part of its identity in the results (warm-up and repeats are not)."""

    length: int
    attention: str = "full"
    depth: int = 11
    mode: str = "train"
    dim: int = 1536
    precision: str = "fp32"
    checkpoint: str = "off"  # one of CHECKPOINTS
    conv_tile_length: int | None = 131_072  # inference only; None: untiled
    target_length: int = TARGET_LENGTH  # output bins (896 as published; tests use fewer for short inputs)
    implementation: str = "senformer"
    device: str = "cpu"
    threads: int = 0  # 0: torch's default

    def __post_init__(self) -> None:
        problems = []
        for name, choices in (("checkpoint", CHECKPOINTS), ("attention", ATTENTION_KINDS), ("mode", MODES),
                              ("precision", PRECISIONS), ("implementation", IMPLEMENTATIONS)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.implementation == PEER and self.attention != "full":
            problems.append(f"{PEER} has only full attention, not {self.attention!r}")
        if problems:
            raise ValueError("invalid benchmark point: " + "; ".join(problems))

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **changes: Any) -> Point:
        """The point a result record describes (its point fields; other entries are ignored), with ``changes``."""
        return cls(**{**{f.name: record[f.name] for f in fields(cls)}, **changes})

    def replace(self, **changes: Any) -> Point:
        return Point(**{**asdict(self), **changes})

    @property
    def key(self) -> str:
        """The point's identity in a results file (resuming matches on it)."""
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def curve_key(self) -> str:
        """The identity of the curve the point lies on: every field but the length."""
        return self.replace(length=0).key

    @property
    def label(self) -> str:
        name = self.attention if self.implementation == "senformer" else PEER
        untiled = self.mode == "inference" and self.conv_tile_length is None and self.implementation == "senformer"
        switches = "".join([" bf16" if self.precision == "bf16" else "", CHECKPOINT_LABELS[self.checkpoint],
                            " untiled" if untiled else ""])
        return f"{name} depth {self.depth} {self.mode}{switches} {self.length:,} bp"

    def config(self) -> EnformerConfig:
        """Our model's configuration for this point (the published model at ``dim``/``depth``).

        Relative features are ``dim // heads`` as published, rounded down to the multiple of 6 the feature
        families need when a reduced width does not give one (dim 256: 30 rather than 32). The peer's points
        use the same configuration for their FLOP count.
        """
        features = (self.dim // 8) // 6 * 6
        # EnformerConfig refuses a width whose last conv-tower filter does not round to dim (e.g. 192).
        return EnformerConfig(
            num_relative_position_features=None if features == self.dim // 8 else features,
            dim=self.dim, depth=self.depth, attention=self.attention, target_length=self.target_length,
            checkpoint_transformer=self.checkpoint == "all", checkpoint_conv_tower=self.checkpoint != "off",
            conv_tile_length=self.conv_tile_length,
        )
