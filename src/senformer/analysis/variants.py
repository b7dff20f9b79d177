"""Variant effect scores from a VCF: the predicted change of every chosen track, alt minus ref.

Each variant gets two windows of the model's input length centred on its first base (0-based
``pos - 1``): the reference window from the genome, and the alternative window that keeps the same left
flank and first base position, puts ``alt`` in place of ``ref`` and refills the right flank from the
genome (indels shift only the right side). Predictions are averaged with those of the reverse complement
(flipped back along the bins). Per track:

- ``SAD``: (alt - ref) summed over all output bins (Enformer's SNP activity difference);
- ``center``: (alt - ref) summed over the ``center_bins`` bins around the bin holding the variant.

Scores stream to a TSV row by row; an interrupted run resumes from its ``.partial`` file.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..inference import predict_batch, resolve_sequence_length
from ..model.enformer import Enformer
from ..sequence import one_hot as encode

_ALLELE = re.compile(r"^[ACGTNacgtn]+$")
KEY_COLUMNS = ["chrom", "pos", "id", "ref", "alt"]


@dataclass(frozen=True)
class Variant:
    """One VCF allele: ``pos`` is 1-based as in the VCF; ``line`` is the VCF line number (1-based)."""

    chrom: str
    pos: int
    ref: str
    alt: str
    id: str = "."
    line: int = 0

    @property
    def start(self) -> int:
        """0-based position of the first reference base."""
        return self.pos - 1

    @property
    def supported(self) -> bool:
        """SNVs and indels spelled in bases; symbolic alleles (``<DEL>``, ``*``, breakends) are not."""
        return bool(_ALLELE.match(self.ref)) and bool(_ALLELE.match(self.alt))

    def __str__(self) -> str:
        return f"{self.chrom}:{self.pos} {self.ref}>{self.alt}"


def read_vcf(path: str | os.PathLike) -> Iterator[Variant]:
    """Variants of a VCF (plain or gzip/bgzip), one per ALT allele, in file order.

    Only the first five columns are read (CHROM, POS, ID, REF, ALT); headers (``#``) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VCF not found: {path}")
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5:
                raise UserError(f"{path}:{number}: a VCF record needs at least 5 tab-separated columns, got {len(fields)}")
            chrom, pos, identifier, ref, alts = fields[:5]
            try:
                position = int(pos)
            except ValueError:
                raise UserError(f"{path}:{number}: POS {pos!r} is not an integer") from None
            if position < 1:
                raise UserError(f"{path}:{number}: POS {position} is not 1-based (must be at least 1)")
            for alt in alts.split(","):
                yield Variant(chrom, position, ref.upper(), alt.upper(), identifier, number)


def variant_windows(genome, variant: Variant, sequence_length: int) -> tuple[str, str]:
    """Reference and alternative sequences of ``sequence_length`` bp for one variant.

    The variant's first base sits at index ``sequence_length // 2`` of both windows. Raises
    :class:`UserError` if the genome's bases at the variant differ from ``ref``.
    """
    from ..data.genome import Interval

    start = variant.start
    observed = genome.fetch(Interval(variant.chrom, start, start + len(variant.ref))).upper()
    if observed != variant.ref:
        raise UserError(
            f"variant {variant} (VCF line {variant.line}): the genome has {observed!r} at "
            f"{variant.chrom}:{variant.pos}-{variant.pos + len(variant.ref) - 1}, not REF {variant.ref!r} "
            "(wrong genome build or 0-based positions?)"
        )
    half = sequence_length // 2
    window_start = start - half
    reference = genome.fetch(Interval(variant.chrom, window_start, window_start + sequence_length)).upper()
    right_length = max(sequence_length - half - len(variant.alt), 0)
    after_ref = start + len(variant.ref)
    right = genome.fetch(Interval(variant.chrom, after_ref, after_ref + right_length)).upper() if right_length else ""
    alternative = (reference[:half] + variant.alt + right)[:sequence_length]
    assert len(reference) == len(alternative) == sequence_length
    return reference, alternative


def center_bin_indices(model: Enformer, sequence_length: int, center_bins: int) -> np.ndarray:
    """Output bins within ``center_bins // 2`` of the bin holding input index ``sequence_length // 2``."""
    config = model.config
    if center_bins < 1 or center_bins % 2 == 0:
        raise ValueError(f"center_bins must be odd and positive, got {center_bins}")
    bins = config.output_length(sequence_length)
    positions = config.num_positions(sequence_length)
    first = (positions - bins) // 2  # the crop is central with or without target_length
    middle = (sequence_length // 2) // config.bin_size - first
    lo, hi = max(middle - center_bins // 2, 0), min(middle + center_bins // 2 + 1, bins)
    return np.arange(lo, hi)


def _predict_averaged(model: Enformer, one_hots: torch.Tensor, head: str, tracks, average_rc: bool) -> torch.Tensor:
    """(batch, bp, 4) -> (batch, bins, tracks) float64, averaged with the reverse complement; each pass is
    converted to float64 before the two are summed, so alt - ref is taken in float64."""
    return predict_batch(model, one_hots, heads=[head], tracks={head: np.asarray(tracks, dtype=np.int64)},
                         reverse_complement=average_rc, accumulate=torch.float64)[head]


def score_variants(
    model: Enformer,
    genome,
    variants: Iterable[Variant],
    head: str = "human",
    tracks: Sequence[int] | None = None,
    center_bins: int = 3,
    average_rc: bool = True,
    batch_size: int = 4,
    sequence_length: int | None = None,
    skip_ref_mismatch: bool = False,
) -> Iterator[tuple[Variant, np.ndarray, np.ndarray, str]]:
    """Score variants in order, a batch at a time.

    Args:
        genome: a :class:`senformer.data.genome.Genome` (or anything with ``fetch(Interval) -> str``).
        tracks: track positions of ``head`` (default: all).
        sequence_length: input bp (default :func:`senformer.inference.default_sequence_length`: 196,608
            when valid for the model, else its shortest input).
        skip_ref_mismatch: give a NaN row with a note instead of raising when REF disagrees with the genome.
    Yields:
        ``(variant, sad (tracks,), center (tracks,), note)``; unsupported alleles yield NaN and a note.
    """
    config = model.config
    if head not in config.output_heads:
        raise ValueError(f"unknown head {head!r}; the model has {', '.join(config.output_heads)}")
    sequence_length = resolve_sequence_length(config, sequence_length)
    num_tracks = config.output_heads[head]
    track_index = torch.arange(num_tracks) if tracks is None else torch.as_tensor(list(tracks), dtype=torch.long)
    if track_index.numel() == 0 or int(track_index.min()) < 0 or int(track_index.max()) >= config.output_heads[head]:
        raise ValueError(f"tracks must lie in 0..{config.output_heads[head] - 1}")
    centre = torch.as_tensor(center_bin_indices(model, sequence_length, center_bins))
    model.eval()
    empty = np.full(len(track_index), np.nan)

    pending: list[tuple[Variant, str, str]] = []

    def flush() -> Iterator[tuple[Variant, np.ndarray, np.ndarray, str]]:
        references = torch.stack([encode(reference) for _, reference, _ in pending])
        alternatives = torch.stack([encode(alternative) for _, _, alternative in pending])
        predictions = _predict_averaged(model, torch.cat([references, alternatives]), head, track_index, average_rc)
        difference = predictions[len(pending):] - predictions[: len(pending)]  # (batch, bins, tracks)
        sad = difference.sum(dim=1).numpy()
        central = difference[:, centre].sum(dim=1).numpy()
        for row, (variant, _, _) in enumerate(pending):
            yield variant, sad[row], central[row], ""
        pending.clear()

    for variant in variants:
        if not variant.supported:
            yield from (flush() if pending else ())
            yield variant, empty, empty, "skipped: not an SNV or indel spelled in bases"
            continue
        try:
            reference, alternative = variant_windows(genome, variant, sequence_length)
        except UserError as error:
            if not skip_ref_mismatch or "not REF" not in str(error):
                raise
            yield from (flush() if pending else ())
            yield variant, empty, empty, "skipped: REF differs from the genome"
            continue
        pending.append((variant, reference, alternative))
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


def write_variant_scores(
    model: Enformer,
    genome,
    vcf_path: str | os.PathLike,
    out_path: str | os.PathLike,
    head: str = "human",
    tracks=None,
    track_names: Sequence[str] | None = None,
    center_bins: int = 3,
    average_rc: bool = True,
    batch_size: int = 4,
    sequence_length: int | None = None,
    skip_ref_mismatch: bool = False,
    settings: dict | None = None,
    progress: bool = True,
    *,
    targets=None,
) -> Path:
    """``senformer analyze variants``: stream variant scores to a TSV (``chrom pos id ref alt note
    SAD:<track>... center:<track>...``).

    Rows are appended to ``OUT.partial`` as batches finish; the file is renamed to ``out_path`` at the end.
    A rerun skips the rows already in ``OUT.partial`` when its settings (the first ``#`` line) match, and
    does nothing when ``out_path`` exists.

    Args:
        genome: a :class:`senformer.data.genome.Genome` (or anything with ``fetch``) or a FASTA path.
        tracks: ``--tracks`` values (:func:`senformer.data.tracks.select_tracks`; integers are indices);
            default every track of ``head``.
        track_names: column names of the chosen tracks in head order (default their identifiers in the
            head's table).
        sequence_length: input bp (default :func:`senformer.inference.default_sequence_length`).
        targets: a ``targets.txt`` naming the head's tracks (default the shipped table, else
            ``<head>-<index>``); an error when it does not list the head's tracks.
    """
    from ..data.genome import Genome
    from ..data.tracks import head_track_table, select_tracks
    from .common import head_tracks

    out_path = Path(out_path)
    if out_path.exists():
        return out_path
    num_tracks = head_tracks(model, head)
    table = head_track_table(head, num_tracks, targets)
    if targets is not None and table.attrs["source"] != "targets":
        raise UserError(f"{targets} does not list the {num_tracks:,} tracks of head {head!r}")
    positions = select_tracks(tracks, table, head).tolist()
    given = [tracks] if isinstance(tracks, (int, np.integer)) else list(tracks or [])
    if track_names is not None and all(isinstance(t, (int, np.integer)) for t in given) and \
            given and [int(t) for t in given] != positions:
        raise ValueError(f"track_names pair with the tracks in head order ({positions}), not as given ({given})")
    if track_names is None:
        track_names = [table["identifier"][position] for position in positions]
    names = [str(name) for name in track_names]
    genome = Genome(genome) if isinstance(genome, (str, os.PathLike)) else genome
    sequence_length = resolve_sequence_length(model.config, sequence_length)
    if len(names) != len(positions):
        raise ValueError(f"{len(names)} track names for {len(positions)} tracks")
    header = KEY_COLUMNS + ["note"] + [f"SAD:{name}" for name in names] + [f"center:{name}" for name in names]
    recorded = {
        "vcf": str(Path(vcf_path).resolve()), "head": head, "tracks": positions, "center_bins": center_bins,
        "average_rc": average_rc, "sequence_length": sequence_length, **(settings or {}),
    }
    settings_line = "# senformer variants " + json.dumps(recorded, sort_keys=True) + "\n"
    partial = out_path.with_name(out_path.name + ".partial")
    done = _resume(partial, settings_line, header)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    variants = read_vcf(vcf_path)
    with partial.open("a", encoding="utf-8") as handle:
        if done == 0:
            handle.write(settings_line + "\t".join(header) + "\n")
            handle.flush()
        skipped = [next(variants, None) for _ in range(done)]
        if skipped and skipped[-1] is None:
            raise UserError(f"{partial} has {done} rows but {vcf_path} fewer variants: delete the partial file")
        scores = score_variants(model, genome, variants, head, positions, center_bins, average_rc, batch_size,
                                sequence_length, skip_ref_mismatch)
        for variant, sad, central, note in tqdm(scores, desc="variants", unit="variant", disable=not progress,
                                                initial=done):
            values = [_format(value) for value in (*sad, *central)]
            keys = [variant.chrom, str(variant.pos), variant.id, variant.ref, variant.alt, note]
            handle.write("\t".join(keys + values) + "\n")
            handle.flush()
    os.replace(partial, out_path)
    return out_path


def _format(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.6g}"


def _resume(partial: Path, settings_line: str, header: list[str]) -> int:
    """Rows already scored in ``partial`` (0 if absent); a torn last line is cut off."""
    if not partial.exists():
        return 0
    text = partial.read_text(encoding="utf-8")
    lines = text.split("\n")
    if len(lines) < 2 or lines[0] + "\n" != settings_line or lines[1].split("\t") != header:
        raise UserError(
            f"{partial} was written with other settings or is damaged; delete it to start again"
        )
    complete = text[: text.rfind("\n") + 1]
    if complete != text:
        partial.write_text(complete, encoding="utf-8")
    return max(complete.count("\n") - 2, 0)
