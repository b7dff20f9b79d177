"""``bigbird``: BigBird ITC block-sparse attention that keeps Enformer's relative positions.

Sparse query blocks take their key blocks (window, global, random; :mod:`.pattern`) and score them with
the content term and, for every attended pair, the relative term ``(q_i + r_r_bias) . r_k[j - i]``, taken
per block pair from the ``2 * block - 1`` distances it spans. Window and global blocks are slices; only the
random blocks are gathered. Global query blocks attend every key exactly. Nothing of size ``(T, T)`` or
``(T, 2T - 1)`` is formed, and the sparse blocks run a few query blocks at a time, recomputed in backward:
memory and time are linear in ``T``.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .base import RelativeAttention
from .buckets import bucket_table, gather_term, is_step_family
from .full import FullAttention, full_attention
from .pattern import BlockPattern, make_block_pattern
from .relative import attend_query_range, relative_shift


def bigbird_attention(
    q_content: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    pattern: BlockPattern,
    q_position: torch.Tensor | None = None,
    relative_keys: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    chunk_blocks: int = 8,
    buckets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-sparse attention over ``pattern``; same arguments and result layout as :func:`full_attention`.

    With ``buckets`` (step-function features, :mod:`.buckets`) ``relative_keys`` are (heads, buckets, key)
    and each block pair reads its term from the query's table instead of ``2 * block - 1`` products.

    Equals ``full_attention(..., mask=pattern.mask())`` up to floating-point rounding. The sparse query
    blocks run ``chunk_blocks`` at a time; with autograd each chunk is recomputed in backward (activation
    checkpointing), so only the inputs are kept between forward and backward and the live intermediates are
    those of one chunk: memory stays linear in ``T`` with a small constant.
    """
    if pattern.dense:
        return full_attention(q_content, key, value, q_position, relative_keys, dropout_p=dropout_p, buckets=buckets)
    batch, heads, length, key_size = q_content.shape
    value_size = value.shape[-1]
    block, blocks = pattern.block_size, pattern.num_blocks
    padding = blocks * block - length
    queries = pattern.key_blocks.shape[1]
    first_query = int(pattern.query_blocks[0])  # the sparse query blocks are a contiguous run
    half = pattern.num_window_blocks // 2

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, 0, 0, padding)) if padding else t

    # (batch, heads, blocks, block, dim) views; sparse query blocks never hold padding (the last block is
    # global when there are global blocks; otherwise its padded rows are dropped at the end). Key and value
    # blocks are also padded by `half` zero blocks on each side, so a window slot is a shifted slice.
    q_blocks = pad(q_content).view(batch, heads, blocks, block, key_size)[:, :, first_query : first_query + queries]
    k_blocks = pad(key).view(batch, heads, blocks, block, key_size)
    v_blocks = pad(value).view(batch, heads, blocks, block, value_size)
    k_blocks_padded = F.pad(k_blocks, (0, 0, 0, 0, half, half))
    v_blocks_padded = F.pad(v_blocks, (0, 0, 0, 0, half, half))
    p_blocks = relative_keys_padded = None
    if relative_keys is not None:
        p_blocks = pad(q_position).view(batch, heads, blocks, block, key_size)[:, :, first_query : first_query + queries]
        # Rows of the relative keys padded so that pairs touching padded keys or queries index zeros (with
        # buckets, their distances are clamped instead: those pairs are masked or dropped either way).
        relative_keys_padded = relative_keys if buckets is not None else F.pad(relative_keys, (0, 0, blocks * block, blocks * block))

    # The pattern's index tensors, moved to the device once for every chunk.
    indices = tuple(t.to(q_content.device) for t in (pattern.query_blocks, pattern.key_blocks, pattern.valid))
    tensors = (q_content, key, value, q_position, relative_keys)
    recompute = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    outputs = []
    for first in range(0, queries, chunk_blocks):
        rows = slice(first, min(first + chunk_blocks, queries))
        chunk = functools.partial(_sparse_query_blocks, pattern=pattern, indices=indices, rows=rows, dropout_p=dropout_p,
                                  buckets=buckets)
        arguments = (q_blocks[:, :, rows], None if p_blocks is None else p_blocks[:, :, rows], k_blocks, v_blocks,
                     k_blocks_padded, v_blocks_padded, relative_keys_padded)
        outputs.append(checkpoint(chunk, *arguments, use_reentrant=False) if recompute else chunk(*arguments))
    sparse_out = torch.cat(outputs, dim=2)  # (batch, heads, queries, block, value)

    out = q_content.new_empty(batch, heads, blocks, block, value_size, dtype=sparse_out.dtype)
    out[:, :, first_query : first_query + queries] = sparse_out
    out = out.view(batch, heads, blocks * block, value_size)
    for global_block in pattern.global_blocks:
        start = global_block * block
        stop = min(start + block, length)
        position_rows = q_position[:, :, start:stop] if q_position is not None else None
        out[:, :, start:stop] = attend_query_range(
            q_content[:, :, start:stop], key, value, start, position_rows, relative_keys, dropout_p=dropout_p,
            buckets=buckets,
        )
    return out[:, :, :length]


def _sparse_query_blocks(
    q_blocks: torch.Tensor,
    p_blocks: torch.Tensor | None,
    k_blocks: torch.Tensor,
    v_blocks: torch.Tensor,
    k_blocks_padded: torch.Tensor,
    v_blocks_padded: torch.Tensor,
    relative_keys_padded: torch.Tensor | None,
    *,
    pattern: BlockPattern,
    indices: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    rows: slice,
    dropout_p: float,
    buckets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of the sparse query blocks ``rows`` (indices into ``pattern.query_blocks``).

    Args:
        q_blocks, p_blocks: (batch, heads, queries, block, key) content and position queries of these rows.
        k_blocks, v_blocks: (batch, heads, blocks, block, dim) all key and value blocks.
        k_blocks_padded, v_blocks_padded: the same with ``window // 2`` zero blocks before and after.
        relative_keys_padded: (heads, 2T - 1 + 2 * blocks * block, key) relative keys with zero rows on both sides,
            or with ``buckets`` (2T - 1,) the (heads, buckets, key) bucket keys.
        indices: ``pattern.query_blocks``, ``key_blocks`` and ``valid`` on the inputs' device.
    Returns:
        (batch, heads, queries, block, value).
    """
    batch, heads, queries, block, _ = q_blocks.shape
    length = pattern.length
    device = q_blocks.device
    all_query_blocks, all_key_blocks, all_valid = indices  # ``pattern``'s index tensors on this device
    query_blocks = all_query_blocks[rows]
    key_blocks = all_key_blocks[:, rows]  # (heads, queries, slots)
    valid = all_valid[:, rows]
    slots = key_blocks.shape[-1]
    window, half = pattern.num_window_blocks, pattern.num_window_blocks // 2
    random_slots = slice(window + len(pattern.global_blocks), slots)
    head_index = torch.arange(heads, device=device)[:, None, None]

    # Keys and values per slot: window slots are shifted slices of the padded block axis (clipped slots are
    # masked), global slots one block broadcast to every query block, random slots gathered.
    start = int(query_blocks[0])  # slot s of query block Q holds block Q + s - half = padded block Q + s
    k_window = [k_blocks_padded[:, :, start + s : start + s + queries] for s in range(window)]
    v_window = [v_blocks_padded[:, :, start + s : start + s + queries] for s in range(window)]
    k_random = k_blocks[:, head_index, key_blocks[..., random_slots]]  # (batch, heads, queries, random, block, key)
    v_random = v_blocks[:, head_index, key_blocks[..., random_slots]]

    # Content term per slot: (batch, heads, queries, slots, query position, key position).
    content = [torch.einsum("bhqik,bhqjk->bhqij", q_blocks, k) for k in k_window]
    content += [torch.einsum("bhqik,bhjk->bhqij", q_blocks, k_blocks[:, :, g]) for g in pattern.global_blocks]
    logits = torch.cat([torch.stack(content, dim=3), torch.einsum("bhqik,bhqsjk->bhqsij", q_blocks, k_random)], dim=3)
    if relative_keys_padded is not None and buckets is not None:
        # Pair (query block Q, key block K) at (i, j) has distance (K - Q) * block + j - i: its bucket's value
        # from the query's table. Distances of clipped window slots or padding are clamped (masked below).
        table = bucket_table(p_blocks, relative_keys_padded[:, None])  # (batch, heads, queries, block, buckets)
        within = torch.arange(block, device=device)
        distance = ((key_blocks - query_blocks[None, :, None]) * block)[..., None, None] + (within - within[:, None])
        index = buckets[(distance + (length - 1)).clamp(0, 2 * length - 2)]  # (heads, queries, slots, block, block)
        table = table[:, :, :, None].expand(batch, heads, queries, slots, block, table.shape[-1])
        logits = logits + gather_term(table, index)
    elif relative_keys_padded is not None:
        # Pair (query block Q, key block K) spans distances (K - Q) * block + [-(block - 1), block - 1]:
        # rows (T - 1) + (K - Q) * block - (block - 1) + [0, 2 block - 2] of the relative keys (shifted by
        # the padding). Window slots share one set of rows for every query block; the others gather theirs.
        spans = torch.arange(2 * block - 1, device=device)
        base = pattern.num_blocks * block + (length - 1) - (block - 1)
        offsets = torch.arange(-half, half + 1, device=device)
        r_window = relative_keys_padded[:, base + offsets[:, None] * block + spans]  # (heads, window, 2 block - 1, key)
        other_first = base + (key_blocks[..., window:] - query_blocks[None, :, None]) * block
        r_other = relative_keys_padded[head_index[..., None], other_first[..., None] + spans]  # (h, q, s - w, 2b - 1, k)
        relative = torch.cat(
            [torch.einsum("bhqik,hsdk->bhqsid", p_blocks, r_window), torch.einsum("bhqik,hqsdk->bhqsid", p_blocks, r_other)],
            dim=3,
        )  # (batch, heads, queries, slots, block, 2 block - 1)
        logits = logits + relative_shift(relative)

    key_positions = key_blocks[..., None] * block + torch.arange(block, device=device)  # (h, q, s, block)
    key_valid = valid[..., None] & (key_positions < length)
    logits = logits.masked_fill(~key_valid[None, :, :, :, None, :], float("-inf"))
    # Softmax over every attended key of a query: (batch, heads, queries, block, slots * block).
    logits = logits.permute(0, 1, 2, 4, 3, 5).reshape(batch, heads, queries, block, slots * block)
    weights = torch.softmax(logits, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    weights = weights.view(batch, heads, queries, block, slots, block).to(v_blocks.dtype)
    out = torch.einsum("bhqisj,bhqsjv->bhqiv", weights[:, :, :, :, random_slots], v_random)
    for s, v in enumerate(v_window):
        out = out + torch.einsum("bhqij,bhqjv->bhqiv", weights[:, :, :, :, s], v)
    for index, g in enumerate(pattern.global_blocks):
        out = out + torch.einsum("bhqij,bhjv->bhqiv", weights[:, :, :, :, window + index], v_blocks[:, :, g])
    return out


class BigBirdAttention(RelativeAttention):
    """Block-sparse attention; the pattern is drawn once per length and cached."""

    kind = "bigbird"

    def __init__(self, config, layer_index: int = 0):
        super().__init__(config, layer_index)
        self._pattern_cache: dict[int, BlockPattern] = {}

    def block_pattern(self, length: int) -> BlockPattern:
        pattern = self._pattern_cache.get(length)
        if pattern is None:
            with torch.inference_mode(False):  # normal tensors, usable by a later training step
                pattern = self._draw_pattern(length)
            self._pattern_cache = {length: pattern}
        return pattern

    def _draw_pattern(self, length: int) -> BlockPattern:
        config = self.config
        return make_block_pattern(
            length,
            config.heads,
            block_size=config.block_size,
            num_window_blocks=config.num_window_blocks,
            num_global_blocks=config.num_global_blocks,
            num_random_blocks=config.num_random_blocks,
            seed=config.attention_seed,
            layer=self.layer_index,
            random_block_fraction=getattr(config, "random_block_fraction", 1.0),
        )

    @classmethod
    def score_flops(cls, config, positions):
        """Every computed block pair, masked slots included: each sparse query block scores its window,
        global and random slots (``2 * block - 1`` distances per pair for the relative term), and each
        global query block scores every key (``T + block - 1`` distances). When the pattern covers every
        block the kernel runs ``full``, and so does the count. Step-function features: one bucket table
        per query instead of the per-pair products."""
        heads, key_size, value_size = config.heads, config.key_size, config.head_value_size
        block = config.block_size
        blocks = -(-positions // block)
        global_blocks = min(config.num_global_blocks, blocks)
        sparse = blocks - global_blocks
        slots = min(config.num_window_blocks + config.num_global_blocks + config.num_random_blocks, blocks)
        if sparse == 0 or slots >= blocks:
            return FullAttention.score_flops(config, positions)
        flops = 2 * heads * sparse * slots * block * block * (key_size + value_size)
        bucketed = is_step_family(config)
        if bucketed:  # one table per query, read by every slot
            flops += 2 * heads * sparse * block * cls.relative_rows(config, positions) * key_size
        elif config.relative_positions:
            flops += 2 * heads * sparse * slots * block * (2 * block - 1) * key_size
        # The global query blocks, the first and the last (which may be partial), attend every key.
        for rows in (block, positions - (blocks - 1) * block)[:global_blocks]:
            flops += 2 * heads * rows * positions * (key_size + value_size)
            if bucketed:
                flops += 2 * heads * rows * cls.relative_rows(config, positions) * key_size
            elif config.relative_positions:
                flops += 2 * heads * rows * (positions + rows - 1) * key_size
        return flops

    def attend(self, q_content, key, value, q_position, relative_keys, buckets=None):
        pattern = self.block_pattern(q_content.shape[-2])
        return bigbird_attention(q_content, key, value, pattern, q_position, relative_keys, self.dropout_p,
                                 buckets=buckets)

    def attention_mask(self, length: int) -> torch.Tensor:
        return self.block_pattern(length).mask()

    def flex_pattern(self, length: int) -> BlockPattern:
        return self.block_pattern(length)
