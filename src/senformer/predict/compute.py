"""The compute loop: windows of regions in batches through the inference module, stitched back per region."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from ..data.borzoi_targets import undo_squashed_scale
from ..data.genome import Genome, Interval
from ..fingerprint import bases_digest
from ..inference import predict_batch
from ..sequence import tokens, tokens_to_one_hot
from ..windows import Geometry, RegionPlan, plan_region
from .options import PredictOptions, Work


@dataclass
class Job:
    """One row: its region's plan, or the sequence given directly (no genome)."""

    row: int
    plan: RegionPlan
    sequence: str | None = None


def jobs(work: Work, first: int) -> Iterator[Job]:
    """The rows from ``first`` on; plans are made as the regions are reached (a large BED costs no memory
    per region)."""
    geometry = work.geometry
    for row in range(first, len(work.regions)):
        if work.sequences is None:
            yield Job(row, plan_region(work.regions[row], geometry))
        else:
            plan = RegionPlan(work.regions[row], work.spans[row][0], geometry.bins, (0,),
                              np.zeros(geometry.bins, dtype=np.int64), geometry.bin_size)
            yield Job(row, plan, work.sequences[row][1])


def input_text(job: Job, tile: int, geometry: Geometry, margin: int, genome: Genome | None) -> str:
    """The exact bases of one model input: the window with ``margin`` bp each side, N beyond the sequence."""
    if job.sequence is not None:
        return "N" * margin + job.sequence + "N" * margin
    window = job.plan.input_window(tile, geometry)
    return genome.fetch(Interval(window.chrom, window.start - margin, window.end + margin))


def row_digest(tile_digests: list[str]) -> bytes:
    """One row's record of its input bases: the SHA-256 of its windows' digests."""
    return hashlib.sha256("\n".join(tile_digests).encode()).hexdigest().encode()


_BASES = "\0bases"  # the per-tile input digests beside the outputs of a pending row


def completed_regions(model, jobs: Iterable[Job], work: Work, options: PredictOptions,
                      on_batch=None) -> Iterator[tuple[Job, dict, bytes]]:
    """Run the windows of ``jobs`` in batches of ``options.batch_size`` through the inference module and yield
    ``(job, {output: (num_bins, channels) float32, stitched}, digest of its windows' bases)`` for each region
    as its last window is done, in region order (with ``--coverage`` the heads' stitched means are undone
    from the squashed scale). ``on_batch(windows)`` is called after each batch."""
    geometry, margin = work.geometry, options.margin
    pending: dict[int, dict[str, list]] = {}
    batch: list[tuple[Job, int]] = []

    def run() -> list[tuple[Job, dict, bytes]]:
        texts = [input_text(job, tile, geometry, margin, work.genome) for job, tile in batch]
        one_hot = tokens_to_one_hot(torch.from_numpy(np.stack([tokens(t) for t in texts]).astype(np.int64)))
        outputs = predict_batch(model, one_hot, heads=work.heads, tracks=work.selections, margin=margin,
                                reverse_complement=options.reverse_complement, shifts=options.shifts,
                                bf16=options.bf16, device=options.device, embeddings=options.embeddings,
                                strand_pairs=work.strand_pairs)
        completed = []
        for index, (job, tile) in enumerate(batch):
            store = pending.setdefault(job.row, {})
            tiles = len(job.plan.tile_starts)
            store.setdefault(_BASES, [None] * tiles)[tile] = bases_digest(texts[index])
            for name, value in outputs.items():
                store.setdefault(name, [None] * tiles)[tile] = value[index].numpy()
            if all(tile is not None for tiles in store.values() for tile in tiles):
                row = pending.pop(job.row)
                digest = row_digest(row.pop(_BASES))
                stitched = {name: stitch(tiles, job.plan) for name, tiles in row.items()}
                for head, table in work.coverage.items():  # after averaging, as calico: the mean is untransformed
                    stitched[head] = undo_squashed_scale(stitched[head], table, unscale=options.unscale).astype(np.float32)
                completed.append((job, stitched, digest))
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()
        return completed

    for job in jobs:
        for tile in range(len(job.plan.tile_starts)):
            batch.append((job, tile))
            if len(batch) == options.batch_size:
                yield from run()
    if batch:
        yield from run()


def stitch(tiles: list[np.ndarray], plan: RegionPlan) -> np.ndarray:
    """(num_bins, channels): each bin from the tile where it is most central."""
    if len(tiles) == 1:
        return tiles[0]
    stacked = np.stack(tiles)  # (tiles, bins, channels)
    bins = np.arange(plan.num_bins)
    offsets = np.asarray(plan.tile_offsets)[plan.bin_tile]
    return stacked[plan.bin_tile, bins - offsets]
