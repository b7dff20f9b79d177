"""Variant effect scores from a VCF/BCF: the predicted change of every chosen track, alt minus ref.

Windows. Every scored allele is an edit of a reference window of the model's input length:

- variant-centred (default): the window puts the variant's first base at input index ``L // 2``, and the
  alternative keeps the left flank and that first base fixed and refills the right flank from the genome
  (an indel shifts only the right side). ``cluster_bp = N`` lets consecutive variants of one chromosome
  within N bp share one window centred between them, so its reference trunk and prediction are computed
  once for all of them (a multi-allelic site shares one window even with N = 0);
- anchored (``anchors``, e.g. genes' TSSs from a BED file): one window per anchor with the anchor at input
  index ``L // 2``, and every variant whose first base lies within ``max_distance`` bp of the anchor scored
  against it. An indel refills the flank on the far side of the variant from the anchor, so the anchor
  stays in its bin.

Each window runs through :class:`senformer.edits.EditEngine` (``plain=True``: every edited window whole), so
the reference conv trunk is computed once per window and pass, and only the positions an edit reaches are
computed again; predictions are averaged over the reverse complement and ``shifts`` and accumulated in
float64 from per-pass outputs.

Scores per allele and chosen track (:data:`STATS`):

- ``SAD``: (alt - ref) summed over all output bins (Enformer's SNP activity difference);
- ``center``: (alt - ref) summed over the ``center_bins`` bins around the variant (anchored: the anchor);
- ``logSAD``: log2((sum alt + 1) / (sum ref + 1));
- ``D2``: the L2 norm over bins of (alt - ref);
- ``REF``, ``ALT``: the predictions summed over bins.

Rows. One row per allele and window in the order the windows are made (VCF order; anchored: BED order,
then VCF order), keyed by (chrom, pos, ref, alt, anchor). Alleles that cannot be scored keep their row with
a note and NaN scores, and are counted: symbolic, spanning (``*``) and breakend alleles, a missing ALT,
a REF that differs from the genome, a chromosome the genome lacks. More than 10% REF mismatches among the
first 1,000 variants stop the run before any model work ("wrong genome build?") unless
``allow_ref_mismatch``.

Output by suffix (streamed into ``OUT.partial`` under the existing-output rule of :mod:`senformer.outputs`,
resumed by a rerun with the same inputs, renamed when complete):

- ``.tsv`` / ``.tsv.gz``: columns ``chrom pos id ref alt anchor distance note`` then ``STAT:TRACK``;
  ``distance`` is the variant's first base minus the window centre (the anchor), upstream negative on a
  minus-strand anchor; a ``.tsv.gz`` is a series of gzip members, one per window;
- ``.h5``: ``/variants/{chrom,pos,id,ref,alt,anchor,distance,note,bases_sha256}``, ``/scores/<STAT>``
  float32 (variants, tracks), ``/tracks/{index,identifier,description}``.

Every row records the SHA-256 of its window's exact input bases (flanks and N padding included; for a TSV in
``OUT.partial.bases`` while the run lasts): a resumed partial whose genome bases changed starts again, and
the finished output's record holds one digest of them all, re-checked when the output is up to date.

Rows are written a whole window at a time, so a resumed run starts at a window and a ``.tsv.gz`` has the
same members however the run was cut. Many processes (:mod:`senformer.outputs.shards`, an ``Output`` with a
``shard``) split the
windows: each shard scores a contiguous run of them into its part, and the parts are concatenated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..data.genome import Genome, Interval, read_bed
from ..data.vcf import SKIP_PAST_END, Variant, VariantFile
from ..errors import UserError
from ..fingerprint import bases_digest, file_digest, value_digest
from ..outputs import FILE, Output, opened, weights_identity, weights_record
from ..windows import Geometry, check_shifts
from .variant_files import (
    KEY_COLUMNS, H5Writer, Row, ScoredRow, TableWriter, default_suffix, output_format, size_estimate,
)

STATS = ("SAD", "center", "logSAD", "D2", "REF", "ALT")
DEFAULT_STATS = ("SAD",)  # the command's default: one score per track keeps a cohort's output small
# Rows are written a few windows at a time: a write costs two fsyncs and a resize of every dataset, which per
# window was a third of a tiny model's run. A kill loses at most this much work (the rerun resumes before it).
WRITE_EVERY_SECONDS = 10.0
WRITE_EVERY_VALUES = 1 << 23  # or this many pending scores (float64: 64 MB)
REF_CHECK_VARIANTS = 1000  # the genome-build rule looks at this many variants ...
REF_MISMATCH_SHARE = 0.10  # ... and stops when more than this share of them disagree with the genome
SKIP_REF_MISMATCH = "skipped: REF differs from the genome"
SKIP_NO_CHROMOSOME = "skipped: chromosome not in the genome"
SKIP_OUTSIDE = "skipped: REF runs past the window"


@dataclass(frozen=True)
class VariantOptions:
    """Everything that shapes the scores (recorded in the run record and the fingerprint)."""

    head: str = "human"
    tracks: tuple[str, ...] | None = None  # the --tracks grammar; None: every track of the head
    targets: str | None = None  # targets.txt naming the head's tracks
    sequence_length: int | None = None  # None: 196,608 if valid for the model, else its shortest input
    center_bins: int = 3
    reverse_complement: bool = True
    shifts: tuple[int, ...] = (0,)
    cluster_bp: int = 0
    max_distance: int | None = None  # anchored windows; None: anywhere in the input window
    stats: tuple[str, ...] = STATS
    batch_size: int = 4
    allow_ref_mismatch: bool = False
    plain: bool = False  # whole windows instead of the edit engine
    bf16: bool = False  # bfloat16 autocast where the device computes it natively (float32 elsewhere, said once)

    def __post_init__(self) -> None:
        if self.center_bins < 1 or self.center_bins % 2 == 0:
            raise UserError(f"--center-bins must be odd and positive, got {self.center_bins}")
        if self.cluster_bp < 0:
            raise UserError(f"--cluster-bp must be 0 or more, got {self.cluster_bp}")
        if self.max_distance is not None and self.max_distance < 0:
            raise UserError(f"--max-distance must be 0 or more, got {self.max_distance}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        unknown = [stat for stat in self.stats if stat not in STATS]
        if unknown or not self.stats:
            raise UserError(f"unknown score {unknown[0] if unknown else '(none given)'!r}; choose from "
                            f"{', '.join(STATS)}")
        object.__setattr__(self, "stats", tuple(dict.fromkeys(self.stats)))
        object.__setattr__(self, "shifts", check_shifts(self.shifts))
        if self.tracks is not None and not isinstance(self.tracks, str):
            object.__setattr__(self, "tracks", tuple(str(value) for value in self.tracks))


# Windows ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    """A window centre: ``position`` 0-based; ``strand`` orients ``distance`` (upstream negative on ``-``)."""

    name: str
    chrom: str
    position: int
    strand: str = "."


def read_anchors(path: str | os.PathLike) -> list[Anchor]:
    """Anchors of a BED file (:func:`senformer.data.genome.read_bed`): the interval's centre, its name
    (column 4; ``chrom:position`` when absent) and strand (column 6)."""
    anchors = [Anchor(interval.name or f"{interval.chrom}:{interval.center + 1}", interval.chrom,
                      interval.center, interval.strand) for interval in read_bed(path)]
    if not anchors:
        raise UserError(f"{path} holds no anchors")
    return anchors


@dataclass
class Window:
    """A reference window: input ``[start, start + L)`` of ``chrom`` (unshifted), the input index of its
    centre bins, and its rows in output order. Windows are the unit of work: rows never span two."""

    chrom: str
    start: int
    centre: int  # input index around which `center` sums when the rows do not bring their own
    rows: list[Row] = field(default_factory=list)
    anchored: bool = False

    @property
    def flank(self) -> int:
        """bp beyond each end of the input a deletion pulls in."""
        return max([len(row.edit.ref) - len(row.edit.alt) for row in self.rows if row.edit is not None] + [0])


class GenomeCheck:
    """REF against the genome: the note of a mismatch (or a missing chromosome), None when REF matches."""

    def __init__(self, genome: Genome):
        self.genome = genome

    def note(self, variant: Variant) -> str | None:
        if variant.chrom not in self.genome:
            return SKIP_NO_CHROMOSOME
        size = self.genome.sizes[self.genome.resolve(variant.chrom)]
        if variant.end > size:  # fetch pads with N: a REF of N there would match
            return f"{SKIP_PAST_END} ({variant.chrom} is {size:,} bp)"
        observed = self.genome.fetch(Interval(variant.chrom, variant.start, variant.end))
        return None if observed == variant.ref else f"{SKIP_REF_MISMATCH} ({observed})"


def check_genome_build(vcf: VariantFile, genome: Genome) -> tuple[int, int]:
    """(mismatched, checked) REF among the first :data:`REF_CHECK_VARIANTS` scorable records; UserError
    ("wrong genome build?") when more than :data:`REF_MISMATCH_SHARE` of them disagree with the genome."""
    check = GenomeCheck(genome)
    checked = mismatched = 0
    first: Variant | None = None
    seen: tuple | None = None
    for variant in vcf:
        if variant.skip is not None or (variant.chrom, variant.pos, variant.ref) == seen:
            continue  # symbolic alleles say nothing about the build; a multi-allelic record counts once
        seen = (variant.chrom, variant.pos, variant.ref)
        checked += 1
        if check.note(variant) is not None:
            mismatched += 1
            first = first or variant
        if checked == REF_CHECK_VARIANTS:
            break
    if checked and mismatched > REF_MISMATCH_SHARE * checked:
        observed = check.note(first)
        raise UserError(
            f"{vcf.path.name}: REF differs from {genome.path.name} at {mismatched} of the first {checked} variants "
            f"(first {first.chrom}:{first.pos} REF {first.ref}, {observed.removeprefix('skipped: ')}): wrong genome "
            "build? (--allow-ref-mismatch scores the others)")
    return mismatched, checked


def _edit_or_note(variant: Variant, window_start: int, length: int, refill: str, check: GenomeCheck):
    from ..edits import Edit

    if variant.skip is not None:
        return None, variant.skip
    note = check.note(variant)
    if note is not None:
        return None, note
    position = variant.start - window_start
    if position < 0 or position + len(variant.ref) > length:
        return None, SKIP_OUTSIDE
    return Edit(position, variant.ref, variant.alt, refill), ""


def centred_windows(variants: Iterable[Variant], genome: Genome, length: int, cluster_bp: int) -> Iterator[Window]:
    """Variant-centred windows: consecutive alleles of one chromosome whose first bases lie within
    ``cluster_bp`` of each other share a window centred between the first and last of them (alleles that
    cannot be scored ride along in the window where they fall in the file, to keep the file's order)."""
    check = GenomeCheck(genome)
    half = length // 2
    pending: list[Variant] = []
    chrom, low, high = "", None, 0

    def window_of(members: list[Variant]) -> Window:
        if low is None:  # only alleles that cannot be scored: the window is never run
            centre, name = members[0].start, members[0].chrom
        else:
            centre, name = low + (high - low) // 2, chrom
        window = Window(name, centre - half, half)
        for variant in members:
            edit, note = _edit_or_note(variant, window.start, length, "right", check)
            # An allele that is not placed (skipped) has no offset in the window: 0, as if centred on it.
            window.rows.append(Row(variant, "", variant.start - centre if edit is not None else 0, note, edit))
        return window

    for variant in variants:
        if variant.skip is None:
            start = variant.start
            if low is not None and (variant.chrom != chrom or max(high, start) - min(low, start) > cluster_bp):
                yield window_of(pending)
                pending, low = [], None
            if low is None:
                chrom, low, high = variant.chrom, start, start
            low, high = min(low, start), max(high, start)
        pending.append(variant)
    if pending:
        yield window_of(pending)


def anchored_windows(vcf: VariantFile, anchors: Sequence[Anchor], genome: Genome, length: int,
                     max_distance: int) -> Iterator[Window]:
    """One window per anchor (at input index ``L // 2``) with every allele whose first base lies within
    ``max_distance`` bp of it; an indel refills the flank on the far side of the variant from the anchor."""
    check = GenomeCheck(genome)
    half = length // 2
    for anchor in anchors:
        window = Window(anchor.chrom, anchor.position - half, half, anchored=True)
        for variant in vcf.query(anchor.chrom, anchor.position - max_distance, anchor.position + max_distance + 1):
            refill = "left" if variant.start < anchor.position else "right"
            edit, note = _edit_or_note(variant, window.start, length, refill, check)
            distance = variant.start - anchor.position
            window.rows.append(Row(variant, anchor.name, -distance if anchor.strand == "-" else distance, note, edit))
        if window.rows:
            yield window


def window_bases(genome: Genome, window: Window, length: int, margin: int) -> tuple[str, int]:
    """(the window's bases with ``margin`` and its deletion flank on each side, the flank in bp); no bases
    for a chromosome the genome lacks (every row of such a window is skipped)."""
    if window.chrom not in genome:
        return "", 0
    flank = window.flank
    start = window.start - margin - flank
    return genome.fetch(Interval(window.chrom, start, start + length + 2 * (margin + flank))), flank


# Scores -----------------------------------------------------------------------------------------------------
def centre_bins(geometry: Geometry, index: int, count: int) -> np.ndarray:
    """Output bins within ``count // 2`` of the bin holding input index ``index`` (clipped to the output)."""
    middle = index // geometry.bin_size - geometry.offset_bins
    return np.arange(max(middle - count // 2, 0), min(middle + count // 2 + 1, geometry.bins))


def variant_stats(reference: torch.Tensor, alternative: torch.Tensor, centres: Sequence[np.ndarray],
                  stats: Sequence[str]) -> dict[str, np.ndarray]:
    """``{stat: (batch, tracks) float64}`` from the reference ``(bins, tracks)`` and alternatives
    ``(batch, bins, tracks)`` predictions (float64); ``centres[i]``: the centre bins of row ``i``."""
    reference, alternative = reference.double(), alternative.double()
    difference = alternative - reference[None]  # (batch, bins, tracks)
    ref_sum = reference.sum(dim=0).expand(len(alternative), -1)
    alt_sum = alternative.sum(dim=1)
    values = {
        "SAD": lambda: difference.sum(dim=1),
        "center": lambda: torch.stack([difference[row, torch.as_tensor(bins)].sum(dim=0)
                                       for row, bins in enumerate(centres)]),
        "logSAD": lambda: torch.log2((alt_sum + 1) / (ref_sum + 1)),
        "D2": lambda: difference.square().sum(dim=1).sqrt(),
        "REF": lambda: ref_sum,
        "ALT": lambda: alt_sum,
    }
    return {stat: values[stat]().numpy() for stat in stats}


def _tokens(bases: str) -> torch.Tensor:
    from ..sequence import tokens

    return torch.from_numpy(tokens(bases).astype(np.int64))


def score_windows(model, genome: Genome, windows: Iterable[Window], options: VariantOptions, tracks: np.ndarray,
                  geometry: Geometry, first_row: int = 0,
                  strand_pairs: dict[str, np.ndarray] | None = None) -> Iterator[ScoredRow]:
    """Every row of ``windows`` in order with its scores (None: skipped). Windows whose rows all come
    before ``first_row`` (written by an interrupted run) are not run: their rows come without scores.
    ``strand_pairs``: :func:`variant_strand_pairs` (computed here when None)."""
    from ..edits import EditEngine

    if strand_pairs is None:
        strand_pairs = variant_strand_pairs(model, options)
    margin = max(abs(shift) for shift in options.shifts)
    length = geometry.sequence_length
    row_index = 0
    for window in windows:
        rows = window.rows
        bases, flank = window_bases(genome, window, length, margin)
        digest = bases_digest(bases)
        edited = [row for row in rows if row.edit is not None] if row_index + len(rows) > first_row else []
        scores: dict[int, dict[str, np.ndarray]] = {}

        def keep(members: list[Row], reference: torch.Tensor, alternatives: torch.Tensor) -> None:
            centres = [centre_bins(geometry, window.centre if window.anchored else row.edit.position,
                                   options.center_bins) for row in members]
            values = variant_stats(reference, alternatives, centres, options.stats)
            for offset, row in enumerate(members):
                scores[id(row)] = {stat: values[stat][offset] for stat in options.stats}
                _refuse_non_finite(row, scores[id(row)], tracks)

        if edited:
            engine = EditEngine(
                model, _tokens(bases[flank : flank + length + 2 * margin]), heads=[options.head],
                tracks={options.head: tracks}, reverse_complement=options.reverse_complement, shifts=options.shifts,
                margin=margin, batch_size=options.batch_size, accumulate=torch.float64,
                left_flank=_tokens(bases[:flank]) if flank else None,
                right_flank=_tokens(bases[len(bases) - flank :]) if flank else None, plain=options.plain,
                bf16=options.bf16, strand_pairs=strand_pairs)
            reference = engine.reference_output()[options.head]
            unchanged = [row for row in edited if row.edit.ref == row.edit.alt]
            if unchanged:  # ALT = REF is the reference itself: exactly no effect, in any precision
                keep(unchanged, reference, reference.expand(len(unchanged), -1, -1))
            changed = [row for row in edited if row.edit.ref != row.edit.alt]
            done = 0
            for batch, outputs in engine.score(row.edit for row in changed):
                keep(changed[done : done + len(batch)], reference, outputs[options.head])
                done += len(batch)
        for index, row in enumerate(rows):
            yield ScoredRow(row, scores.get(id(row)), digest, index == len(rows) - 1)
        row_index += len(rows)


def _refuse_non_finite(row: Row, scores: dict[str, np.ndarray], tracks: np.ndarray) -> None:
    for stat, values in scores.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            where = f" (anchor {row.anchor})" if row.anchor else ""
            raise UserError(f"variant {row.variant}{where}: {stat} of track {int(tracks[bad[0]])} is not finite "
                            f"({values[bad[0]]}): the model's outputs are broken (non-finite weights or an overflow)")


# The run ----------------------------------------------------------------------------------------------------
@dataclass
class VariantRun:
    """What a run did: the output, row counts (``scored`` and each skip reason) and the windows' digest."""

    out: Path
    counts: dict[str, int]
    bases_sha256: str
    up_to_date: bool = False


def track_selection(model, options: VariantOptions) -> tuple[np.ndarray, list[str], list[str]]:
    """(track positions of ``options.head``, their identifiers, their descriptions) by the --tracks grammar."""
    from ..data.tracks import select_tracks

    table = _head_table(model, options)
    positions = select_tracks(list(options.tracks) if options.tracks else None, table, options.head)
    names = [str(table["identifier"][p]) for p in positions]
    descriptions = [str(table["description"][p]) if "description" in table else "" for p in positions]
    return positions, names, descriptions


def variant_strand_pairs(model, options: VariantOptions) -> dict[str, np.ndarray]:
    """``{head: (tracks,) strand pairs}`` of the reverse-complement passes: the ``--targets`` table's
    ``strand_pair`` column where it has one, else the shipped table's (a published Borzoi head's); a bad
    column is one UserError naming the file and the row."""
    from ..inference import head_strand_pairs

    return head_strand_pairs(model, {options.head: _head_table(model, options)}, options.targets)


def _head_table(model, options: VariantOptions):
    """The track table of ``options.head`` (:func:`senformer.data.tracks.head_track_table`), from
    ``options.targets`` when given (which must list the head's tracks)."""
    from ..data.tracks import head_track_table

    if options.head not in model.config.output_heads:
        raise UserError(f"unknown head {options.head!r}; the model has {', '.join(model.config.output_heads)}")
    num_tracks = model.config.output_heads[options.head]
    table = head_track_table(options.head, num_tracks, options.targets)
    if options.targets is not None and table.attrs["source"] != "targets":
        raise UserError(f"{options.targets} does not list the {num_tracks:,} tracks of head {options.head!r}")
    return table


def plan_windows(vcf: VariantFile, genome: Genome, geometry: Geometry, options: VariantOptions,
                 anchors: Sequence[Anchor] | None) -> Iterator[Window]:
    """The run's windows in output order (a fresh pass over the VCF each call)."""
    length = geometry.sequence_length
    if anchors is None:
        if options.cluster_bp > geometry.output_bp // 2:
            raise UserError(f"--cluster-bp {options.cluster_bp:,} is more than half the output window "
                            f"({geometry.output_bp // 2:,} bp): clustered variants would fall outside it")
        return centred_windows(vcf, genome, length, options.cluster_bp)
    reach = length // 2 - 1 if options.max_distance is None else options.max_distance
    if reach >= length // 2:
        raise UserError(f"--max-distance {reach:,} does not fit the {length:,}-bp window (at most {length // 2 - 1:,})")
    return anchored_windows(vcf, anchors, genome, length, reach)


def windows_digest(genome: Genome, windows: Iterable[Window], geometry: Geometry, margin: int) -> str:
    """One SHA-256 of every row's window bases (what the finished output's record holds)."""
    digest = hashlib.sha256()
    for window in windows:
        bases = bases_digest(window_bases(genome, window, geometry.sequence_length, margin)[0])
        digest.update("".join(bases + "\n" for _ in window.rows).encode("ascii"))
    return digest.hexdigest()


def variants_inputs(vcf: str | os.PathLike, anchors: Sequence[Anchor] | None, options: VariantOptions) -> dict:
    """The digests of a variant run's inputs: the VCF's bytes, the anchors as read, the targets' bytes."""
    from ..inputs import input_digest

    return {"vcf": file_digest(vcf),
            "anchors": value_digest([dataclasses.asdict(a) for a in anchors]) if anchors is not None else None,
            "targets": input_digest(options.targets)}


def variants_fingerprint(weights: dict, options: VariantOptions, inputs: dict) -> str:
    """The fingerprint of a variant scores file, the same from ``senformer analyze variants`` and from
    :func:`write_variant_scores`: ``weights`` is :func:`senformer.outputs.weights_identity` of the model,
    ``inputs`` :func:`variants_inputs`; every option counts except the path of ``targets`` (its bytes do).
    The genome is not in it: each row records the digest of its own input bases."""
    counted = {key: value for key, value in dataclasses.asdict(options).items() if key != "targets"}
    return value_digest({"command": "analyze variants", "weights": weights, "options": counted, "inputs": inputs})


def write_variant_scores(
    model,
    genome: Genome | str | os.PathLike,
    vcf: str | os.PathLike,
    out: str | os.PathLike | Output,
    options: VariantOptions = VariantOptions(),
    *,
    anchors: str | os.PathLike | Sequence[Anchor] | None = None,
    progress: bool = True,
) -> VariantRun | None:
    """``senformer analyze variants``: score every allele of ``vcf`` into ``out`` (``.tsv``, ``.tsv.gz``,
    ``.h5``; see the module docstring), streamed and resumable.

    Args:
        model: an Enformer in eval mode (float64 models give float64-exact scores before the float32 store).
        genome: a :class:`~senformer.data.genome.Genome` or a FASTA path.
        out: a path or a :class:`senformer.outputs.Output` (``Output(path, overwrite=True)`` replaces an
            output of other inputs; one with a ``shard`` scores that shard's windows into its part and merges
            when every part is done; a command hands over the output it opened before loading the model).
            The fingerprint is the command's (:func:`variants_fingerprint`), so either is up to date for both.
        anchors: a BED path or :class:`Anchor` list for anchored windows; None: variant-centred windows.
    Returns:
        a :class:`VariantRun` with the counts of scored and skipped rows; None when a shard's part is done
        and other parts are still missing.
    """
    output = out if isinstance(out, Output) else Output(out, FILE, command="analyze variants")
    output_format(output.path)
    genome = genome if isinstance(genome, Genome) else Genome(genome)
    anchor_list = read_anchors(anchors) if isinstance(anchors, (str, os.PathLike)) else anchors
    if not output.is_open:
        identity = weights_identity(model)
        inputs = variants_inputs(vcf, anchor_list, options)
        output.describe(variants_fingerprint(identity, options, inputs), settings=dataclasses.asdict(options),
                        inputs={**inputs, "weights": weights_record(identity)})
    with opened(output):
        if output.sharded is not None:
            return _run_shard(output, model, genome, Path(vcf), options, anchor_list, progress)
        return _run(output, model, genome, Path(vcf), options, anchor_list, progress)


def check_up_to_date(out: str | os.PathLike, genome: Genome, vcf: str | os.PathLike,
                     anchors: Sequence[Anchor] | None) -> None:
    """An up-to-date output must still match the genome's bases of its windows; else one UserError line."""
    settings = (Output(out, FILE, command="analyze variants").recorded() or {}).get("settings", {})
    try:
        geometry = Geometry(**settings["geometry"])
        options = VariantOptions(**{key: tuple(value) if isinstance(value, list) else value
                                    for key, value in settings["options"].items()})
    except (KeyError, TypeError):
        raise UserError(f"{out}: its run record does not say which windows it scored (another senformer "
                        "version?); pass --overwrite to compute it again") from None
    with VariantFile(vcf) as variants:
        digest = windows_digest(genome, plan_windows(variants, genome, geometry, options, anchors), geometry,
                                max(abs(shift) for shift in options.shifts))
    if digest != settings.get("bases_sha256"):
        raise UserError(f"{out} was computed from other bases than {genome.path.name} gives now: the genome "
                        "changed; pass --overwrite to compute it again")


def _run_shard(output: Output, model, genome: Genome, vcf_path: Path, options: VariantOptions,
               anchors: Sequence[Anchor] | None, progress: bool) -> VariantRun | None:
    """One shard's windows into its part, then the merge if its part is the last one done."""
    sharded = output.sharded
    model = model.eval()
    geometry = Geometry.of(model.config, options.sequence_length)
    with VariantFile(vcf_path) as vcf:
        total = sum(1 for _ in plan_windows(vcf, genome, geometry, options, anchors))
    with output.part(total) as part:
        if not part.done:
            _run(part.output, model, genome, vcf_path, options, anchors, progress,
                 window_range=(part.first, part.stop))

    def merge(parts: list[Path], records: list[dict], partial: Path) -> dict:
        tracks, names, descriptions = track_selection(model, options)
        kind = output_format(sharded.out)
        if kind == "h5":
            writer = H5Writer(partial, options.stats, tracks, names, descriptions)
            writer.reset()
            try:
                for path in parts:
                    if path.stat().st_size:
                        writer.extend(path)
            finally:
                writer.close()
        else:
            columns = list(KEY_COLUMNS) + [f"{stat}:{name}" for stat in options.stats for name in names]
            TableWriter(partial, columns, compressed=kind == "tsv.gz").concatenate(parts)
        _refuse_stale_parts(sharded, records, genome, vcf_path, geometry, options, anchors)
        counts: dict[str, int] = {}
        for record in records:
            for reason, count in record.get("settings", {}).get("counts", {}).items():
                counts[reason] = counts.get(reason, 0) + count
        with VariantFile(vcf_path) as vcf:
            bases = windows_digest(genome, plan_windows(vcf, genome, geometry, options, anchors), geometry,
                                   max(abs(shift) for shift in options.shifts))
        return {"options": dataclasses.asdict(options), "geometry": dataclasses.asdict(geometry), "tracks": tracks,
                "track_names": names, "counts": counts, "bases_sha256": bases}

    out = sharded.merge(merge)
    if out is None:
        return None
    settings = Output(out, FILE, command="analyze variants").recorded()["settings"]
    return VariantRun(out, settings.get("counts", {}), settings.get("bases_sha256", ""))


def _refuse_stale_parts(sharded, records: list[dict], genome: Genome, vcf_path: Path, geometry: Geometry,
                        options: VariantOptions, anchors: Sequence[Anchor] | None) -> None:
    """Each part's rows must still hold the genome's bases of its windows (parts may be old)."""
    margin = max(abs(shift) for shift in options.shifts)
    with VariantFile(vcf_path) as vcf:
        windows = plan_windows(vcf, genome, geometry, options, anchors)
        for index, record in enumerate(records):
            first, stop = record["shard"]["first_unit"], record["shard"]["stop_unit"]
            if first == stop:
                continue
            digest = windows_digest(genome, itertools.islice(windows, stop - first), geometry, margin)
            if digest != record["settings"].get("bases_sha256"):
                sharded.refuse_stale_part(index, f"one of windows {first + 1}-{stop}")


def _run(output: Output, model, genome: Genome, vcf_path: Path, options: VariantOptions,
         anchors: Sequence[Anchor] | None, progress: bool, window_range: tuple[int, int] | None = None) -> VariantRun:
    """Score the windows (those of ``window_range`` only: a shard's part) into ``output``."""
    from tqdm.auto import tqdm

    def windows_of(vcf: VariantFile) -> Iterator[Window]:
        windows = plan_windows(vcf, genome, geometry, options, anchors)
        return windows if window_range is None else itertools.islice(windows, *window_range)

    if output.up_to_date:
        check_up_to_date(output.path, genome, vcf_path, anchors)
        return VariantRun(output.path, {}, "", up_to_date=True)
    model = model.eval()
    geometry = Geometry.of(model.config, options.sequence_length)
    margin = max(abs(shift) for shift in options.shifts)
    tracks, names, descriptions = track_selection(model, options)
    pairs = variant_strand_pairs(model, options)
    kind = output_format(output.path)
    if kind == "h5":
        writer = H5Writer(output.partial, options.stats, tracks, names, descriptions)
    else:
        columns = list(KEY_COLUMNS) + [f"{stat}:{name}" for stat in options.stats for name in names]
        writer = TableWriter(output.partial, columns, compressed=kind == "tsv.gz")
    with VariantFile(vcf_path) as vcf:
        if not options.allow_ref_mismatch:
            check_genome_build(vcf, genome)
        resolved = {"options": dataclasses.asdict(options), "geometry": dataclasses.asdict(geometry),
                    "tracks": tracks, "track_names": names}
        output.record = {**output.record, "settings": {**output.record.get("settings", {}), **resolved}}
        counts: dict[str, int] = {}
        digest = hashlib.sha256()  # of every row's window bases, the rows of an interrupted run included
        rows = 0
        try:
            if output.resume:
                with output.writing("the variant scores"):
                    done = writer.resume()
                stale = _first_stale_row(genome, windows_of(vcf), geometry, margin, done)
                if stale is not None:
                    output.say(f"{output.partial}: the genome's bases changed under row {stale + 1}: starting it "
                               "again")
                    with output.writing("the variant scores"):
                        done = writer.reset()
            else:
                output.start()
                with output.writing("the variant scores"):
                    done = writer.reset()
            total = sum(len(window.rows) for window in windows_of(vcf))
            print(f"senformer analyze variants: {output.path.name}: "
                  f"{size_estimate(total, len(tracks), len(options.stats), kind)}", flush=True)
            windows = windows_of(vcf)
            with tqdm(desc="variants", unit="allele", disable=not progress, initial=len(done), total=total) as bar:
                pending: list[ScoredRow] = []
                written = time.monotonic()
                for scored in score_windows(model, genome, windows, options, tracks, geometry, first_row=len(done),
                                            strand_pairs=pairs):
                    _count(counts, scored.row)
                    digest.update(f"{scored.bases}\n".encode("ascii"))
                    rows += 1
                    if rows <= len(done):
                        continue
                    pending.append(scored)
                    if not scored.ends_window:
                        continue
                    bar.update(_window_rows(pending))
                    # Whole windows only: a resumed run (or a shard) starts at a window, and a .tsv.gz holds
                    # one gzip member per window however the run was cut, so its bytes are always the same.
                    if (time.monotonic() - written >= WRITE_EVERY_SECONDS
                            or len(pending) * len(tracks) * len(options.stats) >= WRITE_EVERY_VALUES):
                        variant = scored.row.variant
                        with output.writing(f"the scores of variant {variant.chrom}:{variant.pos}"):
                            writer.append(pending, options.stats, len(tracks))
                        pending, written = [], time.monotonic()
                if pending:
                    with output.writing("the last variant scores"):
                        writer.append(pending, options.stats, len(tracks))
        except BaseException:
            writer.abandon()  # closed once; the first error is the one reported
            raise
        with output.writing("the last variant scores"):
            writer.close()
    if rows == 0:
        print(f"senformer analyze variants: no variants to score in {vcf_path}"
              + (" near the anchors" if anchors is not None else ""), file=sys.stderr)
    bases = digest.hexdigest()
    output.finish(verify=writer.verify, counts=counts, bases_sha256=bases)
    if isinstance(writer, TableWriter):
        writer.finish()
    return VariantRun(output.path, counts, bases)


def _window_rows(pending: list[ScoredRow]) -> int:
    """Rows of the last window in ``pending`` (which ends with it)."""
    count = 1
    while count < len(pending) and not pending[-count - 1].ends_window:
        count += 1
    return count


def _count(counts: dict[str, int], row: Row) -> None:
    reason = "scored" if row.edit is not None else row.note.split(" (")[0].removeprefix("skipped: ")
    counts[reason] = counts.get(reason, 0) + 1


def _first_stale_row(genome: Genome, windows: Iterable[Window], geometry: Geometry, margin: int,
                     done: list[str]) -> int | None:
    """The first row already written whose window's bases differ from what ``genome`` gives now."""
    row = 0
    for window in windows:
        if row >= len(done):
            return None
        bases = bases_digest(window_bases(genome, window, geometry.sequence_length, margin)[0])
        for offset in range(len(window.rows)):
            if row + offset < len(done) and done[row + offset] != bases:
                return row + offset
        row += len(window.rows)
    return None


def summary_line(run: VariantRun) -> str:
    """``scored 9 alleles; skipped 1 symbolic allele, 1 missing ALT ...`` for the command's last line."""
    counts = dict(run.counts)
    scored = counts.pop("scored", 0)
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
    return f"scored {scored} allele{'s' if scored != 1 else ''}" + (f"; skipped {skipped}" if skipped else "")
