"""BigBird's block pattern (ITC): window + global + random key blocks per query block.

Positions are cut into blocks of ``block_size``; the last block may be partial (its missing keys are
masked). Every query block attends its window (itself and ``(window - 1) / 2`` blocks each side), the
global blocks (the first and last block) and ``num_random`` other blocks drawn from the blocks that are
neither in its window nor global. Global query blocks attend every key. The random draw comes from a
local generator seeded by ``(seed, layer, heads, number of blocks)``, differs per head and layer, and is
the same in training and evaluation (Hugging Face's BigBird drops random blocks in evaluation; we do not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlockPattern:
    """Which key blocks each sparse query block attends.

    Attributes:
        length: T, real positions.
        block_size: positions per block.
        num_blocks: ceil(T / block_size).
        global_blocks: query blocks that attend every key (and every query attends them).
        query_blocks: (queries,) the other query blocks, a contiguous run; they attend ``key_blocks``.
        key_blocks: (heads, queries, slots) key block index per slot: first the ``num_window_blocks``
            window slots (query block + offset), then one slot per global block, then the random slots.
        valid: (heads, queries, slots) False for unused slots (clipped window, duplicates, too few blocks).
        dense: True when every query block attends every block: the kernels then run dense attention.
    """

    length: int
    block_size: int
    num_blocks: int
    global_blocks: tuple[int, ...]
    query_blocks: torch.Tensor
    key_blocks: torch.Tensor
    valid: torch.Tensor
    dense: bool
    num_window_blocks: int = 1

    def block_mask(self) -> torch.Tensor:
        """(heads, blocks, blocks) True where the query block attends the key block."""
        heads = self.key_blocks.shape[0]
        mask = torch.zeros(heads, self.num_blocks, self.num_blocks, dtype=torch.bool)
        if self.dense:
            return mask.fill_(True)
        for block in self.global_blocks:
            mask[:, block, :] = True
            mask[:, :, block] = True
        rows = self.query_blocks[None, :, None].expand_as(self.key_blocks)
        head_index = torch.arange(heads)[:, None, None].expand_as(self.key_blocks)
        mask[head_index[self.valid], rows[self.valid], self.key_blocks[self.valid]] = True
        return mask

    def mask(self) -> torch.Tensor:
        """(heads, T, T) boolean mask of the attended (query, key) pairs."""
        blocks = self.block_mask()
        expanded = blocks.repeat_interleave(self.block_size, dim=1).repeat_interleave(self.block_size, dim=2)
        return expanded[:, : self.length, : self.length]


def _seed_for(seed: int, layer: int, heads: int, num_blocks: int) -> int:
    # A fixed mix of the inputs (Python's hash() of tuples is salted per process for strings only, but keep
    # it explicit so patterns are reproducible everywhere).
    value = (seed * 1_000_003 + layer) * 1_000_033 + heads * 7_919 + num_blocks
    return value % (2**63 - 1)


def make_block_pattern(
    length: int,
    heads: int,
    block_size: int = 64,
    num_window_blocks: int = 3,
    num_global_blocks: int = 2,
    num_random_blocks: int = 3,
    seed: int = 0,
    layer: int = 0,
    random_block_fraction: float = 1.0,
) -> BlockPattern:
    """Draw the BigBird pattern for ``length`` positions (see the module docstring). With
    ``random_block_fraction`` below 1 the random blocks come only from blocks ``1 .. round(fraction x
    blocks)`` (Google BigBird's plan at 1,536 positions, blocks of 64: blocks 1-9 of 24, 0.375)."""
    if length < 1:
        raise ValueError(f"length={length} must be positive")
    num_blocks = -(-length // block_size)
    global_blocks: tuple[int, ...] = ()
    if num_global_blocks:
        global_blocks = (0, num_blocks - 1) if num_blocks > 1 else (0,)
    query_blocks = torch.tensor([b for b in range(num_blocks) if b not in global_blocks], dtype=torch.long)
    queries = len(query_blocks)
    half_window = num_window_blocks // 2

    # Window slots: the query block and its neighbours, invalid outside [0, blocks) or when global.
    offsets = torch.arange(-half_window, half_window + 1)
    window = query_blocks[:, None] + offsets[None, :]  # (queries, window)
    is_global = torch.zeros(num_blocks, dtype=torch.bool)
    is_global[list(global_blocks)] = True
    window_valid = (window >= 0) & (window < num_blocks)
    window = window.clamp(0, num_blocks - 1)
    window_valid &= ~is_global[window]
    global_slots = torch.tensor(global_blocks, dtype=torch.long).expand(queries, len(global_blocks))

    # Random slots: per head, a seeded draw among the blocks outside the window and the globals.
    generator = torch.Generator().manual_seed(_seed_for(seed, layer, heads, num_blocks))
    taken = torch.zeros(queries, num_blocks, dtype=torch.bool)
    query_rows = torch.arange(queries)[:, None].expand_as(window)
    taken[query_rows[window_valid], window[window_valid]] = True
    taken[:, list(global_blocks)] = True
    if random_block_fraction < 1.0:
        taken[:, max(1, round(random_block_fraction * num_blocks)) + 1:] = True
    scores = torch.rand(heads, queries, num_blocks, generator=generator)
    scores = scores.masked_fill(taken[None], 2.0)  # never drawn while a free block remains
    count = min(num_random_blocks, num_blocks)
    if count:
        drawn_scores, random_slots = scores.topk(count, dim=-1, largest=False)
        random_valid = drawn_scores < 2.0
    else:
        random_slots = torch.zeros(heads, queries, 0, dtype=torch.long)
        random_valid = torch.zeros(heads, queries, 0, dtype=torch.bool)
    random_slots, order = random_slots.sort(dim=-1)  # ascending blocks: a tidier gather
    random_valid = random_valid.gather(-1, order)

    key_blocks = torch.cat(
        [window.expand(heads, -1, -1), global_slots.expand(heads, -1, -1), random_slots], dim=-1
    )
    valid = torch.cat(
        [window_valid.expand(heads, -1, -1), torch.ones_like(global_slots, dtype=torch.bool).expand(heads, -1, -1),
         random_valid],
        dim=-1,
    )
    attended = valid.sum(-1)  # window, global and random slots never repeat a block
    dense = queries == 0 or bool((attended == num_blocks).all())
    return BlockPattern(
        length=length,
        block_size=block_size,
        num_blocks=num_blocks,
        global_blocks=global_blocks,
        query_blocks=query_blocks,
        key_blocks=key_blocks.contiguous(),
        valid=valid.contiguous(),
        dense=dense,
        num_window_blocks=num_window_blocks,
    )
