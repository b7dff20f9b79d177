"""Analytic FLOPs of a forward pass: the convolutions, the MLP and the heads are counted here; each attention
kind counts its own products beside its kernel (:meth:`RelativeAttention.projection_flops`, ``score_flops``).
The edit engine's bound (:func:`senformer.edits.edit_flops`) and the scaling benchmark's GFLOP/s read them.
"""

from __future__ import annotations

from typing import Sequence

from ..config import EnformerConfig
from .attention import ATTENTION_CLASSES


def forward_flops(config: EnformerConfig, length: int, heads: Sequence[str] = ("human",)) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one forward pass at batch 1, by part.

    Counts the convolutions, projections, attention products (scores, relative term, weighted values) and
    the MLP; not the elementwise work (norms, GELU, softmax, pooling softmax). Training is about 3x the
    forward (backward: 2x).
    """
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
