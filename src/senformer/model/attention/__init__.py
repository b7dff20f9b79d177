"""Attention kinds: one module per kind, all with the same parameters.

``full`` is the published maths (the reference), ``chunked`` computes it exactly with linear memory, and
``bigbird`` is block-sparse with Enformer's relative positions on every attended pair. ``rotary`` is
Flashzoi's grouped-query rotary attention (Borzoi's family only), with parameters of its own.
"""

from __future__ import annotations

from ...config import ATTENTION_KINDS, EnformerConfig
from .base import RelativeAttention
from .bigbird import BigBirdAttention, bigbird_attention
from .chunked import ChunkedAttention, chunked_attention
from .full import FullAttention, full_attention
from .grouped import GroupedRotaryAttention
from .pattern import BlockPattern, make_block_pattern
from .relative import relative_shift

ATTENTION_CLASSES: dict[str, type[RelativeAttention]] = {
    cls.kind: cls for cls in (FullAttention, ChunkedAttention, BigBirdAttention)
}
# The config's ATTENTION_KINDS names the kinds (the config cannot import the model); every name has its class.
assert tuple(ATTENTION_CLASSES) == ATTENTION_KINDS, (tuple(ATTENTION_CLASSES), ATTENTION_KINDS)


def build_attention(config: EnformerConfig, layer_index: int = 0) -> RelativeAttention | GroupedRotaryAttention:
    """The attention module of ``config.attention`` for transformer layer ``layer_index``."""
    if config.attention == GroupedRotaryAttention.kind:
        return GroupedRotaryAttention(config, layer_index)
    try:
        cls = ATTENTION_CLASSES[config.attention]
    except KeyError:
        raise ValueError(
            f"unknown attention kind {config.attention!r}; choose one of {', '.join(ATTENTION_KINDS)}"
        ) from None
    return cls(config, layer_index)


__all__ = [
    "ATTENTION_CLASSES",
    "BigBirdAttention",
    "BlockPattern",
    "ChunkedAttention",
    "FullAttention",
    "GroupedRotaryAttention",
    "RelativeAttention",
    "bigbird_attention",
    "build_attention",
    "chunked_attention",
    "full_attention",
    "make_block_pattern",
    "relative_shift",
]
