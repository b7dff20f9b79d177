"""``chunked``: exact full attention, a chunk of queries at a time, recomputed in backward.

Each chunk scores its ``c`` queries against all ``T`` keys and only the ``T + c - 1`` distances it needs, so
the largest live tensor is ``(batch, heads, c, T + c - 1)``; activation checkpointing drops it after the
forward and recomputes it in backward. Memory is linear in ``T`` at fixed ``c``, time stays quadratic, and
the result equals ``full`` up to floating-point rounding.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .base import RelativeAttention
from .buckets import is_step_family
from .relative import attend_query_range


def chunked_attention(
    q_content: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    q_position: torch.Tensor | None = None,
    relative_keys: torch.Tensor | None = None,
    chunk_size: int = 256,
    dropout_p: float = 0.0,
    buckets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same arguments and result as :func:`full_attention`, computed ``chunk_size`` queries at a time."""
    length = q_content.shape[-2]
    recompute = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q_content, key, value, q_position, relative_keys)
    )
    outputs = []
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        q_chunk = q_content[:, :, start:stop]
        p_chunk = q_position[:, :, start:stop] if q_position is not None else None
        arguments = (q_chunk, key, value, start, p_chunk, relative_keys, None, dropout_p, buckets)
        if recompute:
            outputs.append(checkpoint(attend_query_range, *arguments, use_reentrant=False))
        else:
            outputs.append(attend_query_range(*arguments))
    return torch.cat(outputs, dim=-2)


class ChunkedAttention(RelativeAttention):
    kind = "chunked"

    @classmethod
    def score_flops(cls, config, positions):
        """As ``full``, except that each chunk of ``c`` queries takes only the ``T + c - 1`` distances it
        spans for the relative term (step-function features: one bucket table per query). Recomputation in
        backward is not counted."""
        heads, key_size, value_size = config.heads, config.key_size, config.head_value_size
        flops = 2 * heads * positions * positions * (key_size + value_size)
        if config.relative_positions and is_step_family(config):
            flops += 2 * heads * positions * cls.relative_rows(config, positions) * key_size
        elif config.relative_positions:
            whole, last = divmod(positions, config.chunk_size)
            spans = whole * config.chunk_size * (positions + config.chunk_size - 1) + last * (positions + last - 1)
            flops += 2 * heads * spans * key_size
        return flops

    def attend(self, q_content, key, value, q_position, relative_keys, buckets=None):
        return chunked_attention(
            q_content, key, value, q_position, relative_keys, self.config.chunk_size, self.dropout_p, buckets
        )
