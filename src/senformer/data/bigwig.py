"""Users' own tracks: build a Basenji2-layout dataset from a genome FASTA, regions and bigWig files.

Targets are made as ``basenji_data_read.py`` does: per-bp coverage (uncovered bases count as 0) over the
central ``seq_length - 2 crop_bp`` of each region, pooled per ``pool_width`` bin by ``sum_stat``
(``sum``, ``mean``, ``sum_sqrt`` = sqrt(1 + sum) - 1, ``mean_sqrt``, ``median``, ``max``), soft-clipped
(``clip_soft + sqrt(x - clip_soft)`` above ``clip_soft``) when asked, hard-clipped at ``clip``, multiplied by
``scale``, stored as float16. Regions come from a BED file (resized around their centre) or from tiling
the chromosomes; the split is the BED's 4th column or chosen by chromosome (``valid_chroms``,
``test_chroms``, the rest train). Reading bigWig needs ``pybigtools`` (``pip install senformer[bigwig]``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from .basenji import SPLITS, BasenjiWriter

SUM_STATS = ("sum", "mean", "sum_sqrt", "mean_sqrt", "median", "max")


@dataclass(frozen=True)
class TrackSpec:
    """One output track: a bigWig file and how its coverage becomes bin values."""

    identifier: str
    file: str
    description: str
    sum_stat: str = "mean"
    clip: float | None = 32.0
    scale: float = 1.0
    clip_soft: float | None = None

    def __post_init__(self) -> None:
        if self.sum_stat not in SUM_STATS:
            raise UserError(f"track {self.identifier!r}: sum_stat {self.sum_stat!r} is not one of {', '.join(SUM_STATS)}")


def read_track_sheet(path: str | os.PathLike) -> list[TrackSpec]:
    """Tracks from a tab-separated sheet in ``targets.txt`` style: columns ``identifier``, ``file`` (bigWig
    path, relative to the sheet), ``description``, and optional ``sum_stat``, ``clip``, ``scale``, ``clip_soft``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track sheet not found: {path}")
    try:
        table = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a tab-separated track sheet ({error})") from None
    missing = [c for c in ("identifier", "file", "description") if c not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(table.columns)}")
    specs = []
    for row_number, row in table.iterrows():
        file = Path(row["file"])
        file = file if file.is_absolute() else path.parent / file
        where = f"{path}: row {row_number}"
        specs.append(TrackSpec(
            identifier=row["identifier"], file=str(file), description=row["description"],
            sum_stat=str(row.get("sum_stat", "") or "mean"), clip=_sheet_number(row, "clip", 32.0, where),
            scale=_sheet_number(row, "scale", 1.0, where), clip_soft=_sheet_number(row, "clip_soft", None, where),
        ))
    return specs


def _sheet_number(row: pd.Series, column: str, default: float | None, where: str) -> float | None:
    text = str(row.get(column, "")).strip()
    if text in ("", "None", "none", "."):
        return default
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{where}: {column} {text!r} is not a number") from None


# How ``*_sqrt`` statistics squash a bin's value: Basenji's ``sqrt(1 + x) - 1``, or the power 3/4 the published
# Borzoi models were trained on (baskerville ``hound_data_read --transform_old``; undone by
# :func:`senformer.data.borzoi_targets.undo_squashed_scale`).
ROOTS = {"basenji": lambda x: np.sqrt(1.0 + x) - 1.0, "borzoi": lambda x: x**0.75}


def bin_coverage(
    coverage: np.ndarray, pool_width: int, sum_stat: str = "mean", clip: float | None = None,
    scale: float = 1.0, clip_soft: float | None = None, root: str = "basenji",
) -> np.ndarray:
    """Per-bp coverage ``(..., length)`` (NaN = uncovered = 0) -> bin values ``(..., length / pool_width)``
    float32, as Basenji computes its targets (pool, soft clip, clip, scale); ``root`` names the squash of
    ``*_sqrt`` statistics (:data:`ROOTS`)."""
    if root not in ROOTS:
        raise ValueError(f"root {root!r} is not one of {', '.join(ROOTS)}")
    coverage = np.nan_to_num(np.asarray(coverage, dtype=np.float32), nan=0.0)
    if coverage.ndim < 1 or coverage.shape[-1] % pool_width:
        raise ValueError(f"coverage of shape {coverage.shape} is not a 1-D multiple of pool_width {pool_width} "
                         "along its last axis")
    bins = coverage.reshape(*coverage.shape[:-1], -1, pool_width)
    if sum_stat == "sum":
        values = bins.sum(axis=-1, dtype=np.float32)
    elif sum_stat == "sum_sqrt":
        values = ROOTS[root](bins.sum(axis=-1, dtype=np.float32))
    elif sum_stat == "mean":
        values = bins.mean(axis=-1, dtype=np.float32)
    elif sum_stat == "mean_sqrt":
        values = ROOTS[root](bins.mean(axis=-1, dtype=np.float32))
    elif sum_stat == "median":
        values = np.median(bins, axis=-1).astype(np.float32)
    elif sum_stat == "max":
        values = bins.max(axis=-1)
    else:
        raise ValueError(f"sum_stat {sum_stat!r} is not one of {', '.join(SUM_STATS)}")
    if clip_soft is not None:
        above = values > clip_soft
        values[above] = clip_soft + np.sqrt(values[above] - clip_soft)
    if clip is not None:
        values = np.clip(values, -clip, clip)
    return (scale * values).astype(np.float32)


def tile_regions(
    sizes: dict[str, int], seq_length: int, stride: int | None = None, chroms: Sequence[str] | None = None,
    valid_chroms: Sequence[str] = (), test_chroms: Sequence[str] = (),
) -> list[tuple[str, int, int, str]]:
    """Windows of ``seq_length`` bp every ``stride`` bp (default: no overlap) inside each chromosome, with
    the split chosen by chromosome. Returns ``(chrom, start, end, split)`` rows."""
    stride = stride or seq_length
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    chosen = list(chroms) if chroms else list(sizes)
    unknown = [c for c in [*chosen, *valid_chroms, *test_chroms] if c not in sizes]
    if unknown:
        raise UserError(f"unknown chromosome(s) {', '.join(unknown)}; the genome has {', '.join(list(sizes)[:10])}...")
    rows = []
    for chrom in chosen:
        split = "test" if chrom in test_chroms else "valid" if chrom in valid_chroms else "train"
        for start in range(0, sizes[chrom] - seq_length + 1, stride):
            rows.append((chrom, start, start + seq_length, split))
    return rows


def regions_from_bed(
    path: str | os.PathLike, seq_length: int, valid_chroms: Sequence[str] = (), test_chroms: Sequence[str] = (),
) -> list[tuple[str, int, int, str]]:
    """BED regions (read by :func:`senformer.data.genome.read_bed`, so with its checks) resized to
    ``seq_length`` around their centres; split from a 4th column in train/valid/test, else by chromosome."""
    from .genome import read_bed

    rows = []
    for interval in read_bed(path):
        if interval.name in SPLITS:
            split = interval.name
        else:
            split = "test" if interval.chrom in test_chroms else "valid" if interval.chrom in valid_chroms else "train"
        resized = interval.resize(seq_length)
        rows.append((interval.chrom, resized.start, resized.end, split))
    if not rows:
        raise UserError(f"{path}: no regions")
    return rows


@contextlib.contextmanager
def _library_stderr_silenced():
    """pybigtools' Rust code writes its own "Error when opening" line to file descriptor 2 before raising;
    the exception becomes the one line the user sees, so that text is dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_bigwigs(tracks: Sequence[TrackSpec]):
    try:
        import pybigtools
    except ImportError:
        raise UserError("reading bigWig files needs pybigtools: pip install 'senformer[bigwig]'") from None
    handles = []
    for track in tracks:
        if not Path(track.file).is_file():
            raise FileNotFoundError(f"bigWig file of track {track.identifier!r} not found: {track.file}")
        try:
            with _library_stderr_silenced():
                handles.append(pybigtools.open(str(track.file)))
        except Exception as error:  # pybigtools raises plain exceptions for non-bigWig files
            raise UserError(f"{track.file}: not a readable bigWig ({error})") from None
    return handles


def match_chromosomes(genome, tracks: Sequence[TrackSpec], handles) -> list[dict[str, str]]:
    """Per bigWig, ``{FASTA chromosome: bigWig chromosome}`` by exact name, else by
    :func:`senformer.data.genome.chromosome_alias` (``1``/``chr1``, ``MT``/``chrM``; said in one line).

    A bigWig that shares no chromosome with the FASTA is refused (it would give an all-zero track); partial
    overlap and chromosome sizes that differ from the FASTA's (another assembly?) are warned about with counts.
    """
    from .genome import chromosome_alias

    fasta = Path(genome.path).name
    matches = []
    for track, handle in zip(tracks, handles):
        sizes = dict(handle.chroms())
        names, aliased = {}, 0
        for chrom in genome.sizes:
            if chrom in sizes:
                names[chrom] = chrom
            elif (alias := chromosome_alias(chrom, sizes)) is not None:
                names[chrom], aliased = alias, aliased + 1
        label = Path(track.file).name
        if not names:
            shown = ", ".join(list(sizes)[:4]) or "none"
            raise UserError(f"{label} shares no chromosome with {fasta} (bigWig: {shown}; FASTA: "
                            f"{', '.join(list(genome.sizes)[:4])}): another assembly or naming?")
        if aliased:
            example = next(c for c, b in names.items() if c != b)
            print(f"senformer: note: {label} names chromosomes differently from {fasta}; reading {example!r} as "
                  f"{names[example]!r} ({aliased} chromosome(s) mapped)", file=sys.stderr)
        if len(names) < len(genome.sizes):
            print(f"senformer: warning: {label} covers {len(names)} of the {len(genome.sizes)} chromosomes of {fasta}; "
                  f"the others get zero targets", file=sys.stderr)
        differing = [c for c, b in names.items() if sizes[b] != genome.sizes[c]]
        if differing:
            c = differing[0]
            print(f"senformer: warning: {len(differing)} chromosome(s) of {label} differ in size from {fasta} "
                  f"(e.g. {c}: {sizes[names[c]]:,} vs {genome.sizes[c]:,} bp): another assembly?", file=sys.stderr)
        matches.append(names)
    return matches


def _coverage(handle, chrom: str, start: int, end: int, chrom_sizes: dict[str, int]) -> np.ndarray:
    """Per-bp coverage of [start, end) with 0 for uncovered bases, chromosomes missing from the file and
    positions beyond the chromosome ends (``chrom`` is the bigWig's own name)."""
    values = np.zeros(end - start, dtype=np.float32)
    size = chrom_sizes.get(chrom)
    if size is None:
        return values
    inner_start, inner_end = max(start, 0), min(end, size)
    if inner_end > inner_start:
        try:
            read = handle.values(chrom, inner_start, inner_end, fillna=0.0)
        except TypeError:  # pybigtools < 0.3 names it ``missing``
            read = handle.values(chrom, inner_start, inner_end, missing=0.0)
        read = np.asarray(read, dtype=np.float32)
        values[inner_start - start : inner_end - start] = np.nan_to_num(read, nan=0.0)
    return values


def make_from_bigwig(
    out_dir: str | os.PathLike,
    genome,
    tracks: Sequence[TrackSpec],
    regions: Iterable[tuple[str, int, int, str]],
    seq_length: int,
    crop_bp: int,
    pool_width: int = 128,
    records_per_file: int = 256,
    progress: bool = False,
    root: str = "basenji",
) -> Path:
    """Write a Basenji2 directory from bigWig tracks.

    Args:
        out_dir: output directory.
        genome: :class:`senformer.data.genome.Genome` (or a FASTA path) for the sequences.
        tracks: one :class:`TrackSpec` per target column.
        regions: ``(chrom, start, end, split)`` of ``seq_length`` bp each, e.g. from :func:`tile_regions`.
        seq_length, crop_bp, pool_width: the geometry (Basenji2: 131,072, 8,192, 128; Borzoi: 524,288,
            512 (its 16 cropped bins), 32).
        root: the squash of ``*_sqrt`` tracks (:data:`ROOTS`): ``borzoi`` for the published Borzoi models'
            targets (their track tables' ``sum_sqrt`` rows).
    """
    import torch

    from ..sequence import one_hot
    from .basenji import _open_genome
    from .genome import Interval

    if not tracks:
        raise UserError("no tracks given")
    genome = _open_genome(genome)
    handles = _open_bigwigs(tracks)
    sizes = [dict(handle.chroms()) for handle in handles]
    names = match_chromosomes(genome, tracks, handles)
    targets = pd.DataFrame({
        "identifier": [t.identifier for t in tracks], "file": [t.file for t in tracks],
        "clip": [t.clip if t.clip is not None else "" for t in tracks], "scale": [t.scale for t in tracks],
        "sum_stat": [t.sum_stat for t in tracks], "description": [t.description for t in tracks],
    })
    rows = sorted(regions, key=lambda row: SPLITS.index(row[3]) if row[3] in SPLITS else len(SPLITS))
    if not rows:
        raise UserError("no regions to write")
    from tqdm.auto import tqdm

    with BasenjiWriter(out_dir, targets, seq_length, crop_bp, pool_width, records_per_file) as writer:
        for chrom, start, end, split in tqdm(rows, disable=not progress, unit="region", desc="from-bigwig"):
            if end - start != seq_length:
                raise UserError(f"region {chrom}:{start}-{end} is {end - start} bp, expected {seq_length}")
            sequence = genome.fetch(Interval(chrom, start, end))
            chrom = genome.resolve(chrom)
            target = np.stack([
                bin_coverage(_coverage(handle, mapping.get(chrom, chrom), start + crop_bp, end - crop_bp, size),
                             pool_width, track.sum_stat, track.clip, track.scale, track.clip_soft, root)
                for handle, size, mapping, track in zip(handles, sizes, names, tracks)
            ], axis=1)
            writer.add(split, (chrom, start, end), one_hot(sequence, torch.bool).numpy(), target)
    return Path(out_dir)


def binned_signal(file: str | os.PathLike, chrom: str, start: int, bins: int, bin_size: int = 128) -> np.ndarray:
    """Mean signal of a bigWig over ``bins`` bins of ``bin_size`` bp from ``start`` (``(bins,)`` float32;
    uncovered bases and positions off the chromosome count as 0). ``chrom`` is matched by the one naming rule
    (:func:`senformer.data.genome.chromosome_alias`), so an Ensembl-named bigWig serves a UCSC-named region."""
    from .genome import chromosome_alias

    (handle,) = _open_bigwigs([TrackSpec(Path(file).stem, str(file), "")])
    sizes = dict(handle.chroms())
    name = chrom if chrom in sizes else chromosome_alias(chrom, sizes) or chrom
    coverage = _coverage(handle, name, start, start + bins * bin_size, sizes)
    return bin_coverage(coverage, bin_size, "mean")
