"""``full``: Enformer's attention as published, quadratic in length. The reference for the other kinds."""

from __future__ import annotations

import torch

from .base import RelativeAttention
from .buckets import bucketed_range_term
from .relative import attend, relative_shift


def full_attention(
    q_content: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    q_position: torch.Tensor | None = None,
    relative_keys: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    buckets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense attention with Enformer's relative term (DeepMind ``MultiheadAttention._build``).

    ``logits[i, j] = (q_i + r_w_bias) . k_j + shift((q_i + r_r_bias) . r_k)[i, j]``, softmax over ``j``.

    Args:
        q_content: (batch, heads, T, key) scaled queries plus ``r_w_bias``.
        key: (batch, heads, T, key); value: (batch, heads, T, value).
        q_position: (batch, heads, T, key) scaled queries plus ``r_r_bias``; None without relative positions.
        relative_keys: (heads, 2T - 1, key) projected positional features.
        mask: optional boolean (heads or 1, T, T) pattern; False drops the pair (the sparse kernels' oracle).
        buckets: (2T - 1,) bucket of each distance for step-function features; ``relative_keys`` are then
            (heads, buckets, key) and the term is read from a per-query table (:mod:`.buckets`): the same
            values without the (T, 2T - 1) product.
    Returns:
        (batch, heads, T, value).
    """
    logits = torch.matmul(q_content, key.transpose(-1, -2))  # (batch, heads, T, T)
    if relative_keys is not None:
        relative = relative_logits(q_position, relative_keys, buckets)
        # In place into the fresh scores (the same sum; one (T, T) tensor fewer to allocate and fill).
        logits = logits.add_(relative) if relative.dtype == logits.dtype else logits + relative
    return attend(logits, value, mask, dropout_p)


def relative_logits(q_position: torch.Tensor, relative_keys: torch.Tensor,
                    buckets: torch.Tensor | None = None) -> torch.Tensor:
    """The relative term of every query against every key, (batch, heads, T, T): ``q_position`` against the
    (heads, 2T - 1, key) ``relative_keys`` then shifted, or read from the bucket table when ``buckets``."""
    length = q_position.shape[-2]
    if buckets is not None:
        return bucketed_range_term(q_position, relative_keys, buckets, 0, length)
    relative = torch.matmul(q_position, relative_keys.transpose(-1, -2))  # (batch, heads, T, 2T - 1)
    return relative_shift(relative)


class FullAttention(RelativeAttention):
    kind = "full"

    @classmethod
    def score_flops(cls, config, positions):
        """``T x T`` scores and weighted values; the relative term over all ``2T - 1`` distances, or over the
        buckets of step-function features (then read at each pair by a gather, no products)."""
        heads, key_size, value_size = config.heads, config.key_size, config.head_value_size
        flops = 2 * heads * positions * positions * (key_size + value_size)
        if config.relative_positions:
            flops += 2 * heads * positions * cls.relative_rows(config, positions) * key_size
        return flops

    def attend(self, q_content, key, value, q_position, relative_keys, buckets=None):
        return full_attention(q_content, key, value, q_position, relative_keys, dropout_p=self.dropout_p,
                              buckets=buckets)
