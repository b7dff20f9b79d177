"""Gene-level variant effects of Borzoi: SED and logSED over a gene's exon bins, as calico defines them.

The definitions follow calico's ``borzoi_sed.py`` (calico/borzoi ``src/scripts``) and baskerville's
``gene.py``:

- **Windows.** Variant-centred: the input starts at ``POS - L // 2`` (0-based), so the variant's first base
  sits at input index ``L // 2 - 1`` (``bvcf.snp_seq1``). Gene-centred: the input is centred on the gene's
  midpoint (:attr:`senformer.data.gtf.Gene.midpoint`, ``GeneSNPCluster.delimit``). The output window is the
  input less the model's crop (:class:`senformer.windows.Geometry`). Indels follow the project's edit (the
  right end refilled, as for Enformer), or calico's centred trim on request (:func:`calico_alleles`).
- **Exon bins.** Per merged exon, relative to the output window's start and clipped at 0: bins
  ``round(start / bin_size)`` to ``round(end / bin_size)`` (NumPy's round, half to even: a bin counts when
  more than half of it is exonic), clipped to the output; the union over exons (``map_snpseq_genes``).
- **Tracks.** A track's strand is ``.`` when it is its own ``strand_pair`` and else the last character of its
  identifier (``dataset.targets_prep_strand``); a ``+`` gene takes the tracks not on ``-``, any other gene
  those not on ``+`` (the same number, in the same order: a stranded pair's ``+`` and ``-`` rows).
- **Order of averaging.** The reverse complement is averaged with the forward pass in the model's squashed
  scale, its stranded tracks swapped with their ``strand_pair`` (``seqnn.build_ensemble``); that mean is
  untransformed to coverage (:func:`senformer.data.borzoi_targets.undo_squashed_scale`); per gene and track
  ``SED = sum(alt) - sum(ref)`` and ``logSED = log2(1 + sum(alt)) - log2(1 + sum(ref))`` over the exon bins;
  replicates are averaged last, score by score (``borzoi_sed_folds.py``'s ``ensemble_h5``).

Genes that overlap the output window without an exon bin in it, and variants whose output window meets no
gene, are returned as :class:`GeneNote`, never scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.borzoi_targets import undo_squashed_scale
from ..data.genome import Genome, Interval
from ..data.gtf import Gene
from ..data.vcf import Variant
from ..errors import UserError
from ..windows import Geometry

SED_STATS = ("SED", "logSED")
NOTE_NO_EXON = "no exon bin in the output window"
NOTE_NO_GENE = "no gene in the output window"
INDEL_RULES = ("refill", "calico")


@dataclass(frozen=True)
class GeneScore:
    """Scores of one variant for one gene: ``{stat: (tracks,) float64}``, tracks as :func:`gene_tracks`."""

    variant: Variant
    gene: Gene
    bins: np.ndarray  # (exon bins,) output bins summed
    scores: dict[str, np.ndarray]


@dataclass(frozen=True)
class GeneNote:
    """A variant (and gene, when one is concerned) that was not scored, and why."""

    variant: Variant
    gene: Gene | None
    note: str


# Pure functions ---------------------------------------------------------------------------------------------
def track_strands(table: pd.DataFrame) -> np.ndarray:
    """(tracks,) ``+``, ``-`` or ``.`` per track of a Borzoi track table (calico's rule, module docstring)."""
    pairs = table["strand_pair"].to_numpy(dtype=np.int64)
    strands = np.array(["." if pair == row else str(identifier)[-1:]
                        for row, (pair, identifier) in enumerate(zip(pairs, table["identifier"]))])
    odd = np.flatnonzero(~np.isin(strands, ["+", "-", "."]))
    if odd.size:
        raise UserError(f"track {table['identifier'].iloc[odd[0]]!r} has a strand pair but its identifier does "
                        "not end in + or -")
    return strands


def gene_tracks(table: pd.DataFrame, strand: str) -> np.ndarray:
    """(tracks,) row indices of the tracks scored for a gene on ``strand`` (the stranded ones of its strand,
    every unstranded one), in table order."""
    strands = track_strands(table)
    return np.flatnonzero(strands != "-") if strand == "+" else np.flatnonzero(strands != "+")


def exon_bins(exons: Sequence[tuple[int, int]], output_start: int, bins: int, bin_size: int) -> np.ndarray:
    """(n,) sorted output bins of ``exons`` (0-based half-open) in an output window of ``bins`` bins of
    ``bin_size`` bp starting at ``output_start`` (calico's majority rule, module docstring)."""
    chosen: list[int] = []
    for start, end in exons:
        first = min(int(np.round(max(0, start - output_start) / bin_size)), bins)
        last = min(int(np.round(max(0, end - output_start) / bin_size)), bins)
        chosen.extend(range(first, last))
    return np.unique(np.asarray(chosen, dtype=np.int64))


def sed_scores(reference: np.ndarray, alternative: np.ndarray, bins: np.ndarray,
               tracks: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"SED", "logSED"}: (tracks,) float64`` from coverage (untransformed) ``(output bins, all tracks)``
    over ``bins`` and the chosen ``tracks`` (default all)."""

    def summed(coverage) -> np.ndarray:
        chosen = np.asarray(coverage, dtype=np.float64)[bins]
        chosen = chosen if tracks is None else chosen[:, tracks]
        # C order fixes the order of the additions: a gathered column block can come back in Fortran order.
        return np.ascontiguousarray(chosen).sum(axis=0)

    reference_sum, alternative_sum = summed(reference), summed(alternative)
    return {"SED": alternative_sum - reference_sum,
            "logSED": np.log2(alternative_sum + 1) - np.log2(reference_sum + 1)}


def variant_window_start(variant: Variant, sequence_length: int) -> int:
    """0-based input start of calico's variant-centred window (``bvcf.snp_seq1``)."""
    return variant.pos - sequence_length // 2


def gene_window_start(gene: Gene, sequence_length: int) -> int:
    """0-based input start of a window centred on ``gene``'s midpoint."""
    return gene.midpoint - sequence_length // 2


def calico_alleles(bases: str, position: int, ref: str, alt: str, length: int) -> tuple[str, str]:
    """(reference, alternative) inputs of ``length`` bp as calico's ``bvcf.snp_seq1`` makes them from
    ``bases`` (the window and, for a deletion, ``len(ref) - len(alt)`` bp beyond it): the allele is replaced
    in place, then each sequence is cut to ``length`` keeping its centre (``dna_length_1hot``: the extra
    ``(n - length) // 2`` bp leave on the left, the rest on the right) or padded with N on both sides. So an
    insertion pushes bases out of both ends, and a deletion's reference window moves right by half the
    deletion while its alternative does not."""

    def fit(sequence: str) -> str:
        if len(sequence) > length:
            trim = (len(sequence) - length) // 2
            return sequence[trim : trim + length]
        front = (length - len(sequence)) // 2
        return "N" * front + sequence + "N" * (length - len(sequence) - front)

    return fit(bases), fit(bases[:position] + alt + bases[position + len(ref):])


# The whole-window scorer ------------------------------------------------------------------------------------
def _strand_averaged(model, inputs: torch.Tensor, head: str, strand_pair: np.ndarray,
                     reverse_complement: bool) -> np.ndarray:
    """(batch, bins, tracks) float64: the model's squashed-scale output, averaged with its reverse
    complement (flipped back along bins, stranded tracks swapped with their pair) when asked."""
    from ..inference import predict_batch

    return predict_batch(model, inputs, heads=[head], reverse_complement=reverse_complement,
                         accumulate=torch.float64, strand_pairs={head: strand_pair})[head].numpy()


def score_variant_genes(models: Sequence[torch.nn.Module], genome: Genome, variant: Variant, genes: Sequence[Gene],
                        table: pd.DataFrame, *, head: str = "human", sequence_length: int | None = None,
                        centre: Gene | None = None, reverse_complement: bool = True, indels: str = "refill"
                        ) -> tuple[list[GeneScore], list[GeneNote]]:
    """SED and logSED of ``variant`` for every gene of ``genes`` that meets its output window, by running the
    whole reference and alternative windows through each model of ``models`` (replicates, averaged).

    Args:
        models: Borzoi models in eval mode with the same geometry; ``table``: the track table of ``head``.
        centre: None for calico's variant-centred window, else the gene whose midpoint centres it.
        sequence_length: input bp (None: the model's default).
        indels: ``refill`` (the project's :class:`senformer.edits.Edit`: the reference window stays, an indel
            moves the bases to its right and refills the right end) or ``calico`` (``bvcf.snp_seq1``, variant-
            centred windows only: :func:`calico_alleles`).
    Returns:
        (scores, notes): a :class:`GeneScore` per scored gene in ``genes`` order; a :class:`GeneNote` per gene
        without exon bins in the window, or one for the variant when no gene meets the window.
    """
    from ..edits import Edit, EditEngine
    from ..sequence import tokens, tokens_to_one_hot

    if not models:
        raise ValueError("score_variant_genes needs at least one model")
    if indels not in INDEL_RULES or (indels == "calico" and centre is not None):
        raise UserError(f"indels={indels!r}: choose {' or '.join(INDEL_RULES)} (calico's only for variant-centred "
                        "windows)")
    if variant.skip is not None:
        raise UserError(f"{variant.chrom}:{variant.pos} {variant.ref}>{variant.alt}: {variant.skip}")
    geometry = Geometry.of(models[0].config, sequence_length)
    length = geometry.sequence_length
    start = variant_window_start(variant, length) if centre is None else gene_window_start(centre, length)
    output_start = start + geometry.offset_bins * geometry.bin_size
    output_end = output_start + geometry.output_bp
    position = variant.start - start
    if position < 0 or position + len(variant.ref) > length:
        raise UserError(f"{variant.chrom}:{variant.pos}: the variant lies outside the window centred on "
                        f"{centre.gene_id if centre is not None else 'it'}")
    flank = max(0, len(variant.ref) - len(variant.alt))  # a deletion pulls bases in from the right
    bases = genome.fetch(Interval(variant.chrom, start, start + length + flank))
    observed = bases[position : position + len(variant.ref)]
    if observed != variant.ref:
        raise UserError(f"{variant.chrom}:{variant.pos}: REF {variant.ref} differs from the genome ({observed})")

    notes: list[GeneNote] = []
    chosen: list[tuple[Gene, np.ndarray]] = []
    for gene in genes:
        if gene.chrom != variant.chrom or gene.end <= output_start or gene.start >= output_end:
            continue
        bins = exon_bins(gene.exons, output_start, geometry.bins, geometry.bin_size)
        if bins.size:
            chosen.append((gene, bins))
        else:
            notes.append(GeneNote(variant, gene, NOTE_NO_EXON))
    if not chosen:
        if not notes:
            notes.append(GeneNote(variant, None, NOTE_NO_GENE))
        return [], notes

    reference = torch.from_numpy(tokens(bases[:length]).astype(np.int64))
    right = torch.from_numpy(tokens(bases[length:]).astype(np.int64))
    strand_pair = table["strand_pair"].to_numpy(dtype=np.int64)
    edit = Edit(position, variant.ref, variant.alt, "right")
    totals: dict[tuple[str, str], np.ndarray] = {}
    for model in models:
        if indels == "calico":
            alleles = calico_alleles(bases, position, variant.ref, variant.alt, length)
            dtype = next(model.parameters()).dtype
            inputs = torch.stack([tokens_to_one_hot(torch.from_numpy(tokens(allele).astype(np.int64)), dtype)
                                  for allele in alleles]).to(next(model.parameters()).device)
        else:
            engine = EditEngine(model, reference, heads=[head], right_flank=right, plain=True)
            inputs = torch.stack([engine.input(), engine.edited_input(edit)])
        coverage = undo_squashed_scale(_strand_averaged(model, inputs, head, strand_pair, reverse_complement), table)
        if not np.isfinite(coverage).all():
            raise UserError(f"{variant.chrom}:{variant.pos}: the model's predictions are not finite")
        for gene, bins in chosen:
            tracks = gene_tracks(table, gene.strand)
            for stat, value in sed_scores(coverage[0], coverage[1], bins, tracks).items():
                key = (gene.gene_id, stat)
                totals[key] = totals[key] + value if key in totals else value
    scores = [GeneScore(variant, gene, bins, {stat: totals[(gene.gene_id, stat)] / len(models) for stat in SED_STATS})
              for gene, bins in chosen]
    return scores, notes
