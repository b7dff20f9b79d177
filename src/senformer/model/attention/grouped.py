"""``rotary``: Flashzoi's attention - grouped-query heads with rotary positions, through PyTorch's SDPA.

``heads`` query heads share ``kv_heads`` key/value heads (query head ``h`` reads key/value head
``h // (heads / kv_heads)``, as flash-attn groups them), all of size ``key_size``; q, k, v and the output
projection carry biases; the first ``rotary_dims`` dimensions of every query and key rotate with their
position (:mod:`senformer.model.rotary`); there is no relative-position term, so
``F.scaled_dot_product_attention`` picks a fused kernel where the device has one (flash or memory-efficient
attention on CUDA) and computes the same softmax attention elsewhere.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..init import truncated_normal_
from .base import RelativeAttention
from ..rotary import RotaryEmbedding


class GroupedRotaryAttention(nn.Module):
    kind = "rotary"

    def __init__(self, config, layer_index: int = 0):
        super().__init__()
        self.config = config
        self.layer_index = layer_index
        heads, kv_heads, size = config.heads, config.key_value_heads, config.key_size
        self.to_q = nn.Linear(config.dim, heads * size)
        self.to_k = nn.Linear(config.dim, kv_heads * size)
        self.to_v = nn.Linear(config.dim, kv_heads * size)
        self.to_out = nn.Linear(heads * size, config.dim)
        self.rotary = RotaryEmbedding(config.rotary_dims, config.rotary_base)
        self.reset_parameters()

    dropout_p = RelativeAttention.dropout_p

    def reset_parameters(self) -> None:
        """He-scaled projections with zero biases and a zero output layer (the block starts as identity)."""
        for linear in (self.to_q, self.to_k, self.to_v):
            truncated_normal_(linear.weight, math.sqrt(2.0 / linear.in_features))
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, T, dim) -> (batch, T, dim)."""
        batch, length, _ = x.shape
        heads, kv_heads, size = self.config.heads, self.config.key_value_heads, self.config.key_size
        # (batch, T, heads * size) -> (batch, heads, T, size); head-major columns as flash-attn splits Wqkv.
        query = self.rotary(self.to_q(x).view(batch, length, heads, size).transpose(1, 2))
        key = self.rotary(self.to_k(x).view(batch, length, kv_heads, size).transpose(1, 2))
        value = self.to_v(x).view(batch, length, kv_heads, size).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.dropout_p, scale=size**-0.5, enable_gqa=kv_heads != heads
        )  # (batch, heads, T, size)
        return self.to_out(out.transpose(1, 2).reshape(batch, length, heads * size))
