"""Predict tracks for genomic regions or for sequences given directly, streamed into HDF5 (and bigWig).

Geometry. A model input of ``L`` bp gives ``bins`` output bins of 128 bp: the central ``bins * 128`` bp
(114,688 of 196,608 for the published model). A region is predicted over its *span*: ``max(bins, ceil(width /
128))`` bins centred on the region. A span of one output window is one input window centred on the region
(N beyond chromosome ends); a longer span is tiled with windows overlapping by half an output window and
stitched, each bin taken from the window in which it is most central (bins near a window's edge see less
context).

Averaging. ``reverse_complement=True`` also predicts the reverse complement and flips its output back;
``shifts=(-1, 0, 1)`` moves the input window by those bp (genome sequence, or N for given sequences). The
result is the mean over all passes.

Output (HDF5, written to ``OUT.partial`` and renamed when complete, under the existing-output rule and lock of
:mod:`senformer.io`; a rerun resumes a partial file of the same inputs):
  ``/<head>/predictions`` float16 ``(regions, bins, tracks)`` (NaN past a shorter region's span; a value
  that is not finite once stored as float16, such as an output above 65,504, stops the run naming the region
  and track: float16 halves the file and a track that large is a broken model, not a result to store),
  ``/<head>/tracks/{index,identifier,description,assay_group}``, ``/regions/{chrom,start,end,name}``,
  ``/regions/bins_start`` (genome coordinate of each region's first bin; bin k covers
  ``[bins_start + 128 k, bins_start + 128 (k + 1))``), ``/regions/num_bins``, ``/regions/bases_sha256`` (per row, the SHA-256 of the exact input bases of its
  windows, N padding included: rows of a resumed file whose genome bases changed are computed again, and a
  complete file whose bases changed is not up to date), optional ``/embeddings``
  float16 ``(regions, bins, 2 dim)``; attributes ``settings`` (JSON), ``config`` (JSON), ``bin_size``.

Many processes (:mod:`senformer.shards`, ``sharded=``): the regions split into units of whole batches (a
unit ends where a batch of the one-process run ends with a region), each shard predicts a contiguous run of
units into its part (resuming at a unit's start, so its batches are the one-process run's), and the merge
copies the parts' rows into one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .constants import CROP_MARGIN, TFHUB_SEQUENCE_LENGTH
from .data.genome import Genome, Interval
from .data.tracks import head_track_table, select_tracks_per_head
from .errors import UserError
from .fingerprint import bases_digest, value_digest, weights_digest
from .inference import MAX_SHIFT, predict_batch, resolve_sequence_length
from .io import FILE, OutputPlan, finish_output, output_lock, plan_output, start_partial
from .predictions import hdf5_strings
from .sequence import tokens, tokens_to_one_hot
from .shards import rows_written


@dataclass(frozen=True)
class PredictOptions:
    """Everything that shapes a prediction run (stored as JSON in the output)."""

    sequence_length: int | None = None  # None: 196,608 if valid for the model, else its shortest input
    heads: tuple[str, ...] | None = None  # None: every head of the model
    tracks: str | tuple[str, ...] | None = None  # the --tracks grammar (senformer.data.tracks.select_tracks)
    targets: str | None = None  # targets.txt giving track descriptions (mouse ChIP split, custom heads)
    reverse_complement: bool = False
    shifts: tuple[int, ...] = (0,)
    batch_size: int = 1
    device: str = "cpu"
    bf16: bool = False
    embeddings: bool = False
    tfhub_input: bool = False  # given sequences are 393,216 bp; use the centre, as TF-Hub's model does

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        object.__setattr__(self, "shifts", check_shifts(self.shifts))
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(self.heads))
        if self.tracks is not None and not isinstance(self.tracks, str):
            object.__setattr__(self, "tracks", tuple(str(value) for value in self.tracks))


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


# Geometry ------------------------------------------------------------------------------------------------
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
        positions = config.num_positions(sequence_length)
        bins = config.output_length(sequence_length)
        offset = CROP_MARGIN if config.target_length is None else (positions - bins) // 2
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


# Inputs ----------------------------------------------------------------------------------------------------
@dataclass
class _Job:
    row: int
    plan: RegionPlan | None
    sequence: str | None = None  # given directly (no genome)


def _fetch_padded(genome: Genome, window: Interval, margin: int) -> str:
    return genome.fetch(Interval(window.chrom, window.start - margin, window.end + margin))


def read_sequences(path: str | os.PathLike, geometry: Geometry, tfhub_input: bool) -> list[tuple[str, str]]:
    """(name, sequence) of each FASTA record, checked (and centre-cropped with ``tfhub_input``)."""
    genome = Genome(path)
    expected = TFHUB_SEQUENCE_LENGTH if tfhub_input else geometry.sequence_length
    records = []
    for name, size in genome.sizes.items():
        if size != expected:
            hint = " (TF-Hub inputs: pass --tfhub-input)" if size == TFHUB_SEQUENCE_LENGTH and not tfhub_input else ""
            raise UserError(f"{Path(path).name}: sequence {name!r} has {size:,} bp; expected {expected:,}{hint}")
        sequence = genome.fetch(Interval(name, 0, size))
        if tfhub_input:
            trim = (size - geometry.sequence_length) // 2
            sequence = sequence[trim : trim + geometry.sequence_length]
        records.append((name, sequence))
    genome.close()
    if not records:
        raise UserError(f"{path} holds no sequences")
    return records


# Writing ---------------------------------------------------------------------------------------------------
def prediction_fingerprint(weights: str, options: PredictOptions, regions: list[Interval], names: list[str],
                           sequences: str | None = None, model_settings: dict | None = None) -> str:
    """The digest the existing-output rule compares for a prediction file.

    ``weights``: a digest of the weights (:func:`senformer.fingerprint.weights_digest` of the model, or of
    its files); ``sequences``: the digest of a FASTA of sequences. The genome is not in it: each row records
    the digest of its own input bases (``/regions/bases_sha256``), checked on resume and rerun.
    """
    return value_digest({"command": "predict", "weights": weights, "options": asdict(options),
                         "model": model_settings or {}, "regions": [[str(r), n] for r, n in zip(regions, names)],
                         "sequences": sequences})


def _string_array(values) -> np.ndarray:
    return np.array([str(v).encode("utf-8") for v in values], dtype=object)


def _create_layout(handle, regions, names, spans, geometry, heads, tables, selections, model, options, fingerprint):
    import h5py

    strings = h5py.string_dtype("utf-8")
    count = len(regions)
    max_bins = max(num_bins for _, num_bins in spans)
    group = handle.create_group("regions")
    group.create_dataset("chrom", data=_string_array(r.chrom for r in regions), dtype=strings)
    group.create_dataset("start", data=np.array([r.start for r in regions], dtype=np.int64))
    group.create_dataset("end", data=np.array([r.end for r in regions], dtype=np.int64))
    group.create_dataset("name", data=_string_array(names), dtype=strings)
    group.create_dataset("bins_start", data=np.array([start for start, _ in spans], dtype=np.int64))
    group.create_dataset("num_bins", data=np.array([num_bins for _, num_bins in spans], dtype=np.int64))
    group.create_dataset("bases_sha256", shape=(count,), dtype="S64")
    for head in heads:
        head_group = handle.create_group(head)
        chosen = selections[head]
        head_group.create_dataset(
            "predictions", shape=(count, max_bins, len(chosen)), dtype=np.float16,
            chunks=(1, max_bins, len(chosen)), fillvalue=np.float16(np.nan),
        )
        table = tables[head].iloc[chosen]
        tracks = head_group.create_group("tracks")
        tracks.create_dataset("index", data=np.asarray(chosen, dtype=np.int64))
        for column in ("identifier", "description", "assay_group"):
            tracks.create_dataset(column, data=_string_array(table[column]), dtype=strings)
    if options.embeddings:
        handle.create_dataset("embeddings", shape=(count, max_bins, 2 * model.config.dim), dtype=np.float16,
                              chunks=(1, max_bins, 2 * model.config.dim), fillvalue=np.float16(np.nan))
    handle.attrs["settings"] = json.dumps(asdict(options), sort_keys=True)
    handle.attrs["config"] = model.config.to_json()
    handle.attrs["bin_size"] = geometry.bin_size
    handle.attrs["sequence_length"] = geometry.sequence_length
    handle.attrs["bins"] = geometry.bins
    handle.attrs["offset_bins"] = geometry.offset_bins
    handle.attrs["margin"] = max(abs(shift) for shift in options.shifts)
    handle.attrs["fingerprint"] = fingerprint
    handle.attrs["completed"] = 0


def _open_partial(plan: OutputPlan):
    """The partial file to (re)write and how many regions it already holds (-1: a new file)."""
    import h5py

    if plan.resume:
        try:
            handle = h5py.File(plan.partial, "a")
        except OSError:
            handle = None  # the run was killed before the file was complete enough to open: start again
        if handle is not None:
            if handle.attrs.get("fingerprint") == plan.fingerprint and "completed" in handle.attrs:
                return handle, int(handle.attrs["completed"])
            handle.close()
    plan.partial.unlink(missing_ok=True)
    return h5py.File(plan.partial, "w"), -1


@contextlib.contextmanager
def _own_output(out: Path, fingerprint: str, overwrite: bool, settings: dict) -> Iterator[tuple[OutputPlan, dict]]:
    """For library callers: the lock and the existing-output rule (the command applies them itself, earlier)."""
    from .record import run_record

    with output_lock(out):
        plan = plan_output(out, FILE, fingerprint, overwrite)
        if plan.notice:
            print(f"senformer predict: {plan.notice}", file=sys.stderr)
        yield plan, run_record("predict", settings, {"weights": settings.get("weights")}, settings.get("device"),
                               fingerprint=fingerprint)


# Input bases ------------------------------------------------------------------------------------------------
def _input_text(job: _Job, tile: int, geometry: Geometry, margin: int, genome: Genome | None) -> str:
    """The exact bases of one model input: the window with ``margin`` bp each side, N beyond the sequence."""
    if job.sequence is not None:
        return "N" * margin + job.sequence + "N" * margin
    return _fetch_padded(genome, job.plan.input_window(tile, geometry), margin)


def _row_digest(tile_digests: list[str]) -> bytes:
    return hashlib.sha256("\n".join(tile_digests).encode()).hexdigest().encode()


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
        job = _Job(row, plan_region(region, geometry))
        try:
            digests = [bases_digest(_input_text(job, tile, geometry, margin, genome))
                       for tile in range(len(job.plan.tile_starts))]
        except UserError:  # the chromosome is gone, or shorter: these are not the bases the row was made from
            stale.append(row)
            continue
        if _row_digest(digests) != bytes(recorded[row]):
            stale.append(row)
    return stale


@dataclass
class _Work:
    """What a prediction run computes over: geometry, heads and their tracks, and the regions' plans."""

    geometry: Geometry
    heads: list[str]
    tables: dict
    selections: dict[str, np.ndarray]
    genome: Genome | None
    region_list: list[Interval]
    names: list[str]
    spans: list[tuple[int, int]]
    records: list[tuple[str, str]] | None


def _prepare(model, options: PredictOptions, genome, regions, sequences) -> _Work:
    """Check the heads, tracks, regions (known chromosome, inside it) or sequences before anything runs."""
    geometry = Geometry.of(model.config, options.sequence_length)
    heads = list(options.heads) if options.heads else list(model.config.output_heads)
    unknown = [h for h in heads if h not in model.config.output_heads]
    if unknown:
        raise UserError(f"unknown head(s) {', '.join(unknown)}; the model has {', '.join(model.config.output_heads)}")
    tables = {head: head_track_table(head, model.config.output_heads[head], options.targets) for head in heads}
    if options.targets is not None and all(table.attrs["source"] != "targets" for table in tables.values()):
        counts = ", ".join(f"{h} {model.config.output_heads[h]:,}" for h in heads)
        raise UserError(f"{options.targets} has as many rows as none of the heads' tracks ({counts})")
    selections = select_tracks_per_head(options.tracks, tables)
    heads = [h for h in heads if h in selections]  # a pattern keeps the heads where it matches

    if genome is not None:
        genome = genome if isinstance(genome, Genome) else Genome(genome)
        region_list = list(regions or [])
        if not region_list:
            raise UserError("no regions to predict (empty BED file or no --region)")
        for region in region_list:
            genome.check(region)
        names = [region.name or str(region) for region in region_list]
        spans = [region_span(region, geometry) for region in region_list]
        records = None
    else:
        records = read_sequences(sequences, geometry, options.tfhub_input)
        region_list = [Interval(name, 0, geometry.sequence_length) for name, _ in records]
        names = [name for name, _ in records]
        spans = [(geometry.offset_bins * geometry.bin_size, geometry.bins)] * len(records)

    return _Work(geometry, heads, tables, selections, genome, region_list, names, spans, records)


def predict_regions(model, genome: Genome | str | os.PathLike, regions: Iterable[Interval | str],
                    options: PredictOptions = PredictOptions(), progress: bool = False) -> list:
    """Predictions of ``regions`` in memory, for notebooks: the windows, averaging, stitching and track choice
    of :func:`predict`, in float32, without a file.

    Args:
        genome: a :class:`Genome` or a FASTA path (or ``hg38``/``mm10``).
        regions: :class:`Interval` or ``chr:start-end`` text.
        options: as for :func:`predict` (``tracks`` takes the ``--tracks`` grammar).
    Returns:
        One :class:`senformer.predictions.RegionPrediction` per region, in order: ``values[head]`` is
        ``(bins, tracks)`` float32, ``tracks[head]`` the chosen rows of the head's track table, and
        ``bins_start`` the genome coordinate of the first bin.

    >>> hbb, = predict_regions(model, "hg38", ["chr11:5,225,000-5,230,000"], PredictOptions(tracks=("CAGE:.*K562",)))
    """
    from tqdm.auto import tqdm

    from .data.genome import parse_region
    from .predictions import RegionPrediction

    intervals = [parse_region(r) if isinstance(r, str) else r for r in regions]
    work = _prepare(model, options, genome, intervals, None)
    model = model.to(options.device).eval()
    margin = max(abs(s) for s in options.shifts)
    plans = [plan_region(region, work.geometry) for region in work.region_list]
    bar = tqdm(total=sum(len(p.tile_starts) for p in plans), unit="window", disable=not progress, desc="predict")
    jobs = (_Job(row, plan) for row, plan in enumerate(plans))
    results = []
    for job, outputs, _ in _completed_regions(model, jobs, work.geometry, margin, options, work.heads,
                                              work.selections, work.genome, on_batch=bar.update):
        values = {head: outputs[head] for head in work.heads}
        for head, value in values.items():
            if not np.isfinite(value).all():
                raise UserError(f"region {work.names[job.row]}: head {head} predicts non-finite values")
        tables = {head: work.tables[head].iloc[work.selections[head]].reset_index(drop=True) for head in work.heads}
        region = work.region_list[job.row]
        results.append(RegionPrediction(Interval(region.chrom, region.start, region.end, work.names[job.row]),
                                        job.plan.span_start, work.geometry.bin_size, values, tables))
    bar.close()
    return results


# The run ---------------------------------------------------------------------------------------------------
def predict(
    model,
    out: str | os.PathLike,
    *,
    genome: Genome | str | os.PathLike | None = None,
    regions: Iterable[Interval] | None = None,
    sequences: str | os.PathLike | None = None,
    options: PredictOptions = PredictOptions(),
    bigwig_dir: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
    plan: OutputPlan | None = None,
    record: dict | None = None,
    sharded=None,
) -> Path | None:
    """Predict every region (with ``genome``) or every sequence of a FASTA (``sequences``) into HDF5 ``out``.

    All regions are checked (known chromosome, inside it) before anything is written. Results are written
    as they come to ``OUT.partial``; a rerun with the same weights, options and regions resumes it; the file
    is renamed to ``out`` when complete. An existing ``out`` follows the rule of :mod:`senformer.io`: up to
    date (and its rows' bases unchanged) is returned as it is; other inputs are refused unless ``overwrite``.
    ``plan``/``record``: the command applied the rule (holding the lock) before loading the model.
    ``bigwig_dir``: also write one bigWig per chosen track. Returns the path of the HDF5 file.
    ``sharded``: a :class:`senformer.shards.ShardedOutput` (opened, not up to date): compute its shard's part
    and merge when every part is done; returns None when other parts are still missing.
    """
    out = Path(out)
    if (genome is None) == (sequences is None):
        raise UserError("give either a genome with regions or a FASTA of sequences")
    if options.tfhub_input and sequences is None:
        raise UserError("--tfhub-input applies to sequences given directly (--sequence-fasta); regions are "
                        "resized to the model's input length anyway")
    work = _prepare(model, options, genome, regions, sequences)
    geometry, heads, tables, selections = work.geometry, work.heads, work.tables, work.selections
    genome, region_list, names, spans, records = work.genome, work.region_list, work.names, work.spans, work.records
    if bigwig_dir is not None and genome is None:
        raise UserError("bigWig output needs genome coordinates: use --fasta with regions, not --sequence-fasta")

    model = model.to(options.device).eval()
    if sharded is not None:
        return _predict_shard(sharded, model, genome, region_list, names, spans, records, geometry, heads, tables,
                              selections, options, progress)
    if plan is None:
        settings = {**asdict(options), "weights": weights_digest(model), "config": model.config.to_dict()}
        fingerprint = prediction_fingerprint(settings["weights"], options, region_list, names,
                                             _sequences_digest(sequences), settings["config"])
        with _own_output(out, fingerprint, overwrite, settings) as (own_plan, own_record):
            return _predict_into(own_plan, own_record, model, genome, region_list, names, spans, records, geometry,
                                 heads, tables, selections, options, bigwig_dir, progress)
    return _predict_into(plan, record or {}, model, genome, region_list, names, spans, records, geometry, heads,
                         tables, selections, options, bigwig_dir, progress)


def _sequences_digest(sequences) -> str | None:
    from .fingerprint import file_digest

    return None if sequences is None else file_digest(sequences)


def _predict_shard(sharded, model, genome, region_list, names, spans, records, geometry, heads, tables, selections,
                   options, progress) -> Path | None:
    """One shard's part (its units: regions whose windows fill whole batches), then the merge if it is last."""
    from .shards import unit_starts

    sizes = [len(tile_offsets(num_bins, geometry.bins)) for _, num_bins in spans]  # windows per region
    starts = unit_starts(sizes, options.batch_size)
    bounds = starts + [len(region_list)]
    with sharded.part(len(starts)) as part:
        if not part.done:
            rows = slice(bounds[part.first], bounds[part.stop])
            _predict_into(part.plan, part.record, model, genome, region_list[rows], names[rows], spans[rows],
                          records[rows] if records is not None else None, geometry, heads, tables, selections,
                          options, None, progress,
                          unit_starts=[start - rows.start for start in starts[part.first : part.stop]])

    def merge(parts: list[Path], part_records: list[dict], partial: Path) -> dict:
        import h5py

        with h5py.File(partial, "w") as handle:
            _create_layout(handle, region_list, names, spans, geometry, heads, tables, selections, model, options,
                           sharded.fingerprint)
            row_datasets = [f"{head}/predictions" for head in heads] + ["regions/bases_sha256"]
            row_datasets += ["embeddings"] if options.embeddings else []
            row, part_rows = 0, []
            for path in parts:
                part_rows.append(row)
                if path.stat().st_size == 0:
                    continue  # a shard without regions
                with h5py.File(path, "r") as part_handle:
                    count = int(part_handle.attrs["completed"])
                    for name in row_datasets:
                        stored = part_handle[name][:count]
                        # A part is as wide as its own longest region; the other bins stay NaN as in one file.
                        handle[name][(slice(row, row + count),) + tuple(slice(0, n) for n in stored.shape[1:])] = stored
                row += count
            assert row == len(region_list), "the parts of a finished split cover every region"
            handle.attrs["completed"] = row
        if genome is not None:  # parts finished long ago must still hold the genome's bases
            changed = stale_rows(partial, genome)
            if changed:
                index = max(k for k, first in enumerate(part_rows) if first <= changed[0])
                sharded.refuse_stale_part(index, f"region {names[changed[0]]}")
        return {}

    return sharded.merge(merge)


def _predict_into(plan, record, model, genome, region_list, names, spans, records, geometry, heads, tables,
                  selections, options, bigwig_dir, progress, unit_starts=None) -> Path:
    out = plan.out
    margin = max(abs(s) for s in options.shifts)
    if plan.up_to_date:
        if genome is not None:
            changed = stale_rows(out, genome)
            if changed:
                raise UserError(f"{out} was computed from other bases than {Path(genome.path).name} gives now "
                                f"(region {names[changed[0]]} and {len(changed) - 1} more): the genome changed; "
                                "pass --overwrite to compute it again")
        if bigwig_dir is not None:
            write_bigwigs(out, bigwig_dir, genome.sizes)
        return out

    def jobs(first: int) -> Iterator[_Job]:
        """Plans are made as the regions are reached: a large BED costs no memory per region."""
        for row in range(first, len(region_list)):
            if records is None:
                yield _Job(row, plan_region(region_list[row], geometry))
            else:
                plan_ = RegionPlan(region_list[row], spans[row][0], geometry.bins, (0,),
                                   np.zeros(geometry.bins, dtype=np.int64), geometry.bin_size)
                yield _Job(row, plan_, records[row][1])

    if not plan.resume:
        start_partial(plan, record)
    handle, completed = _open_partial(plan)
    try:
        if completed < 0:
            _create_layout(handle, region_list, names, spans, geometry, heads, tables, selections, model, options,
                           plan.fingerprint)
            completed = 0
        elif completed and genome is not None:
            handle.close()
            changed = stale_rows(plan.partial, genome, completed)
            handle = h5py_open(plan.partial)
            if changed:
                print(f"senformer predict: {plan.partial}: region {names[changed[0]]} was computed from other "
                      f"bases than {Path(genome.path).name} gives now: computing from there again", file=sys.stderr)
                completed = changed[0]
                handle.attrs["completed"] = completed
        if unit_starts and completed > 0:
            # A shard resumes at a unit's start, so its batches are those of the one-process run, bit for bit.
            completed = max(start for start in unit_starts if start <= completed)
            handle.attrs["completed"] = completed
        identifiers = {head: list(tables[head].iloc[selections[head]]["identifier"]) for head in heads}
        windows = [len(tile_offsets(num_bins, geometry.bins)) for _, num_bins in spans]
        _run_jobs(model, handle, jobs(completed), geometry, margin, options, heads, selections, genome, progress,
                  total=sum(windows), done=sum(windows[:completed]), names=names, identifiers=identifiers)
    finally:
        handle.close()
    finish_output(plan, record)
    if bigwig_dir is not None:
        write_bigwigs(out, bigwig_dir, genome.sizes)
    return out


def h5py_open(path: Path):
    import h5py

    return h5py.File(path, "a")


def _windows(jobs: Iterable[_Job], geometry: Geometry) -> Iterator[tuple[_Job, int]]:
    for job in jobs:
        for tile in range(len(job.plan.tile_starts)):
            yield job, tile


def _completed_regions(model, jobs: Iterable[_Job], geometry: Geometry, margin: int, options: PredictOptions,
                       heads, selections, genome: Genome | None, on_batch=None) -> Iterator[tuple[_Job, dict, bytes]]:
    """Run the windows of ``jobs`` in batches of ``options.batch_size`` through the inference module and yield
    ``(job, {output: (num_bins, channels) float32, stitched}, digest of its windows' bases)`` for each region
    as its last window is done, in region order. ``on_batch(windows)`` is called after each batch."""
    pending: dict[int, dict[str, list]] = {}
    batch: list[tuple[_Job, int]] = []

    def run() -> list[tuple[_Job, dict, bytes]]:
        texts = [_input_text(job, tile, geometry, margin, genome) for job, tile in batch]
        one_hot = tokens_to_one_hot(torch.from_numpy(np.stack([tokens(t) for t in texts]).astype(np.int64)))
        outputs = predict_batch(model, one_hot, heads=heads, tracks=selections, margin=margin,
                                reverse_complement=options.reverse_complement, shifts=options.shifts,
                                bf16=options.bf16, device=options.device, embeddings=options.embeddings)
        completed = []
        for index, (job, tile) in enumerate(batch):
            store = pending.setdefault(job.row, {})
            tiles = len(job.plan.tile_starts)
            store.setdefault(_BASES, [None] * tiles)[tile] = bases_digest(texts[index])
            for name, value in outputs.items():
                store.setdefault(name, [None] * tiles)[tile] = value[index].numpy()
            if all(tile is not None for tiles in store.values() for tile in tiles):
                row = pending.pop(job.row)
                digest = _row_digest(row.pop(_BASES))
                completed.append((job, {name: _stitch(tiles, job.plan) for name, tiles in row.items()}, digest))
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()
        return completed

    for item in _windows(jobs, geometry):
        batch.append(item)
        if len(batch) == options.batch_size:
            yield from run()
    if batch:
        yield from run()


def _run_jobs(model, handle, jobs, geometry, margin, options, heads, selections, genome, progress, total, done,
              names, identifiers):
    from tqdm.auto import tqdm

    # The bar counts input windows (a long region tiles into several); each window runs once per strand and
    # shift, which the label says when it is more than one pass.
    passes = len(options.shifts) * (2 if options.reverse_complement else 1)
    label = "predict" if passes == 1 else f"predict ({passes} passes per window)"
    bar = tqdm(total=total, initial=done, unit="window", disable=not progress, desc=label)
    for job, outputs, digest in _completed_regions(model, jobs, geometry, margin, options, heads, selections,
                                                   genome, on_batch=bar.update):
        handle["regions/bases_sha256"][job.row] = digest
        _write_region(handle, job, outputs, geometry, names[job.row], identifiers)
        handle.attrs["completed"] = job.row + 1
        handle.flush()
        rows_written(1)
    bar.close()


def _stitch(tiles: list[np.ndarray], plan: RegionPlan) -> np.ndarray:
    """(num_bins, channels): each bin from the tile where it is most central."""
    if len(tiles) == 1:
        return tiles[0]
    stacked = np.stack(tiles)  # (tiles, bins, channels)
    bins = np.arange(plan.num_bins)
    offsets = np.asarray(plan.tile_offsets)[plan.bin_tile]
    return stacked[plan.bin_tile, bins - offsets]


_BASES = "\0bases"  # the per-tile input digests beside the outputs of a pending row


def _write_region(handle, job: _Job, outputs: dict[str, np.ndarray], geometry: Geometry, name: str,
                  identifiers: dict[str, list[str]]) -> None:
    stored = {}
    for output, stitched in outputs.items():
        with np.errstate(over="ignore"):  # an overflow is reported below, naming the region and track
            values = stitched.astype(np.float16)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            bin_, column = (int(v) for v in bad[0])
            what = "embedding feature" if output == "embeddings" else f"head {output} track"
            label = column if output == "embeddings" else identifiers[output][column]
            kind = "NaN" if np.isnan(values[bin_, column]) else "beyond float16's 65,504"
            raise UserError(f"region {name}: {what} {label} is {kind} at bin {bin_} once stored as float16: the "
                            "model's outputs are broken or too large for the float16 prediction file")
        stored[output] = values
    # Every output is checked before any is written, so a refused row leaves nothing of itself in the file.
    for output, values in stored.items():
        target = handle["embeddings"] if output == "embeddings" else handle[output]["predictions"]
        target[job.row, : job.plan.num_bins] = values


# bigWig ----------------------------------------------------------------------------------------------------
def write_bigwigs(h5_path: str | os.PathLike, out_dir: str | os.PathLike, chrom_sizes: dict[str, int]) -> list[Path]:
    """One bigWig per head and chosen track of a finished prediction file, 128-bp bins at genome
    coordinates; where regions overlap their predictions are averaged (a bin not on the 128-bp grid is
    split over the two grid bins it covers, weighted by overlap)."""
    import h5py

    try:
        import pybigtools
    except ImportError:
        raise UserError("bigWig output needs pybigtools: pip install 'senformer[bigwig]'") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with h5py.File(h5_path, "r") as handle:
        bin_size = int(handle.attrs["bin_size"])
        chroms = hdf5_strings(handle["regions/chrom"][:])
        bins_start = handle["regions/bins_start"][:]
        num_bins = handle["regions/num_bins"][:]
        heads = [name for name in handle if name not in ("regions", "embeddings")]
        for head in heads:
            predictions = handle[head]["predictions"]
            identifiers = hdf5_strings(handle[head]["tracks/identifier"][:])
            indices = handle[head]["tracks/index"][:]
            for column, (track, identifier) in enumerate(zip(indices, identifiers)):
                sums: dict[str, np.ndarray] = {}
                weights: dict[str, np.ndarray] = {}
                for row in range(len(chroms)):
                    chrom = chroms[row]
                    grid = math.ceil(chrom_sizes[chrom] / bin_size)
                    sums.setdefault(chrom, np.zeros(grid + 1))
                    weights.setdefault(chrom, np.zeros(grid + 1))
                    values = predictions[row, : num_bins[row], column].astype(np.float64)
                    starts = bins_start[row] + bin_size * np.arange(num_bins[row])
                    first, remainder = np.divmod(starts, bin_size)
                    for grid_bin, weight in ((first, (bin_size - remainder) / bin_size), (first + 1, remainder / bin_size)):
                        keep = (grid_bin >= 0) & (grid_bin < grid) & (weight > 0)
                        np.add.at(sums[chrom], grid_bin[keep], weight[keep] * values[keep])
                        np.add.at(weights[chrom], grid_bin[keep], weight[keep])
                safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", identifier)
                path = out_dir / f"{head}_{track}_{safe}.bw"

                def entries(sums=sums, weights=weights):
                    for chrom in sorted(sums):
                        covered = np.flatnonzero(weights[chrom][:-1] > 0)
                        for grid_bin in covered:
                            start = int(grid_bin) * bin_size
                            end = min(start + bin_size, chrom_sizes[chrom])
                            yield chrom, start, end, float(sums[chrom][grid_bin] / weights[chrom][grid_bin])

                # pybigtools picks the format from the extension, so the temporary name keeps ".bw".
                temporary = path.with_name(f".{path.stem}.partial.bw")
                try:
                    pybigtools.open(str(temporary), "w").write(dict(chrom_sizes), entries())
                    os.replace(temporary, path)
                except BaseException:
                    temporary.unlink(missing_ok=True)
                    raise
                written.append(path)
    return written
