"""Parameters and projections shared by every attention kind.

Every kind owns the same parameters (``to_q``, ``to_k``, ``to_v``, ``to_r_k``, ``to_out``, ``r_w_bias``,
``r_r_bias``), so any weights load into any kind; a subclass only supplies :meth:`attend`. Where the config's
position features are step functions (Borzoi's central masks), every kind takes the relative term from a
per-query table of its few bucket values (:mod:`.buckets`) instead of one row per distance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...config import EnformerConfig
from ..init import truncated_normal_
from ..positional import relative_distances, relative_position_features
from ..rotary import RotaryEmbedding
from .buckets import bucket_count, is_step_family, position_buckets
from .flex import flex_applies, flex_bucketed_attention


def absolute_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(length, dim) the Transformer's fixed sinusoidal positions (Vaswani et al. 2017): sin on the first
    half of the channels, cos on the second, wavelengths 2 pi .. 10,000 x 2 pi."""
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(0, dim // 2, device=device, dtype=torch.float32) / (dim // 2))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).to(dtype)


class RelativeAttention(nn.Module):
    """Multi-head attention with Enformer's relative positional term (TransformerXL style).

    ``logits[i, j] = (q_i + r_w_bias) . k_j + (q_i + r_r_bias) . r_k[j - i]`` with ``q`` scaled by
    ``key_size**-0.5`` before the biases are added, as in DeepMind's ``attention_module.py``.

    A kind states its name (``kind``, one of ``config.ATTENTION_KINDS``) and its own cost
    (:meth:`score_flops`) beside its kernel.
    """

    kind: str = ""

    def __init__(self, config: EnformerConfig, layer_index: int = 0):
        super().__init__()
        self.config = config
        self.layer_index = layer_index
        heads, key_size, value_size = config.heads, config.key_size, config.head_value_size
        bias = getattr(config, "attention_bias", False)  # Borzoi's config has no study variants
        self.to_q = nn.Linear(config.dim, heads * key_size, bias=bias)
        self.to_k = nn.Linear(config.dim, heads * key_size, bias=bias)
        self.to_v = nn.Linear(config.dim, heads * value_size, bias=bias)
        self.added_positions = getattr(config, "added_positions", "none")
        if self.added_positions == "rotary":
            self.rotary = RotaryEmbedding(key_size)
        self.to_out = nn.Linear(heads * value_size, config.dim)
        if config.relative_positions:
            self.to_r_k = nn.Linear(config.relative_features, heads * key_size, bias=False)
            self.r_w_bias = nn.Parameter(torch.zeros(heads, key_size))
            self.r_r_bias = nn.Parameter(torch.zeros(heads, key_size))
        self.positional_dropout = nn.Dropout(config.positional_dropout_rate)
        # Decided by the features' family: a step function of the distance has a few distinct vectors.
        self.bucketed = is_step_family(config)
        self._feature_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._bucket_cache: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset_parameters()

    @property
    def dropout_p(self) -> float:
        return self.config.attention_dropout_rate if self.training else 0.0

    def reset_parameters(self) -> None:
        """Official initialisation: VarianceScaling(2.0) for projections and biases, zero output layer."""
        for linear in (self.to_q, self.to_k, self.to_v):
            truncated_normal_(linear.weight, math.sqrt(2.0 / linear.in_features))
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        if self.config.relative_positions:
            truncated_normal_(self.to_r_k.weight, math.sqrt(2.0 / self.to_r_k.in_features))
            for bias in (self.r_w_bias, self.r_r_bias):
                truncated_normal_(bias, math.sqrt(2.0 / self.config.key_size))
        if getattr(self.config, "attention_output_init", "zero") == "normal":
            # The S-Enformer report's layer (Currie32/s-enformer): a BERT-style std-0.02 output projection,
            # so a fresh layer perturbs the frozen trunk from its first step.
            nn.init.normal_(self.to_out.weight, std=0.02)
        else:
            nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def positional_features(self, length: int, device: torch.device) -> torch.Tensor:
        """(2T - 1, features) float64 features of distances -(T-1) .. T-1, cached per length."""
        cache_key = (length, device)
        features = self._feature_cache.get(cache_key)
        if features is None:
            basis_length = self.config.positional_basis_length or length
            # Normal tensors even when first built under inference_mode, so a later training step can use them.
            with torch.inference_mode(False), torch.no_grad():
                distances = relative_distances(length)
                features = relative_position_features(
                    distances, self.config.relative_features, basis_length, dtype=torch.float64,
                    functions=self.config.positional_functions,
                ).to(device)
            self._feature_cache = {cache_key: features}
        return features

    def position_buckets(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(buckets, features) float64 distinct feature vectors and the (2T - 1,) bucket of each distance,
        cached per length (:func:`.buckets.position_buckets`)."""
        cache_key = (length, device)
        cached = self._bucket_cache.get(cache_key)
        if cached is None:
            basis_length = self.config.positional_basis_length or length
            with torch.inference_mode(False), torch.no_grad():
                features, index = position_buckets(length, self.config.relative_features, basis_length,
                                                   self.config.positional_functions)
                cached = (features.to(device), index.to(device))
            self._bucket_cache = {cache_key: cached}
        return cached

    def bucket_keys(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(heads, buckets, key) projected bucket features and the (2T - 1,) bucket of each distance.

        Positional dropout in training drops features per bucket (one mask for all the distances of a
        bucket), where the per-distance kinds draw one per distance: the same rate, coarser noise."""
        features, index = self.position_buckets(length, device)
        features = self.positional_dropout(features.to(self.to_r_k.weight.dtype))
        projected = self.to_r_k(features)  # (buckets, heads * key)
        return projected.view(-1, self.config.heads, self.config.key_size).transpose(0, 1), index

    def relative_keys(self, length: int, device: torch.device) -> torch.Tensor:
        """(heads, 2T - 1, key) projected relative positional features."""
        features = self.positional_features(length, device).to(self.to_r_k.weight.dtype)
        features = self.positional_dropout(features)
        projected = self.to_r_k(features)  # (2T - 1, heads * key)
        return projected.view(2 * length - 1, self.config.heads, self.config.key_size).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, T, dim) -> (batch, T, dim)."""
        batch, length, _ = x.shape
        q_content, key, value, q_position, relative_keys, buckets = self.project(x)
        out = None
        if buckets is not None and flex_applies(q_content, (x, *self.parameters()), self.dropout_p):
            out = flex_bucketed_attention(q_content, key, value, q_position, relative_keys, buckets,
                                          self.flex_pattern(length))
        if out is None:
            out = self.attend(q_content, key, value, q_position, relative_keys, buckets)  # (batch, heads, T, value)
        out = out.transpose(1, 2).reshape(batch, length, -1)
        return self.to_out(out)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (batch, T, dim) -> the arguments of :meth:`attend`: ``q_content``, ``key``, ``value``,
        ``q_position``, ``relative_keys``, ``buckets`` (the last three None without relative positions;
        ``buckets`` None unless the features are step functions)."""
        batch, length, _ = x.shape
        heads, key_size = self.config.heads, self.config.key_size
        # (batch, T, heads * key) -> (batch, heads, T, key); head-major columns as in DeepMind's code.
        positioned = x + absolute_positions(length, x.shape[-1], x.device, x.dtype) \
            if self.added_positions == "absolute" else x  # q and k only: values carry content
        if positioned is x:
            query, key, value = self.joint_projection(x, (self.to_q, self.to_k, self.to_v))
        else:
            (query, key), value = self.joint_projection(positioned, (self.to_q, self.to_k)), self.to_v(x)
        query = query.view(batch, length, heads, key_size).transpose(1, 2) * key_size**-0.5
        key = key.view(batch, length, heads, key_size).transpose(1, 2)
        if self.added_positions == "rotary":
            query, key = self.rotary(query), self.rotary(key)
        value = value.view(batch, length, heads, -1).transpose(1, 2)
        buckets = None
        if self.config.relative_positions:
            q_content = query + self.r_w_bias[:, None, :].to(query.dtype)
            q_position = query + self.r_r_bias[:, None, :].to(query.dtype)
            if self.bucketed:
                relative_keys, buckets = self.bucket_keys(length, x.device)
            else:
                relative_keys = self.relative_keys(length, x.device)
        else:
            q_content, q_position, relative_keys = query, None, None
        return q_content, key, value, q_position, relative_keys, buckets

    @staticmethod
    def joint_projection(x: torch.Tensor, linears: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, ...]:
        """x: (batch, T, dim) -> each of ``linears`` applied to ``x`` (batch, T, its out_features), from one
        matrix product over their weights side by side: the weights keep their names and each output is the
        same dot product as its own layer's, and one product of the joint width runs faster than three."""
        weight = torch.cat([linear.weight for linear in linears])
        bias = None if linears[0].bias is None else torch.cat([linear.bias for linear in linears])
        joint = torch.nn.functional.linear(x, weight, bias)
        return joint.split([linear.out_features for linear in linears], dim=-1)

    def attend(
        self,
        q_content: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        q_position: torch.Tensor | None,
        relative_keys: torch.Tensor | None,
        buckets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, heads, T, key) queries and keys, (batch, heads, T, value) values -> (batch, heads, T, value).

        ``relative_keys`` are (heads, 2T - 1, key), or (heads, buckets, key) with ``buckets`` (2T - 1,)."""
        raise NotImplementedError

    def flex_pattern(self, length: int):
        """The block pattern FlexAttention should skip by (:mod:`.flex`); None: every pair (exact kinds)."""
        return None

    @classmethod
    def projection_flops(cls, config: EnformerConfig, positions: int) -> int:
        """Multiply-add FLOPs (2 per MAC) of one layer's projections at batch 1: q, k, v, the output and,
        with relative positions, the relative keys (:meth:`relative_rows`). The same for every kind."""
        heads, key_size, value_size = config.heads, config.key_size, config.head_value_size
        flops = 2 * positions * config.dim * (2 * heads * key_size + 2 * heads * value_size)
        if config.relative_positions:
            flops += 2 * cls.relative_rows(config, positions) * config.relative_features * heads * key_size
        return flops

    @staticmethod
    def relative_rows(config: EnformerConfig, positions: int) -> int:
        """Relative keys one layer projects: one per distance (``2T - 1``), or one per bucket of step-function
        features; a query's relative term over all its keys costs that many products with the bucket table."""
        return bucket_count(config, positions) if is_step_family(config) else 2 * positions - 1

    @classmethod
    def score_flops(cls, config: EnformerConfig, positions: int) -> int:
        """Multiply-add FLOPs of one layer's attention products at batch 1 (content scores, the relative
        term, the weighted values), as this kind computes them; softmax and masking not counted."""
        raise NotImplementedError

    def attention_mask(self, length: int) -> torch.Tensor:
        """The boolean (heads, T, T) pattern this kind implements: dense for exact kinds."""
        return torch.ones(self.config.heads, length, length, dtype=torch.bool)
