"""Tiled inference of the stem and conv tower: memory set by the tile, not the input, with an exact result.

The stem and conv tower are local: an output bin depends only on the input within a finite reach of it
(the stem's width-15 convolution and each tower block's width-5 convolution, at its resolution;
:func:`conv_reach`), and in evaluation BatchNorm uses its moving statistics, so no position sees any other
beyond that reach. Running the trunk over overlapping windows, each extended by a halo of whole bins at least that reach, and keeping every
window's central bins therefore gives exactly the untiled output. Windows start on bin boundaries so that
every pooling pairs the same positions as in the untiled pass, and at the ends of the sequence a window is
clipped, so the zero padding of the convolutions falls where it falls in the untiled pass.

    input (batch, 4, bp) ──► windows of <= tile_length bp (core bins + halo on each side)
                         ──► conv_trunk(window) ──► keep the core bins ──► concatenate (batch, dim, bp / 128)
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .layers import SoftmaxPooling


def conv_reach(model: nn.Module) -> tuple[int, int]:
    """``(left, right)`` in bp: trunk position ``t`` (input bp ``[t * bin_size, (t + 1) * bin_size)``) depends
    only on input bp ``[t * bin_size - left, t * bin_size + right]``. The one owner of the convolutions'
    reach: the tiler's halo (:func:`halo_bins`) and the receptive-field mask both read it.

    Read from the modules in order (stem, conv tower, final pointwise block): a convolution of width ``w``
    with padding ``p`` at a resolution of ``r`` bp per position widens the window by ``p * r`` on the left and
    ``(w - 1 - p) * r`` on the right; a pooling by ``k`` groups ``k`` aligned positions, adding
    ``(k - 1) * r`` on the right (the poolings together add ``bin_size - 1``: the rest of the bin). The
    final pointwise block is width 1 in Enformer, so including it keeps the trunk's reach.
    """
    left = right = 0
    resolution = 1
    stages = [model.stem, *model.conv_tower]
    final = getattr(model, "final_pointwise", None)
    for stage in [*stages, *([final] if final is not None else [])]:
        for module in stage.modules():
            if isinstance(module, nn.Conv1d) and not _is_pooling_logit(stage, module):
                (width,), (padding,), (dilation,), (stride,) = (module.kernel_size, module.padding,
                                                                 module.dilation, module.stride)
                assert dilation == 1 and stride == 1, "undilated, unit-stride convolutions only"
                left += padding * resolution
                right += (width - 1 - padding) * resolution
        pool = getattr(stage, "pool", None)
        if pool is not None:
            right += (pool.pool_size - 1) * resolution
            resolution *= pool.pool_size
    return left, right


def _is_pooling_logit(stage: nn.Module, module: nn.Module) -> bool:
    return any(module is pool.logits for pool in stage.modules() if isinstance(pool, SoftmaxPooling))


def halo_bins(model: nn.Module) -> int:
    """Whole bins of context each window needs on each side of the bins it keeps: enough that the window
    holds ``[t * bin_size - left, t * bin_size + right]`` (:func:`conv_reach`) for every kept bin ``t``.
    Bins of the trunk's output (``2**num_poolings`` bp: Enformer's output bins; Borzoi's transformer positions,
    which its U-Net refines to 32 bp)."""
    left, right = conv_reach(model)
    bin_size = 2**model.config.num_poolings
    return max(math.ceil(left / bin_size), math.ceil((right - (bin_size - 1)) / bin_size), 0)


def tile_bounds(num_bins: int, tile_bins: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(window_start, window_stop, keep_start, keep_stop)`` in bins for each window.

    Each window spans at most ``tile_bins`` bins: ``tile_bins - 2 * halo`` kept bins and a halo on each side,
    clipped at the ends of the sequence. The kept ranges tile ``[0, num_bins)`` exactly.
    """
    core = tile_bins - 2 * halo
    if core < 1:
        raise ValueError(
            f"a conv tile of {tile_bins} bins leaves no bins to keep after a halo of {halo} bins on each side; "
            f"use at least {2 * halo + 1} bins"
        )
    bounds = []
    for keep_start in range(0, num_bins, core):
        keep_stop = min(keep_start + core, num_bins)
        bounds.append((max(0, keep_start - halo), min(num_bins, keep_stop + halo), keep_start, keep_stop))
    return bounds


def tiled_conv_trunk(
    conv_trunk: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile_length: int,
    bin_size: int,
    halo: int,
) -> torch.Tensor:
    """Run ``conv_trunk`` over overlapping windows of ``x``; equals ``conv_trunk(x)`` in evaluation mode.

    Args:
        conv_trunk: maps (batch, 4, length) -> (batch, channels, length / bin_size) for any window of at
            most ``tile_length`` bp (``Enformer.conv_trunk``; the windows never exceed the tile, so it does
            not tile them again).
        x: (batch, 4, bp) one-hot, ``bp`` a multiple of ``bin_size``.
        tile_length: bp per window, halo included; a multiple of ``bin_size``.
        bin_size: bp per output position (128).
        halo: bins of context on each side (:func:`halo_bins`).
    Returns:
        (batch, channels, bp / bin_size).
    """
    length = x.shape[-1]
    if length % bin_size or tile_length % bin_size:
        raise ValueError(
            f"tiled conv trunk needs the input ({length:,} bp) and the tile ({tile_length:,} bp) "
            f"to be multiples of {bin_size} bp"
        )
    pieces = []
    for window_start, window_stop, keep_start, keep_stop in tile_bounds(length // bin_size, tile_length // bin_size, halo):
        window = conv_trunk(x[:, :, window_start * bin_size : window_stop * bin_size])  # (batch, C, window bins)
        pieces.append(window[:, :, keep_start - window_start : keep_stop - window_start])
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)


# Recomputing part of the trunk (the edit engine, senformer.edits) ------------------------------------------
def affected_bins(reach: tuple[int, int], start: int, stop: int, num_bins: int, bin_size: int) -> tuple[int, int]:
    """``[first, last)``: the trunk positions whose value can depend on input bp ``[start, stop)``.

    Position ``t`` reads bp ``[t * bin_size - left, t * bin_size + right]`` (``reach`` = :func:`conv_reach`),
    so it can change when ``t * bin_size - left <= stop - 1`` and ``t * bin_size + right >= start``.
    Returns an empty range (``first == last``) when no position can change.
    """
    left, right = reach
    first = max(0, -(-(start - right) // bin_size))  # ceil division
    last = min(num_bins, (stop - 1 + left) // bin_size + 1)
    return (first, last) if first < last else (0, 0)


def span_bounds(num_bins: int, first: int, last: int, halo: int) -> tuple[int, int]:
    """``(window_start, window_stop)`` in bins of the window that recomputes trunk positions
    ``[first, last)``: the range extended by ``halo`` bins on each side and clipped at the ends of the
    sequence, the way :func:`tile_bounds` cuts a tile around its kept bins. Windows start on bin boundaries
    (so every pooling pairs the positions the whole pass pairs) and end at the sequence's own ends (so the
    convolutions' zero padding falls where it falls in the whole pass)."""
    if not 0 <= first < last <= num_bins:
        raise ValueError(f"trunk positions [{first}, {last}) must be a non-empty range inside [0, {num_bins})")
    return max(0, first - halo), min(num_bins, last + halo)


def conv_trunk_span(
    conv_trunk: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    first: int,
    last: int,
    bin_size: int,
    halo: int,
) -> torch.Tensor:
    """Trunk positions ``[first, last)`` of ``x`` from the window :func:`span_bounds` gives; in evaluation
    mode they equal ``conv_trunk(x)[..., first:last]``.

    Args:
        conv_trunk: as in :func:`tiled_conv_trunk` (``Enformer.conv_trunk``; a window longer than the
            model's tile is tiled by it, still exactly).
        x: (batch, 4, bp) one-hot, ``bp`` a multiple of ``bin_size``.
    Returns:
        (batch, channels, last - first).
    """
    window_start, window_stop = span_bounds(x.shape[-1] // bin_size, first, last, halo)
    window = conv_trunk(x[:, :, window_start * bin_size : window_stop * bin_size])  # (batch, C, window bins)
    return window[:, :, first - window_start : last - window_start]
