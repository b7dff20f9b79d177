"""The relative shift shared by every attention kind.

Enformer scores query ``i`` against key ``j`` with the relative key at distance ``j - i``. Kernels compute
``(q_i + r_r_bias) . r_k[d]`` for a contiguous run of distances and then *shift* each query row so that
column ``j`` holds distance ``j - i``.
"""

from __future__ import annotations

import torch

from .buckets import bucketed_range_term


def relative_shift(logits: torch.Tensor) -> torch.Tensor:
    """Skew ``(..., c, W)`` relative logits into ``(..., c, W - c + 1)`` key logits.

    Row ``a`` of the input holds distances ``d0 + 0 .. d0 + W - 1``, where row ``c - 1`` starts at its first
    key. Output ``[a, j] = input[a, j + c - 1 - a]``. With ``c = T`` and ``W = 2T - 1`` this is
    TransformerXL's shift as in DeepMind's ``relative_shift``: ``out[i, j] = in[i, T - 1 + j - i]``.

    Implemented as a strided view (row stride ``W - 1``) of the contiguous input: no padding or copy.
    """
    logits = logits.contiguous()
    *leading, rows, width = logits.shape
    columns = width - rows + 1
    if columns < 1:
        raise ValueError(f"relative logits of width {width} cannot be shifted for {rows} rows")
    strides = logits.stride()
    return logits.as_strided(
        (*leading, rows, columns), (*strides[:-2], width - 1, 1), logits.storage_offset() + rows - 1
    )


def attend(logits: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None,
           dropout_p: float = 0.0) -> torch.Tensor:
    """Softmax of ``logits`` (..., queries, keys) over the keys, with ``mask`` (False = not attended) and
    dropout on the weights, applied to ``value`` (..., keys, value): the step every attention kind ends in."""
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, dropout_p)
    return torch.matmul(weights.to(value.dtype), value)


def attend_query_range(
    q_content: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    start: int,
    q_position: torch.Tensor | None = None,
    relative_keys: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    buckets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact attention of a contiguous run of queries ``start .. start + c - 1`` over all ``T`` keys.

    Args:
        q_content: (batch, heads, c, key) queries plus ``r_w_bias``.
        key: (batch, heads, T, key); value: (batch, heads, T, value).
        q_position: (batch, heads, c, key) queries plus ``r_r_bias``, or None without relative positions.
        relative_keys: (heads, 2T - 1, key), row ``m`` = distance ``m - (T - 1)``.
        mask: optional boolean (heads or 1, c, T); False drops the pair.
        buckets: (2T - 1,) bucket of each distance when the features are step functions; ``relative_keys``
            are then (heads, buckets, key), one row per bucket (:mod:`.buckets`).
    Returns:
        (batch, heads, c, value).
    """
    rows = q_content.shape[-2]
    length = key.shape[-2]
    logits = torch.matmul(q_content, key.transpose(-1, -2))  # (batch, heads, c, T)
    if relative_keys is not None and buckets is not None:
        logits = logits + bucketed_range_term(q_position, relative_keys, buckets, start, length)
    elif relative_keys is not None:
        # Distances j - i for i in [start, start + c), j in [0, T): from -(start + c - 1) to T - 1 - start,
        # rows (T - 1) - (start + c - 1) .. (T - 1) + (T - 1 - start) of relative_keys.
        first = length - start - rows
        window = relative_keys[:, first : first + length + rows - 1]  # (heads, T + c - 1, key)
        relative = torch.matmul(q_position, window.transpose(-1, -2))  # (batch, heads, c, T + c - 1)
        logits = logits + relative_shift(relative)
    return attend(logits, value, mask, dropout_p)
