"""Training augmentations of Basenji2/Enformer as pure functions (spec section 5).

- Reverse complement: reverse the positions and swap A<->T, C<->G (for ACGT one-hot: reverse the channel
  axis too), and reverse the target along its bins. A model trained this way sees both strands.
- Shift: move the sequence by ``s`` bp (|s| <= 3 in the paper) and fill the vacated end with N (zeros;
  Basenji pads with 0.25, pass ``pad_value=0.25`` for that). Targets are NOT shifted: 3 bp is far below
  one 128-bp bin, so the bins still describe the same region.

Shapes: ``sequence`` is one-hot ``(..., length, 4)``, ``target`` ``(..., bins, tracks)``.
"""

from __future__ import annotations

import torch

from ..sequence import reverse_complement as reverse_complement_sequence


def reverse_complement(sequence: torch.Tensor, target: torch.Tensor | None = None):
    """Reverse-complement a one-hot ``(..., length, 4)`` and reverse ``target`` ``(..., bins, tracks)`` along
    its bins. Returns ``(sequence, target)`` (``target`` is ``None`` when not given)."""
    _check_one_hot(sequence)
    flipped = reverse_complement_sequence(sequence)
    return flipped, (None if target is None else target.flip(-2))


def shift(sequence: torch.Tensor, offset: int, pad_value: float = 0.0) -> torch.Tensor:
    """Shift a one-hot ``(..., length, 4)`` right by ``offset`` bp (left when negative), keeping its length;
    the ``|offset|`` positions shifted in are ``pad_value`` (0 = N)."""
    _check_one_hot(sequence)
    offset = int(offset)
    length = sequence.shape[-2]
    if abs(offset) >= length:
        raise ValueError(f"shift {offset} is not smaller than the sequence length {length}")
    if offset == 0:
        return sequence
    result = torch.full_like(sequence, pad_value)
    if offset > 0:
        result[..., offset:, :] = sequence[..., : length - offset, :]
    else:
        result[..., : length + offset, :] = sequence[..., -offset:, :]
    return result


def _check_one_hot(sequence: torch.Tensor) -> None:
    if not isinstance(sequence, torch.Tensor) or sequence.dim() < 2 or sequence.shape[-1] != 4:
        shape = tuple(sequence.shape) if hasattr(sequence, "shape") else type(sequence).__name__
        raise ValueError(f"sequence must be a one-hot tensor (..., length, 4); got {shape}")

