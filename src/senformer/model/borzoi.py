"""Borzoi (Linder et al. 2025) and Flashzoi, read top to bottom: Enformer's family with a U-Net.

    sequence (batch, bp, 4)
      -> stem: Conv(15) -> max pool                                              (batch, 512, bp/2)
      -> conv tower: 6 x [BatchNorm -> GELU -> Conv(5) -> max pool]              (batch, dim, T = bp/128)
         (the outputs of the last two blocks before pooling, at 64 and 32 bp, are the U-Net's skips)
      -> transformer: depth x [x + Attention(LN x); x + MLP(LN x)]               (batch, T, dim)
      -> U-Net: 2 x [BN -> GELU -> 1x1 conv -> upsample x2  +  BN -> GELU -> 1x1 conv (skip)
                     -> depthwise-separable conv(3)]                              (batch, 4T, dim) at 32 bp
      -> crop 16 bins per side (or the central target_length)                    (batch, bins, dim)
      -> final: BN -> GELU -> Conv(1, 1920) -> Dropout -> GELU                    (batch, bins, 1920)
      -> heads: Linear -> softplus                                               {head: (batch, bins, tracks)}

The pieces whose maths is Enformer's are Enformer's (:class:`~senformer.model.layers.ConvBlock`, the
transformer block and its relative attention, any kind); Borzoi differs in configuration (the tanh GELU and
Keras's epsilons, central-mask-only position features) and in the modules here: the max-pooling stem and
tower, the U-Net step and the optional final conv. ``attention="rotary"`` is Flashzoi
(:class:`~senformer.model.attention.GroupedRotaryAttention`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..config import BorzoiConfig
from .attention import RelativeAttention, build_attention
from .attention.grouped import GroupedRotaryAttention
from .checkpointing import checkpointed
from .enformer import Enformer, TransformerBlock
from .init import truncated_normal_
from .layers import ConvBlock, crop
from .tiling import halo_bins, tiled_conv_trunk


def tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    """Keras's ``gelu(approximate=True)``, the GELU of every Borzoi block."""
    return F.gelu(x, approximate="tanh")


class MaxPooling(nn.Module):
    """Max over each window of ``pool_size`` positions (Keras's MaxPool1D; ``pool_size`` is what
    :func:`~senformer.model.tiling.conv_reach` reads, as for Enformer's softmax pooling)."""

    def __init__(self, pool_size: int = 2):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(x, self.pool_size)


class BorzoiStem(nn.Module):
    """Conv1d(4 -> stem channels, width 15, bias) -> max pool by 2 (baskerville's ``conv_dna``)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, width, padding=width // 2)
        self.pool = MaxPooling(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, 4, bp) -> (batch, channels, bp / 2)."""
        return self.pool(self.conv(x))


class TowerBlock(ConvBlock):
    """BatchNorm -> GELU -> Conv (Enformer's :class:`ConvBlock`, tanh GELU), followed by ``pool``: the
    model pools after keeping the block's output as a U-Net skip."""

    def __init__(self, in_channels: int, out_channels: int, width: int, eps: float):
        super().__init__(in_channels, out_channels, width, eps, tanh_gelu=True)
        self.pool = MaxPooling(2)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in, n) -> (batch, out, n / 2): the block, then its pooling."""
        return self.pool(self(x))

    def skip_and_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, in, n) -> the block's output (batch, out, n), a U-Net skip, and its pooling (batch, out, n / 2)."""
        skip = self(x)
        return skip, self.pool(skip)


class BatchNormGelu(nn.Module):
    """BatchNorm -> GELU: the upsampled path of a U-Net step without its 1x1 conv (params_micro)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=eps, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh_gelu(self.norm(x))


class UNetStep(nn.Module):
    """One step up (baskerville's ``unet_conv``): the coarse path through BN -> GELU -> 1x1 conv, repeated
    twice along the length, plus the tower's skip through BN -> GELU -> 1x1 conv, then a depthwise conv
    (no bias) and a pointwise conv (Keras's ``SeparableConv1D``)."""

    def __init__(self, dim: int, skip_channels: int, config: BorzoiConfig):
        super().__init__()
        eps, width = config.batch_norm_eps, config.unet_width
        self.upsample = (ConvBlock(dim, dim, 1, eps, tanh_gelu=True) if config.unet_upsample_conv
                         else BatchNormGelu(dim, eps))
        self.skip = ConvBlock(skip_channels, dim, 1, eps, tanh_gelu=True)
        self.depthwise = nn.Conv1d(dim, dim, width, padding=width // 2, groups=dim, bias=False)
        self.pointwise = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x: (batch, dim, n), skip: (batch, skip channels, 2n) -> (batch, dim, 2n)."""
        x = self.upsample(x).repeat_interleave(2, dim=-1) + self.skip(skip)
        return self.pointwise(self.depthwise(x))


class Borzoi(nn.Module):
    """Borzoi (or Flashzoi, ``config.attention="rotary"``) with ``config.attention`` in every block.

    Call with a one-hot float ``(batch, bp, 4)`` or integer tokens ``(batch, bp)`` (0-3 = ACGT, 4 = N);
    ``bp`` is a multiple of 128. Returns ``{head: (batch, bins, tracks)}`` (softplus) at
    ``config.bin_size`` bp per bin for every head or the chosen ``heads``.
    """

    def __init__(self, config: BorzoiConfig | None = None):
        super().__init__()
        self.config = config = config or BorzoiConfig()
        eps = config.batch_norm_eps
        filters = config.conv_tower_filters
        self.stem = BorzoiStem(config.stem_channels, config.stem_width)
        self.conv_tower = nn.ModuleList(
            TowerBlock(in_channels, out_channels, config.conv_tower_width, eps)
            for in_channels, out_channels in zip([config.stem_channels, *filters[:-1]], filters)
        )
        self.transformer = nn.ModuleList(
            TransformerBlock(config, build_attention(config, layer)) for layer in range(config.depth)
        )
        # Step k joins the tower block k + 1 from the end: 64 bp first, then 32 bp.
        self.unet = nn.ModuleList(
            UNetStep(config.dim, filters[-1 - level], config) for level in range(config.unet_levels)
        )
        embedding = config.final_channels or config.dim
        self.final_pointwise = (ConvBlock(config.dim, embedding, 1, eps, tanh_gelu=True)
                                if config.final_channels else None)
        self.final_dropout = nn.Dropout(config.final_dropout_rate)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(embedding, tracks) for name, tracks in config.output_heads.items()}
        )
        for module in self.modules():
            if isinstance(module, ConvBlock):
                module.recompute_norm = config.checkpoint_conv_tower
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal convolutions and linears with zero biases (fan-in scaled, as Enformer's), the
        attention modules' own initialisation, unit norms."""
        attention_parts = {id(part) for attention in self.attention_modules() for part in attention.modules()}
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)) and id(module) not in attention_parts:
                truncated_normal_(module.weight, 1.0 / math.sqrt(module.weight[0].numel()))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (RelativeAttention, GroupedRotaryAttention, nn.BatchNorm1d, nn.LayerNorm)):
                module.reset_parameters()

    # Forward ----------------------------------------------------------------------------------
    def conv_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(batch, 4, bp) one-hot -> tower output (batch, dim, bp / 128) and the U-Net's skips, coarsest first
        (batch, filters, bp / 64), (batch, filters, bp / 32).

        In evaluation mode an input longer than ``config.conv_tile_length`` runs tile by tile (exact: the
        tower and its skips are local, as Enformer's trunk is; model/tiling.py).
        """
        tile_length = self.config.conv_tile_length
        if not self.training and tile_length is not None and x.shape[-1] > tile_length:
            unit = 2**self.config.num_poolings
            packed = tiled_conv_trunk(self.packed_conv_trunk, x, tile_length, unit, halo_bins(self))
            return self.unpack(packed)
        # Recomputed in backward, each piece keeps only its input: without it the full-resolution conv outputs
        # and max-pool indices (int64) of the stem and first blocks hold most of a training step's memory.
        use_checkpoint = self.use_conv_checkpoint()
        x = checkpointed(self.stem, x) if use_checkpoint else self.stem(x)
        levels = self.config.unet_levels
        skips = []
        for index, block in enumerate(self.conv_tower):
            if index < len(self.conv_tower) - levels:
                x = checkpointed(block.pooled, x, module=block) if use_checkpoint else block.pooled(x)
            else:  # the block's output before pooling is a U-Net skip
                skip, x = (checkpointed(block.skip_and_pooled, x, module=block) if use_checkpoint
                           else block.skip_and_pooled(x))
                skips.append(skip)
        return x, skips[::-1]

    def use_conv_checkpoint(self) -> bool:
        """Whether this pass recomputes the conv pieces in backward (``checkpoint_conv_tower``, training with
        gradients); BatchNorm statistics move in the forward only (model/checkpointing.py)."""
        return self.config.checkpoint_conv_tower and self.training and torch.is_grad_enabled()

    # The tiler and the edit engine (senformer.edits) cut one tensor on the tower's 128-bp grid: each skip at
    # 128 / 2**k bp folds its 2**k positions per 128 bp into channels, (batch, C, 2**k n) -> (batch, 2**k C, n),
    # beside the tower's output. A packed position depends on the input within the tower's reach of it.
    def packed_conv_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 4, bp) -> (batch, dim + sum 2**k C_k, bp / 128), a window no longer than the tile."""
        tower, skips = self.conv_trunk(x)
        folded = []
        for level, skip in enumerate(skips, start=1):
            batch, channels, length = skip.shape
            factor = 2**level
            folded.append(skip.reshape(batch, channels, length // factor, factor).transpose(2, 3)
                          .reshape(batch, channels * factor, length // factor))
        return torch.cat([tower, *folded], dim=1)

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The inverse of :meth:`packed_conv_trunk`'s folding."""
        filters = self.config.conv_tower_filters
        batch, _, length = packed.shape
        tower, start, skips = packed[:, : self.config.dim], self.config.dim, []
        for level in range(1, self.config.unet_levels + 1):
            channels, factor = filters[-level], 2**level
            part = packed[:, start : start + channels * factor]
            skips.append(part.reshape(batch, channels, factor, length).transpose(2, 3)
                         .reshape(batch, channels, length * factor))
            start += channels * factor
        return tower.contiguous(), skips

    # forward = head_outputs(conv_features(sequence)) as for Enformer; here the conv features carry the U-Net's
    # skips with them (both local: issue 22's edit engine patches them like Enformer's trunk).
    def conv_features(self, sequence: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sequence (one-hot (batch, bp, 4) or tokens (batch, bp)) -> tower features (batch, T, dim) and the
        U-Net's skips (:meth:`conv_trunk`)."""
        x, skips = self.conv_trunk(self.prepare_input(sequence).transpose(1, 2))
        return x.transpose(1, 2), skips

    def embed(self, features: tuple[torch.Tensor, list[torch.Tensor]]) -> torch.Tensor:
        """:meth:`conv_features` -> embeddings (batch, bins, channels): transformer, U-Net, crop, final conv."""
        x, skips = features
        x = self.transformer_trunk(x).transpose(1, 2)  # (batch, dim, T)
        # The U-Net steps hold several tensors each at 64 and 32 bp (the published width at 524,288 bp: 8,192 and
        # 16,384 positions x 1,536 channels); recomputed, each keeps its two inputs, the skip being held anyway.
        use_checkpoint = self.use_conv_checkpoint()
        for step, skip in zip(self.unet, skips):
            x = checkpointed(step, x, skip) if use_checkpoint else step(x, skip)
        x = crop(x.transpose(1, 2), self.config.target_length, self.config.crop)  # (batch, bins, dim)
        if self.final_pointwise is not None:
            x = self.final_dropout(self.final_pointwise(x.transpose(1, 2)).transpose(1, 2))
        return tanh_gelu(x)

    # The same as Enformer's: the forward pass over conv_features and embed, heads, input checks, weights.
    forward = Enformer.forward
    head_outputs = Enformer.head_outputs
    trunk = Enformer.trunk
    transformer_trunk = Enformer.transformer_trunk
    head_names = Enformer.head_names
    prepare_input = Enformer.prepare_input
    from_pretrained = classmethod(Enformer.from_pretrained.__func__)
    save_pretrained = Enformer.save_pretrained
    attention_modules = Enformer.attention_modules
    parameter_counts = Enformer.parameter_counts


def build_model(config) -> Enformer | Borzoi:
    """The model of ``config``'s family: :class:`Borzoi` for a BorzoiConfig, else :class:`Enformer`."""
    return Borzoi(config) if isinstance(config, BorzoiConfig) else Enformer(config)
