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

Output (HDF5, written to ``OUT.partial`` and renamed when complete; a rerun resumes a partial file):
  ``/<head>/predictions`` float16 ``(regions, bins, tracks)`` (NaN past a shorter region's span),
  ``/<head>/tracks/{index,identifier,description,assay_group}``, ``/regions/{chrom,start,end,name}``,
  ``/regions/bins_start`` (genome coordinate of each region's first bin; bin k covers
  ``[bins_start + 128 k, bins_start + 128 (k + 1))``), ``/regions/num_bins``, optional ``/embeddings``
  float16 ``(regions, bins, 2 dim)``; attributes ``settings`` (JSON), ``config`` (JSON), ``bin_size``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .constants import CROP_MARGIN, TFHUB_SEQUENCE_LENGTH
from .data.genome import Genome, Interval
from .data.tracks import head_track_table, select_tracks_per_head
from .errors import UserError
from .inference import predict_batch, resolve_sequence_length
from .sequence import tokens, tokens_to_one_hot


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
        if not self.shifts:
            raise UserError("shifts must hold at least one value (0 for no shift)")
        object.__setattr__(self, "shifts", tuple(int(s) for s in self.shifts))
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(self.heads))
        if self.tracks is not None and not isinstance(self.tracks, str):
            object.__setattr__(self, "tracks", tuple(str(value) for value in self.tracks))


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


def plan_region(region: Interval, geometry: Geometry) -> RegionPlan:
    """Span and tiles of ``region``: one centred window, or half-overlapping windows stitched by centrality."""
    size, window = geometry.bin_size, geometry.bins
    span_start, num_bins = region_span(region, geometry)
    stride = max(1, window // 2)
    offsets = sorted({*range(0, num_bins - window + 1, stride), num_bins - window})  # in bins
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
def _fingerprint(model, options: PredictOptions, regions: list[Interval], names: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(options), sort_keys=True).encode())
    digest.update(model.config.to_json().encode())
    with torch.no_grad():
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().flatten()[:16].cpu().to(torch.float64).numpy().tobytes())
    for region, name in zip(regions, names):
        digest.update(f"{region}\t{name}\n".encode())
    return digest.hexdigest()


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
    handle.attrs["fingerprint"] = fingerprint
    handle.attrs["completed"] = 0


def _open_output(out: Path, fingerprint: str):
    """The partial file to (re)write and how many regions it already holds."""
    import h5py

    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        try:
            handle = h5py.File(partial, "a")
            if handle.attrs.get("fingerprint") == fingerprint:
                return handle, partial, int(handle.attrs["completed"])
            handle.close()
        except OSError:
            pass  # a partial file that was cut mid-write: start again
        partial.unlink()
    return h5py.File(partial, "w"), partial, -1


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
) -> Path:
    """Predict every region (with ``genome``) or every sequence of a FASTA (``sequences``) into HDF5 ``out``.

    All regions are checked (known chromosome, inside it) before anything is written. Results are written
    as they come to ``OUT.partial``; a rerun with the same model, options and regions resumes it; the file
    is renamed to ``out`` when complete. ``bigwig_dir``: also write one bigWig per chosen track.
    Returns the path of the HDF5 file.
    """
    out = Path(out)
    if (genome is None) == (sequences is None):
        raise UserError("give either a genome with regions or a FASTA of sequences")
    if options.tfhub_input and sequences is None:
        raise UserError("--tfhub-input applies to sequences given directly (--sequence-fasta); regions are "
                        "resized to the model's input length anyway")
    geometry = Geometry.of(model.config, options.sequence_length)
    margin = max(abs(s) for s in options.shifts)
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
        if bigwig_dir is not None:
            raise UserError("bigWig output needs genome coordinates: use --fasta with regions, not --sequence-fasta")
        records = read_sequences(sequences, geometry, options.tfhub_input)
        region_list = [Interval(name, 0, geometry.sequence_length) for name, _ in records]
        names = [name for name, _ in records]
        spans = [(geometry.offset_bins * geometry.bin_size, geometry.bins)] * len(records)

    def jobs(first: int) -> Iterator[_Job]:
        """Plans are made as the regions are reached: a large BED costs no memory per region."""
        for row in range(first, len(region_list)):
            if records is None:
                yield _Job(row, plan_region(region_list[row], geometry))
            else:
                plan = RegionPlan(region_list[row], spans[row][0], geometry.bins, (0,),
                                  np.zeros(geometry.bins, dtype=np.int64), geometry.bin_size)
                yield _Job(row, plan, records[row][1])

    model = model.to(options.device).eval()
    fingerprint = _fingerprint(model, options, region_list, names)
    handle, partial, completed = _open_output(out, fingerprint)
    try:
        if completed < 0:
            _create_layout(handle, region_list, names, spans, geometry, heads, tables, selections, model, options, fingerprint)
            completed = 0
        _run_jobs(model, handle, jobs(completed), geometry, margin, options, heads, selections, genome, progress,
                  total=len(region_list), done=completed)
    finally:
        handle.close()
    os.replace(partial, out)
    if bigwig_dir is not None:
        write_bigwigs(out, bigwig_dir, genome.sizes)
    return out


def _windows(jobs: Iterable[_Job], geometry: Geometry) -> Iterator[tuple[_Job, int]]:
    for job in jobs:
        for tile in range(len(job.plan.tile_starts)):
            yield job, tile


def _run_jobs(model, handle, jobs, geometry, margin, options, heads, selections, genome, progress, total, done):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, unit="region", disable=not progress, desc="predict")
    pending: dict[int, dict[str, list]] = {}
    batch: list[tuple[_Job, int]] = []

    def flush() -> None:
        if not batch:
            return
        texts = []
        for job, tile in batch:
            if job.sequence is not None:
                texts.append("N" * margin + job.sequence + "N" * margin)
            else:
                texts.append(_fetch_padded(genome, job.plan.input_window(tile, geometry), margin))
        one_hot = tokens_to_one_hot(torch.from_numpy(np.stack([tokens(t) for t in texts]).astype(np.int64)))
        outputs = predict_batch(model, one_hot, heads=heads, tracks=selections, margin=margin,
                                reverse_complement=options.reverse_complement, shifts=options.shifts,
                                bf16=options.bf16, device=options.device, embeddings=options.embeddings)
        for index, (job, tile) in enumerate(batch):
            store = pending.setdefault(job.row, {})
            for name, value in outputs.items():
                store.setdefault(name, [None] * len(job.plan.tile_starts))[tile] = value[index].numpy()
            if all(tile is not None for tiles in store.values() for tile in tiles):
                _write_region(handle, job, pending.pop(job.row), geometry)
                handle.attrs["completed"] = job.row + 1
                bar.update(1)
        handle.flush()
        batch.clear()

    for item in _windows(jobs, geometry):
        batch.append(item)
        if len(batch) == options.batch_size:
            flush()
    flush()
    bar.close()


def _stitch(tiles: list[np.ndarray], plan: RegionPlan) -> np.ndarray:
    """(num_bins, channels): each bin from the tile where it is most central."""
    if len(tiles) == 1:
        return tiles[0]
    stacked = np.stack(tiles)  # (tiles, bins, channels)
    bins = np.arange(plan.num_bins)
    offsets = np.asarray(plan.tile_offsets)[plan.bin_tile]
    return stacked[plan.bin_tile, bins - offsets]


def _write_region(handle, job: _Job, outputs: dict[str, list[np.ndarray]], geometry: Geometry) -> None:
    for name, tiles in outputs.items():
        values = _stitch(tiles, job.plan)
        target = handle["embeddings"] if name == "embeddings" else handle[name]["predictions"]
        target[job.row, : job.plan.num_bins] = values.astype(np.float16)


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
        chroms = [c.decode() if isinstance(c, bytes) else c for c in handle["regions/chrom"][:]]
        bins_start = handle["regions/bins_start"][:]
        num_bins = handle["regions/num_bins"][:]
        heads = [name for name in handle if name not in ("regions", "embeddings")]
        for head in heads:
            predictions = handle[head]["predictions"]
            identifiers = [v.decode() if isinstance(v, bytes) else v for v in handle[head]["tracks/identifier"][:]]
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
