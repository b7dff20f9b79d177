"""Window geometry shared by ``predict`` and the analyses: where a model's output window sits in its input,
and how a region is covered by output windows.

A model input of ``L`` bp gives ``bins`` output bins of 128 bp: the central ``bins * 128`` bp (114,688 of
196,608 for the published model). A region is predicted over its *span*: ``max(bins, ceil(width / 128))``
bins centred on the region. A span of one output window is one input window centred on the region; a longer
span is tiled with windows overlapping by half an output window, each bin taken from the window in which it
is most central (bins near a window's edge see less context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .constants import CROP_MARGIN
from .data.genome import Interval
from .errors import UserError
from .inference import MAX_SHIFT, resolve_sequence_length


def check_shifts(shifts) -> tuple[int, ...]:
    """``shifts`` as ints, each at most :data:`MAX_SHIFT` bp in size; else one :class:`UserError` line."""
    shifts = tuple(int(shift) for shift in shifts)
    if not shifts:
        raise UserError("shifts must hold at least one value (0 for no shift)")
    too_far = [shift for shift in shifts if abs(shift) > MAX_SHIFT]
    if too_far:
        raise UserError(f"shift {too_far[0]} bp is more than half a bin ({MAX_SHIFT} bp): a shift averages "
                        "nearby inputs of the same bins, not other positions")
    return shifts


@dataclass(frozen=True)
class Geometry:
    """Input length, output bins and where the output window sits inside the input."""

    sequence_length: int
    bins: int
    bin_size: int
    offset_bins: int  # bins trimmed before the output window

    @classmethod
    def of(cls, config, sequence_length: int | None) -> "Geometry":
        """``sequence_length`` checked against ``config`` (None: the default input length)."""
        sequence_length = resolve_sequence_length(config, sequence_length)
        input_bins = sequence_length // config.bin_size  # Borzoi: 32-bp bins, 4 per transformer position
        bins = config.output_length(sequence_length)
        margin = getattr(config, "crop", CROP_MARGIN)  # Borzoi's crop; Enformer trims 320 positions
        offset = margin if config.target_length is None else (input_bins - bins) // 2
        return cls(sequence_length, bins, config.bin_size, offset)

    @property
    def output_bp(self) -> int:
        return self.bins * self.bin_size


@dataclass(frozen=True)
class RegionPlan:
    """A region, its predicted span and the output windows (starts in bp) that cover it."""

    region: Interval
    span_start: int
    num_bins: int
    tile_offsets: tuple[int, ...]  # first bin of each output window, in bins from the span start
    bin_tile: np.ndarray = field(compare=False, repr=False)  # (num_bins,) index of the tile each bin comes from
    bin_size: int = 128

    @property
    def tile_starts(self) -> tuple[int, ...]:
        return tuple(self.span_start + offset * self.bin_size for offset in self.tile_offsets)

    def input_window(self, tile: int, geometry: Geometry) -> Interval:
        start = self.tile_starts[tile] - geometry.offset_bins * geometry.bin_size
        return Interval(self.region.chrom, start, start + geometry.sequence_length)


def region_span(region: Interval, geometry: Geometry) -> tuple[int, int]:
    """(first bp, number of bins) of the predicted span: at least one output window, centred on the region."""
    size = geometry.bin_size
    num_bins = max(geometry.bins, math.ceil(region.width / size))
    return region.start + (region.width - num_bins * size) // 2, num_bins


def tile_offsets(num_bins: int, window: int) -> list[int]:
    """First bin of each output window covering ``num_bins`` bins: half-overlapping, the last flush with the end."""
    stride = max(1, window // 2)
    return sorted({*range(0, num_bins - window + 1, stride), num_bins - window})


def plan_region(region: Interval, geometry: Geometry) -> RegionPlan:
    """Span and tiles of ``region``: one centred window, or half-overlapping windows stitched by centrality."""
    size, window = geometry.bin_size, geometry.bins
    span_start, num_bins = region_span(region, geometry)
    offsets = tile_offsets(num_bins, window)
    centres = np.array(offsets) + window / 2
    bin_centres = np.arange(num_bins) + 0.5
    bin_tile = np.abs(bin_centres[:, None] - centres[None, :]).argmin(axis=1)
    return RegionPlan(region, span_start, num_bins, tuple(offsets), bin_tile, size)
