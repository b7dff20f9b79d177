"""Enformer (Avsec et al. 2021) with a choice of attention kind, read top to bottom.

    sequence (batch, bp, 4)
      -> stem: Conv(15) -> Residual(ConvBlock 1) -> SoftmaxPooling          (batch, dim/2, bp/2)
      -> conv tower: 6 x [ConvBlock(5) -> Residual(ConvBlock 1) -> SoftmaxPooling]   (batch, dim, T)
      -> transformer: depth x [x + Attention(LN x); x + MLP(LN x)]          (batch, T, dim)
      -> crop to the central target_length positions                         (batch, 896, dim)
      -> final pointwise: ConvBlock(1, 2 dim) -> Dropout -> GELU             (batch, 896, 2 dim)
      -> heads: Linear -> softplus                                           {head: (batch, 896, tracks)}

``forward`` is ``head_outputs(conv_features(sequence))``: the local conv trunk (stem and conv tower, finite
reach) and everything after it, so the edit engine (``senformer.edits``) can run the trunk once per
reference window and patch only the positions an edit reaches.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..config import EnformerConfig
from ..constants import CROP_MARGIN
from ..errors import UserError
from ..sequence import tokens_to_one_hot
from .attention import RelativeAttention, build_attention
from .checkpointing import checkpointed
from .init import truncated_normal_
from .layers import ConvBlock, ConvTowerBlock, FeedForward, SoftmaxPooling, Stem, crop, gelu
from .tiling import halo_bins, tiled_conv_trunk


class TransformerBlock(nn.Module):
    """Pre-norm block; the attention module (any kind) is handed in."""

    def __init__(self, config: EnformerConfig, attention: nn.Module):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.attention = attention
        # Dropout of the attention branch before the residual add (DeepMind's `dropout_rate`); dropout of the
        # attention weights is the attention module's own (`attention_dropout_rate`).
        self.residual_dropout = nn.Dropout(config.dropout_rate)
        self.feed_forward = FeedForward(config.dim, config.dropout_rate, config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, T, dim) -> (batch, T, dim)."""
        x = x + self.residual_dropout(self.attention(self.attention_norm(x)))
        return x + self.feed_forward(x)


class Enformer(nn.Module):
    """Enformer with ``config.attention`` in every transformer block.

    Call with a one-hot float ``(batch, bp, 4)`` or integer tokens ``(batch, bp)`` (0-3 = ACGT, 4 = N);
    ``bp`` is a multiple of 128 giving at least ``target_length`` positions. Returns
    ``{head: (batch, bins, tracks)}`` (non-negative, softplus) for every head or the chosen ``heads``.
    """

    def __init__(self, config: EnformerConfig | None = None):
        super().__init__()
        self.config = config = config or EnformerConfig()
        half = config.dim // 2
        filters = config.conv_tower_filters
        self.stem = Stem(half)
        self.conv_tower = nn.ModuleList(
            ConvTowerBlock(in_channels, out_channels)
            for in_channels, out_channels in zip([half, *filters[:-1]], filters)
        )
        self.transformer = nn.ModuleList(
            TransformerBlock(config, build_attention(config, layer)) for layer in range(config.depth)
        )
        self.final_pointwise = ConvBlock(filters[-1], 2 * config.dim, 1)
        self.final_dropout = nn.Dropout(config.final_dropout_rate)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(2 * config.dim, tracks) for name, tracks in config.output_heads.items()}
        )
        for module in self.modules():
            if isinstance(module, ConvBlock):
                module.recompute_norm = config.checkpoint_conv_tower
        self.reset_parameters()

    # Initialisation ---------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """DeepMind's initialisation (only matters when training from scratch)."""
        attention_parts = {
            id(part) for attention in self.attention_modules() for part in attention.modules()
        }
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)) and id(module) not in attention_parts:
                fan_in = module.weight[0].numel()
                std = 1.0 / math.sqrt(fan_in)
                truncated_normal_(module.weight, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, SoftmaxPooling):
                module.reset_parameters()
            elif isinstance(module, RelativeAttention):
                module.reset_parameters()
            elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
                module.reset_parameters()

    # Forward ----------------------------------------------------------------------------------
    # forward = head_outputs(conv_features(sequence)): the split lets the edit engine (senformer.edits) run the
    # local conv trunk once per reference and patch the few positions an edit can change.
    def conv_features(self, sequence: torch.Tensor) -> torch.Tensor:
        """Sequence (one-hot (batch, bp, 4) or tokens (batch, bp)) -> conv-trunk features (batch, T, dim)."""
        x = self.prepare_input(sequence)
        x = self.conv_trunk(x.transpose(1, 2))  # (batch, 4, bp) -> (batch, dim, T)
        return x.transpose(1, 2)  # (batch, T, dim)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Conv-trunk features (batch, T, dim) -> embeddings (batch, bins, 2 dim): transformer, crop, final
        pointwise block."""
        x = self.transformer_trunk(features)
        x = crop(x, self.config.target_length, CROP_MARGIN)
        x = self.final_pointwise(x.transpose(1, 2)).transpose(1, 2)  # (batch, bins, 2 dim)
        return gelu(self.final_dropout(x))

    def trunk(self, sequence: torch.Tensor) -> torch.Tensor:
        """Sequence -> embeddings (batch, bins, 2 dim) before the heads."""
        return self.embed(self.conv_features(sequence))

    def conv_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 4, bp) one-hot -> (batch, dim, bp / 128): stem and conv tower (local, finite reach).

        In evaluation mode an input longer than ``config.conv_tile_length`` runs tile by tile (exact).
        """
        tile_length = self.config.conv_tile_length
        if not self.training and tile_length is not None and x.shape[-1] > tile_length:
            # Local, and BatchNorm uses moving statistics: overlapping windows give the exact result.
            return tiled_conv_trunk(self.conv_trunk, x, tile_length, self.config.bin_size, halo_bins(self))
        use_checkpoint = self.config.checkpoint_conv_tower and torch.is_grad_enabled() and self.training
        x = checkpointed(self.stem, x) if use_checkpoint else self.stem(x)
        for block in self.conv_tower:
            x = checkpointed(block, x) if use_checkpoint else block(x)
        return x

    def transformer_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, T, dim) -> (batch, T, dim) through the transformer blocks."""
        use_checkpoint = self.config.checkpoint_transformer and torch.is_grad_enabled()
        for block in self.transformer:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return x

    def forward(
        self,
        sequence: torch.Tensor,
        heads: Iterable[str] | None = None,
        return_embeddings: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Predict tracks.

        Args:
            sequence: one-hot float (batch, bp, 4) or integer tokens (batch, bp).
            heads: names of the heads to run (default: all).
            return_embeddings: also return ``"embeddings"`` (batch, bins, 2 dim).
        Returns:
            ``{head: (batch, bins, tracks)}``, plus ``"embeddings"`` when asked.
        """
        names = self.head_names(heads)  # before the trunk: a wrong name costs no forward pass
        return self.head_outputs(self.conv_features(sequence), names, return_embeddings)

    def head_outputs(
        self,
        features: torch.Tensor,
        heads: Iterable[str] | None = None,
        return_embeddings: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The rest of :meth:`forward` from conv-trunk features (batch, T, dim) (:meth:`conv_features`):
        ``{head: (batch, bins, tracks)}``, plus ``"embeddings"`` when asked."""
        names = self.head_names(heads)
        embeddings = self.embed(features)
        outputs = {name: F.softplus(self.heads[name](embeddings)) for name in names}
        if return_embeddings:
            outputs["embeddings"] = embeddings
        return outputs

    def head_names(self, heads: Iterable[str] | None = None) -> list[str]:
        """``heads`` as a list (default: every head); UserError naming any the model lacks."""
        names = list(self.heads) if heads is None else list(heads)
        unknown = [name for name in names if name not in self.heads]
        if unknown:
            raise UserError(f"unknown head(s) {', '.join(map(repr, unknown))}; the model has {', '.join(self.heads)}")
        return names

    def prepare_input(self, sequence: torch.Tensor) -> torch.Tensor:
        """Validate and convert ``sequence`` to a float one-hot (batch, bp, 4)."""
        if not isinstance(sequence, torch.Tensor):
            raise UserError(f"sequence must be a torch.Tensor, got {type(sequence).__name__}")
        if sequence.dtype.is_floating_point:
            if sequence.dim() != 3 or sequence.shape[-1] != 4:
                raise UserError(f"one-hot input must have shape (batch, length, 4); got {tuple(sequence.shape)}")
            x = sequence
        else:
            if sequence.dim() != 2:
                raise UserError(f"token input must have shape (batch, length); got {tuple(sequence.shape)}")
            x = tokens_to_one_hot(sequence, dtype=self.stem.conv.weight.dtype)
        self.config.validate_sequence_length(x.shape[1])
        return x

    # Weights ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, strict: bool = True, **overrides) -> "Enformer":
        """Load weights in any supported format from ``path`` (see :func:`senformer.weights.load_model`;
        names such as ``enformer`` are :func:`senformer.load_model`'s); keyword arguments override config
        fields, e.g. ``attention="bigbird"``."""
        from ..weights import load_model

        return load_model(path, overrides=overrides, strict=strict)

    def save_pretrained(self, directory):
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (see :func:`senformer.save_model`)."""
        from ..weights import save_model

        return save_model(self, directory)

    # Conveniences -----------------------------------------------------------------------------
    def attention_modules(self) -> list[RelativeAttention]:
        return [block.attention for block in self.transformer]

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per top-level module and in total."""
        counts = {
            name: sum(p.numel() for p in module.parameters() if p.requires_grad)
            for name, module in self.named_children()
        }
        counts["total"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

