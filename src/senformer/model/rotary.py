"""Rotary position embedding (RoFormer, Su et al. 2021) as flash-attn computes it, for Flashzoi.

Position ``t`` rotates each pair ``(x[i], x[i + r/2])`` of a head's first ``r`` dimensions by the angle
``t * base**(-2i / r)`` (non-interleaved: the two halves of the rotated part pair up, GPT-NeoX style);
dimensions past ``r`` pass unchanged. The angles are float32 products of float32 positions and inverse
frequencies, as flash-attn's ``RotaryEmbedding`` builds its cos/sin tables, so long sequences round alike.
"""

from __future__ import annotations

import torch
from torch import nn


def rotary_tables(length: int, dims: int, base: float, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each (length, dims / 2) float32: the angles of positions ``0 .. length - 1``."""
    inverse_frequency = 1.0 / (base ** (torch.arange(0, dims, 2, device=device, dtype=torch.float32) / dims))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inverse_frequency)
    return torch.cos(angles), torch.sin(angles)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``2 * cos.shape[-1]`` dimensions of ``x`` (..., length, head) by the tables'
    angles (cos, sin: (length, rotated / 2)); returns a tensor of ``x``'s shape and dtype."""
    rotated = 2 * cos.shape[-1]
    cos = torch.cat([cos, cos], dim=-1).to(x.dtype)
    sin = torch.cat([sin, sin], dim=-1).to(x.dtype)
    part, rest = x[..., :rotated], x[..., rotated:]
    first, second = part.chunk(2, dim=-1)
    turned = torch.cat([-second, first], dim=-1)  # the quarter turn of each (first, second) pair
    return torch.cat([part * cos + turned * sin, rest], dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary positions on the first ``dims`` dimensions of each head, with the tables cached per length."""

    def __init__(self, dims: int, base: float = 10_000.0):
        super().__init__()
        if dims <= 0 or dims % 2:
            raise ValueError(f"rotary dims={dims} must be even and positive")
        self.dims, self.base = dims, float(base)
        self._tables: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (length, device)
        if key not in self._tables:
            # Plain tensors even when first built under inference_mode, so training can use them later.
            with torch.inference_mode(False), torch.no_grad():
                self._tables = {key: rotary_tables(length, self.dims, self.base, device)}
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, heads, length, head) -> the same with positions ``0 .. length - 1`` rotated in."""
        cos, sin = self.tables(x.shape[-2], x.device)
        return apply_rotary(x, cos, sin)
