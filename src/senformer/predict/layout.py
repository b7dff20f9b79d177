"""The prediction file (HDF5): its layout, its rows as they are written, resumed, merged and checked.

Layout (see :mod:`senformer.predict`): ``/regions/*`` one entry per row, ``/<head>/predictions`` float16
``(rows, max bins, tracks)`` filled with NaN until a row is written (NaN also past a shorter region's bins:
the one value the format defines as missing), optional ``/embeddings``, and the attributes ``fingerprint``
and ``completed`` (rows on disk, in order). A row is flushed to the device before ``completed`` counts it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data.borzoi_targets import check_scale_columns
from ..data.genome import Genome, Interval
from ..errors import UserError
from ..fingerprint import bases_digest
from ..outputs import hdf5
from ..predictions import hdf5_strings
from ..windows import Geometry, plan_region
from .compute import Job, input_text, row_digest
from .options import PredictOptions, Work


def _string_array(values) -> np.ndarray:
    return np.array([str(v).encode("utf-8") for v in values], dtype=object)


def create_layout(handle, work: Work, config, options: PredictOptions, fingerprint: str) -> None:
    """Every dataset and attribute of an empty prediction file of ``work``'s rows (``completed`` = 0)."""
    import h5py

    strings = h5py.string_dtype("utf-8")
    count = len(work.regions)
    max_bins = max(num_bins for _, num_bins in work.spans)
    group = handle.create_group("regions")
    group.create_dataset("chrom", data=_string_array(r.chrom for r in work.regions), dtype=strings)
    group.create_dataset("start", data=np.array([r.start for r in work.regions], dtype=np.int64))
    group.create_dataset("end", data=np.array([r.end for r in work.regions], dtype=np.int64))
    group.create_dataset("name", data=_string_array(work.names), dtype=strings)
    group.create_dataset("bins_start", data=np.array([start for start, _ in work.spans], dtype=np.int64))
    group.create_dataset("num_bins", data=np.array([num_bins for _, num_bins in work.spans], dtype=np.int64))
    group.create_dataset("bases_sha256", shape=(count,), dtype="S64")
    # Coverage is stored as float32: undone from the squashed scale, a track's values can pass float16's 65,504.
    dtype = np.float32 if options.coverage else np.float16
    for head in work.heads:
        head_group = handle.create_group(head)
        chosen = work.selections[head]
        head_group.create_dataset(
            "predictions", shape=(count, max_bins, len(chosen)), dtype=dtype,
            chunks=(1, max_bins, len(chosen)), fillvalue=dtype(np.nan),
        )
        table = work.tables[head].iloc[chosen]
        tracks = head_group.create_group("tracks")
        tracks.create_dataset("index", data=np.asarray(chosen, dtype=np.int64))
        for column in ("identifier", "description", "assay_group"):
            tracks.create_dataset(column, data=_string_array(table[column]), dtype=strings)
        if head in work.strand_pairs:  # the head index of each track's other strand (plot draws pairs)
            tracks.create_dataset("strand_pair", data=work.strand_pairs[head][chosen])
        if head in work.coverage or {"clip_soft", "scale", "sum_stat"} <= set(table.columns):
            scales = work.coverage.get(head)
            if scales is None:
                scales = check_scale_columns(table, f"head {head}'s track table")
            for column in ("clip_soft", "scale"):  # read_prediction's --coverage undoes a stored model output
                tracks.create_dataset(column, data=scales[column].to_numpy(dtype=np.float64))
            tracks.create_dataset("sum_stat", data=_string_array(scales["sum_stat"]), dtype=strings)
    if options.embeddings:
        width = embedding_width(config)
        handle.create_dataset("embeddings", shape=(count, max_bins, width), dtype=np.float16,
                              chunks=(1, max_bins, width), fillvalue=np.float16(np.nan))
    geometry = work.geometry
    handle.attrs["settings"] = json.dumps(asdict(options), sort_keys=True)
    handle.attrs["config"] = config.to_json()
    handle.attrs["bin_size"] = geometry.bin_size
    handle.attrs["units"] = options.units
    handle.attrs["sequence_length"] = geometry.sequence_length
    handle.attrs["bins"] = geometry.bins
    handle.attrs["offset_bins"] = geometry.offset_bins
    handle.attrs["margin"] = options.margin
    handle.attrs["fingerprint"] = fingerprint
    handle.attrs["completed"] = 0


def embedding_width(config) -> int:
    """Channels per bin of a model's embeddings: Enformer's 2 x dim, Borzoi's final conv (dim without one)."""
    if getattr(config, "family", None) == "borzoi":
        return config.final_channels or config.dim
    return 2 * config.dim


def open_partial(path: Path, fingerprint: str, resume: bool):
    """The partial file to (re)write (through :func:`senformer.outputs.hdf5.open_hdf5`) and how many rows it
    already holds (-1: a new file). A resumed file counts only its rows up to the first one not complete."""
    if resume:
        try:
            handle = hdf5.open_hdf5(path, "a")
        except OSError:
            handle = None  # killed before the file was complete enough to open, or damaged by a fault: start again
        if handle is not None:
            try:
                if handle.attrs.get("fingerprint") == fingerprint and "completed" in handle.attrs:
                    missing = first_missing_row(handle)
                    return handle, int(handle.attrs["completed"]) if missing is None else missing[0]
            except (OSError, KeyError):
                pass
            hdf5.close(handle)
    path.unlink(missing_ok=True)
    return hdf5.open_hdf5(path, "w"), -1


def write_region(handle, job: Job, outputs: dict[str, np.ndarray], name: str,
                 identifiers: dict[str, list[str]]) -> None:
    """Store one row after checking every value finite in the stored dtype (float16; float32 for coverage): a
    refused row leaves nothing of itself."""
    stored = {}
    for output, stitched in outputs.items():
        target = handle["embeddings"] if output == "embeddings" else handle[output]["predictions"]
        with np.errstate(over="ignore"):  # an overflow is reported below, naming the region and track
            values = stitched.astype(target.dtype)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            bin_, column = (int(v) for v in bad[0])
            what = "embedding feature" if output == "embeddings" else f"head {output} track"
            label = column if output == "embeddings" else identifiers[output][column]
            kind = "NaN" if np.isnan(values[bin_, column]) else f"beyond {target.dtype}'s {np.finfo(target.dtype).max:,.0f}"
            raise UserError(f"region {name}: {what} {label} is {kind} at bin {bin_} once stored as {target.dtype}: "
                            f"the model's outputs are broken or too large for the {target.dtype} prediction file")
        stored[output] = values
    for output, values in stored.items():
        target = handle["embeddings"] if output == "embeddings" else handle[output]["predictions"]
        target[job.row, : job.plan.num_bins] = values


def row_datasets(handle) -> list[str]:
    """The datasets with one entry per row that a run writes (predictions, input digests, embeddings)."""
    heads = [name for name in handle if name not in ("regions", "embeddings")]
    return [f"{head}/predictions" for head in heads] + ["regions/bases_sha256"] + \
        (["embeddings"] if "embeddings" in handle else [])


def first_missing_row(handle) -> tuple[int, str] | None:
    """(row, dataset) of the first row that is not complete: past ``completed``, or holding a value that is
    not finite within the row's own bins (the fill of a row never written). None when every row is whole."""
    count = len(handle["regions/chrom"])
    completed = int(handle.attrs.get("completed", 0))
    if completed < count:
        return completed, "completed"
    num_bins = handle["regions/num_bins"][:]
    digests = handle["regions/bases_sha256"][:]
    for row in range(count):
        if not bytes(digests[row]).strip(b"\0"):
            return row, "regions/bases_sha256"
        for name in row_datasets(handle):
            if name == "regions/bases_sha256":
                continue
            if not np.isfinite(handle[name][row, : num_bins[row]]).all():
                return row, name
    return None


def check_complete(path: str | os.PathLike, handle=None) -> None:
    """Refuse (one :class:`UserError` line) a prediction file with a row that was never written or is not
    finite: a reader never takes the missing-value fill of an unwritten row for a prediction."""
    import h5py

    if handle is None:
        with h5py.File(path, "r") as opened:
            return check_complete(path, opened)
    missing = first_missing_row(handle)
    if missing is not None:
        row, name = missing
        count = len(handle["regions/chrom"])
        label = hdf5_strings(handle["regions/name"][row : row + 1])[0]
        what = (f"only {row} of its {count} rows were written" if name == "completed"
                else f"row {row} (region {label}) was never written or is not finite in {name}")
        raise UserError(f"{path} is not a complete prediction file: {what}")


def stale_rows(path: str | os.PathLike, genome: Genome | str | os.PathLike, rows: int | None = None) -> list[int]:
    """Rows (of the first ``rows``; all by default) of a prediction file whose recorded input bases differ
    from what ``genome`` gives for them now (a rewritten FASTA, another build under the same name)."""
    import h5py

    genome = genome if isinstance(genome, Genome) else Genome(genome)
    with h5py.File(path, "r") as handle:
        attrs = handle.attrs
        geometry = Geometry(int(attrs["sequence_length"]), int(attrs["bins"]), int(attrs["bin_size"]),
                            int(attrs["offset_bins"]))
        margin = int(attrs["margin"])
        group = handle["regions"]
        count = len(group["chrom"]) if rows is None else rows
        chroms = hdf5_strings(group["chrom"][:count])
        starts, ends = group["start"][:count], group["end"][:count]
        recorded = group["bases_sha256"][:count]
    stale = []
    for row in range(count):
        region = Interval(chroms[row], int(starts[row]), int(ends[row]))
        job = Job(row, plan_region(region, geometry))
        try:
            digests = [bases_digest(input_text(job, tile, geometry, margin, genome))
                       for tile in range(len(job.plan.tile_starts))]
        except UserError:  # the chromosome is gone, or shorter: these are not the bases the row was made from
            stale.append(row)
            continue
        if row_digest(digests) != bytes(recorded[row]):
            stale.append(row)
    return stale


def merge_parts(parts: list[Path], partial: Path, work: Work, config, options: PredictOptions,
                fingerprint: str) -> list[int]:
    """Copy the rows of finished parts, in order, into one new file ``partial``; returns each part's first row."""
    import h5py

    handle = hdf5.open_hdf5(partial, "w")
    try:
        create_layout(handle, work, config, options, fingerprint)
        names = row_datasets(handle)
        row, firsts = 0, []
        for path in parts:
            firsts.append(row)
            if path.stat().st_size == 0:
                continue  # a shard without regions
            with h5py.File(path, "r") as part:
                count = int(part.attrs["completed"])
                for name in names:
                    stored = part[name][:count]
                    # A part is as wide as its own longest region; the other bins stay NaN as in one file.
                    handle[name][(slice(row, row + count),) + tuple(slice(0, n) for n in stored.shape[1:])] = stored
            row += count
        assert row == len(work.regions), "the parts of a finished split cover every region"
        handle.attrs["completed"] = row
        hdf5.check(handle)
    finally:
        fault = hdf5.close(handle)
    if fault is not None:
        raise fault
    return firsts
