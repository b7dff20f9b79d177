"""The bucketed relative term as a FlexAttention ``score_mod``: compiled fused attention for inference.

``score_mod(score, b, h, i, j) = score + table[b, h, i, bucket[j - i + T - 1]]`` adds the per-query bucket
table of :mod:`.buckets` to the content score inside PyTorch's compiled FlexAttention kernel, so the scores
are never stored; ``bigbird`` passes its pattern as a ``BlockMask`` (whole blocks skipped). It runs only where
it helps and is safe: without gradients (FlexAttention has no backward on CPU, and the captured table's
gradient is not checked on CUDA here), without attention dropout, from :data:`FLEX_MIN_POSITIONS` positions
(each new length compiles for seconds), and where it compiles: the first failure on a device type is reported
once as a warning and that device falls back to the gathered term (:func:`flex_bucketed_attention` returns
None).

It is the default on CUDA only: on a CPU the compiled kernel measured slower than the gathered term per layer
(Borzoi at 4,096 positions, interleaved in one process), so there it runs only when asked for.
``SENFORMER_FLEX_ATTENTION=1`` turns it on for every device, ``0`` off for every device (:func:`flex_enabled`).
"""

from __future__ import annotations

import os
import warnings

import torch

from .buckets import bucket_table
from .pattern import BlockPattern

FLEX_MIN_POSITIONS = 2048  # Borzoi at 262,144 bp; shorter inputs are cheap enough without a compile
FLEX_DEFAULT_DEVICES = frozenset({"cuda"})  # where it runs when SENFORMER_FLEX_ATTENTION is unset
_compiled = None
_failed_devices: set[str] = set()


def flex_enabled(device: str) -> bool:
    """Whether FlexAttention is switched on for ``device`` (a device type): ``SENFORMER_FLEX_ATTENTION`` ``1``
    or ``0`` where set, else :data:`FLEX_DEFAULT_DEVICES`."""
    switch = os.environ.get("SENFORMER_FLEX_ATTENTION", "").strip()
    if switch in ("0", "1"):
        return switch == "1"
    return device in FLEX_DEFAULT_DEVICES


def flex_applies(q_content: torch.Tensor, tensors: tuple[torch.Tensor | None, ...], dropout_p: float) -> bool:
    """Whether the FlexAttention path may run for these (batch, heads, T, key) queries and inputs."""
    device = q_content.device.type
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return (
        flex_enabled(device)
        and q_content.shape[-2] >= FLEX_MIN_POSITIONS
        and dropout_p == 0.0
        and not needs_grad
        and device in ("cpu", "cuda")
        and device not in _failed_devices
    )


def _flex_attention():
    global _compiled
    if _compiled is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def pattern_block_mask(pattern: BlockPattern, batch: int, device: torch.device):
    """BigBird's pattern as FlexAttention's ``BlockMask`` (blocks of ``pattern.block_size``)."""
    from torch.nn.attention.flex_attention import BlockMask

    attended = pattern.block_mask()  # (heads, blocks, blocks)
    counts = attended.sum(-1, dtype=torch.int32)
    indices = torch.argsort((~attended).to(torch.int8), dim=-1, stable=True).to(torch.int32)  # attended first
    counts, indices = (t[None].expand(batch, *t.shape).contiguous().to(device) for t in (counts, indices))
    return BlockMask.from_kv_blocks(counts, indices, BLOCK_SIZE=pattern.block_size, seq_lengths=(pattern.length,) * 2)


def flex_bucketed_attention(
    q_content: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    q_position: torch.Tensor,
    bucket_keys: torch.Tensor,
    buckets: torch.Tensor,
    pattern: BlockPattern | None = None,
) -> torch.Tensor | None:
    """Attention with the bucketed relative term inside FlexAttention; arguments as
    :func:`~senformer.model.attention.full.full_attention` with ``buckets``, and ``pattern`` for bigbird.

    Returns:
        (batch, heads, T, value), or None where FlexAttention does not compile on this device.
    """
    length = q_content.shape[-2]
    table = bucket_table(q_position, bucket_keys).to(q_content.dtype)  # (batch, heads, T, buckets)
    offset = length - 1

    def score_mod(score, b, h, i, j):
        return score + table[b, h, i, buckets[j - i + offset]]

    device = q_content.device.type
    try:
        block_mask = None
        if pattern is not None and not pattern.dense:
            block_mask = pattern_block_mask(pattern, q_content.shape[0], q_content.device)
        return _flex_attention()(q_content, key, value, score_mod=score_mod, block_mask=block_mask, scale=1.0)
    except Exception as error:  # noqa: BLE001 - a missing compiler or an unsupported device: fall back
        _failed_devices.add(device)
        warnings.warn(f"FlexAttention does not run on {device} here ({type(error).__name__}: {error}); "
                      "using the gathered relative term", RuntimeWarning, stacklevel=2)
        return None
