"""Analytic FLOPs of a forward pass: the convolutions, the MLP and the heads are counted here; each attention
kind counts its own products beside its kernel (:meth:`RelativeAttention.projection_flops`, ``score_flops``).
The edit engine's bound (:func:`senformer.edits.edit_flops`) and the scaling benchmark's GFLOP/s read them.
"""

from __future__ import annotations

from typing import Sequence

from ..config import BorzoiConfig, EnformerConfig
from .attention import ATTENTION_CLASSES


def forward_flops(config: EnformerConfig, length: int, heads: Sequence[str] = ("human",)) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one forward pass at batch 1, by part.

    Counts the convolutions, projections, attention products (scores, relative term, weighted values) and
    the MLP; not the elementwise work (norms, GELU, softmax, pooling softmax). Training is about 3x the
    forward (backward: 2x). A :class:`~senformer.config.BorzoiConfig` is counted by :func:`borzoi_forward_flops`.
    """
    if isinstance(config, BorzoiConfig):
        return borzoi_forward_flops(config, length, heads)
    half, filters = config.dim // 2, config.conv_tower_filters
    stem = 2 * length * (4 * 15 * half + 2 * half * half)  # width-15 conv, pointwise conv, pooling logits
    tower = 0.0
    in_channels, positions = half, length // 2
    for out_channels in filters:
        tower += 2 * positions * (5 * in_channels * out_channels + 2 * out_channels * out_channels)
        in_channels, positions = out_channels, positions // 2
    attention = ATTENTION_CLASSES[config.attention]
    mlp = 2 * positions * config.dim * 2 * config.dim * 2
    bins = config.output_length(length)
    final = 2 * bins * filters[-1] * 2 * config.dim
    head_flops = sum(2 * bins * 2 * config.dim * config.output_heads[name] for name in heads)
    parts = {
        "stem": float(stem), "conv_tower": float(tower),
        "attention_projections": float(config.depth * attention.projection_flops(config, positions)),
        "attention_scores": float(config.depth * attention.score_flops(config, positions)),
        "mlp": float(config.depth * mlp), "final_pointwise": float(final), "heads": float(head_flops),
    }
    parts["total"] = sum(parts.values())
    return parts


def borzoi_forward_flops(config: BorzoiConfig, length: int, heads: Sequence[str] = ("human",)) -> dict[str, float]:
    """:func:`forward_flops` for Borzoi and Flashzoi: the stem, the conv tower (its skips are the tower's own
    outputs), attention, MLP, the U-Net (1x1 convs, depthwise and pointwise convs), the final conv and heads."""
    filters, dim = config.conv_tower_filters, config.dim
    stem = 2 * length * 4 * config.stem_width * config.stem_channels
    tower = 0.0
    in_channels, positions = config.stem_channels, length // 2
    for out_channels in filters:
        tower += 2 * positions * config.conv_tower_width * in_channels * out_channels
        in_channels, positions = out_channels, positions // 2
    if config.attention == "rotary":  # grouped queries, no relative term
        size, kv_heads = config.key_size, config.key_value_heads
        projections = 2 * positions * dim * (2 * config.heads * size + 2 * kv_heads * size)
        scores = 2 * config.heads * positions * positions * 2 * size
    else:
        attention = ATTENTION_CLASSES[config.attention]
        projections = attention.projection_flops(config, positions)
        scores = attention.score_flops(config, positions)
    mlp = 2 * positions * dim * 2 * dim * 2
    unet = 0.0
    coarse = positions
    for level in range(config.unet_levels):
        fine = 2 * coarse
        upsample = 2 * coarse * dim * dim if config.unet_upsample_conv else 0
        skip = 2 * fine * filters[-1 - level] * dim
        unet += upsample + skip + 2 * fine * dim * config.unet_width + 2 * fine * dim * dim
        coarse = fine
    bins = config.output_length(length)
    embedding = config.final_channels or dim
    final = 2 * bins * dim * config.final_channels if config.final_channels else 0
    parts = {
        "stem": float(stem), "conv_tower": float(tower),
        "attention_projections": float(config.depth * projections),
        "attention_scores": float(config.depth * scores), "mlp": float(config.depth * mlp),
        "unet": float(unet), "final_pointwise": float(final),
        "heads": float(sum(2 * bins * embedding * config.output_heads[name] for name in heads)),
    }
    parts["total"] = sum(parts.values())
    return parts
