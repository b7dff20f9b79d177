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

Genes that overlap the output window without an exon bin in it, variants whose output window meets no gene
(or, with gene-centred windows, that lie in no gene's window), REF alleles that differ from the genome and
alleles that cannot be scored are returned as :class:`GeneNote`, never scored.

**Through the edit engine.** A window's variants run through :class:`senformer.edits.EditEngine` (its
reference tower and U-Net skips once per strand and replicate, per variant only what the variant reaches; the
transformer, U-Net and heads in batches), or whole (``plain=True``, the comparison path): the same numbers
(tests/test_edits.py). Gene-centred windows share one reference among every variant in them, which is where
the engine pays most; a variant-centred window still saves the alternative's trunk.

**Indels.** The project's rule (default, ``indels="refill"``, as for Enformer): the window stays where it is,
the bases right of the variant move and the right end is refilled from the genome, so reference and
alternative are aligned left of the variant and the exon bins are the same for both. calico's rule
(``indels="calico"``, variant-centred windows only, whole windows only): both alleles are cut to the length
around their own centre, so an insertion pushes bases out of both ends and a deletion's reference moves by
half the deletion; then the exon bins no longer sit on the same bases in the two predictions. The formula
over the exon bins is calico's in both; tests/analysis/test_gene_scores.py checks each rule against a direct
computation.
"""

from __future__ import annotations

import bisect
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
NOTE_OUTSIDE = "outside every gene's window"
INDEL_RULES = ("refill", "calico")
CENTRES = ("variant", "gene")


@dataclass(frozen=True)
class GeneScore:
    """Scores of one variant for one gene: ``{stat: (tracks,) float64}``, tracks as :func:`gene_tracks` (those
    :func:`score_window` was asked for)."""

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
        # Bin after bin for every track: a track's sum then never depends on which other tracks are summed
        # with it (NumPy sums a single column, or a block gathered in Fortran order, pairwise instead).
        return np.add.accumulate(chosen, axis=0)[-1]

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


# Windows ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneWindow:
    """One input window: ``start`` (0-based) on ``chrom``, the ``variants`` scored in it and the ``genes`` it
    scores them for (every gene given for variant-centred windows, the centring gene for gene-centred ones)."""

    chrom: str
    start: int
    variants: tuple[Variant, ...]
    genes: tuple[Gene, ...]


def plan_windows(variants: Sequence[Variant], genes: Sequence[Gene], sequence_length: int, centre: str = "variant"
                 ) -> tuple[list[GeneWindow], list[GeneNote]]:
    """The windows that score ``variants`` (in order: one per variant, or one per gene in ``genes`` order with
    the variants whose REF lies inside it), and a note for each variant outside every gene's window."""
    if centre not in CENTRES:
        raise UserError(f"centre={centre!r}: choose {' or '.join(CENTRES)}")
    if centre == "variant":
        listed: dict[str, list[Gene]] = {}
        for gene in genes:
            listed.setdefault(gene.chrom, []).append(gene)
        by_chrom = {chrom: tuple(members) for chrom, members in listed.items()}  # one tuple shared by its windows
        windows = [GeneWindow(variant.chrom, variant_window_start(variant, sequence_length), (variant,),
                              by_chrom.get(variant.chrom, ())) for variant in variants]
        return windows, []
    # Each gene's variants by bisection over its chromosome's variants sorted by start (file order kept inside).
    order: dict[str, list[int]] = {}
    for index, variant in enumerate(variants):
        order.setdefault(variant.chrom, []).append(index)
    for indices in order.values():
        indices.sort(key=lambda index: variants[index].start)
    starts = {chrom: [variants[index].start for index in indices] for chrom, indices in order.items()}
    windows, placed = [], set()
    for gene in genes:
        start = gene_window_start(gene, sequence_length)
        indices, chrom_starts = order.get(gene.chrom, []), starts.get(gene.chrom, [])
        first = bisect.bisect_left(chrom_starts, start)
        candidates = indices[first : bisect.bisect_left(chrom_starts, start + sequence_length)]
        inside = [index for index in sorted(candidates)
                  if variants[index].start + len(variants[index].ref) <= start + sequence_length]
        if inside:
            windows.append(GeneWindow(gene.chrom, start, tuple(variants[index] for index in inside), (gene,)))
            placed.update(inside)
    notes = [GeneNote(variant, None, NOTE_OUTSIDE) for index, variant in enumerate(variants) if index not in placed]
    return windows, notes


# Scoring ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowPlan:
    """What a window scores, known before any model runs: its input ``bases`` (for a deletion, with the bases
    beyond it), the genes with exon bins in its output (``chosen``: (gene, (exon bins,))), the variants'
    edits and the notes of what is not scored. A run resumed after some windows rebuilds their notes from it."""

    bases: str
    chosen: tuple[tuple[Gene, np.ndarray], ...]
    edits: tuple[tuple[Variant, object], ...]  # (variant, senformer.edits.Edit)
    notes: tuple[GeneNote, ...]

    @property
    def rows(self) -> int:
        """Scored (variant, gene) rows of the window."""
        return len(self.edits) * len(self.chosen)


def plan_window(genome: Genome, window: GeneWindow, geometry: Geometry) -> WindowPlan:
    """The :class:`WindowPlan` of ``window`` for a model of ``geometry`` (notes in :func:`score_window`'s order)."""
    from ..edits import Edit

    output_start = window.start + geometry.offset_bins * geometry.bin_size
    output_end = output_start + geometry.output_bp
    notes: list[GeneNote] = []
    chosen: list[tuple[Gene, np.ndarray]] = []
    no_exon: list[Gene] = []
    for gene in window.genes:
        if gene.chrom != window.chrom or gene.end <= output_start or gene.start >= output_end:
            continue
        bins = exon_bins(gene.exons, output_start, geometry.bins, geometry.bin_size)
        if bins.size:
            chosen.append((gene, bins))
        else:
            no_exon.append(gene)
    flank = max([0] + [len(variant.ref) - len(variant.alt) for variant in window.variants])
    bases = genome.fetch(Interval(window.chrom, window.start, window.start + geometry.sequence_length + flank))
    edits: list[tuple[Variant, Edit]] = []
    for variant in window.variants:
        position = variant.start - window.start
        observed = bases[position : position + len(variant.ref)]
        if variant.skip is not None:
            notes.append(GeneNote(variant, None, variant.skip))
        elif observed != variant.ref:
            notes.append(GeneNote(variant, None, f"REF {variant.ref} differs from the genome ({observed})"))
        else:
            notes.extend(GeneNote(variant, gene, NOTE_NO_EXON) for gene in no_exon)
            if chosen:
                edits.append((variant, Edit(position, variant.ref, variant.alt, "right")))
            elif not no_exon:
                notes.append(GeneNote(variant, None, NOTE_NO_GENE))
    return WindowPlan(bases, tuple(chosen), tuple(edits), tuple(notes))


def score_window(models: Sequence[torch.nn.Module], genome: Genome, window: GeneWindow, table: pd.DataFrame, *,
                 head: str = "human", sequence_length: int | None = None, reverse_complement: bool = True,
                 indels: str = "refill", plain: bool = False, batch_size: int = 4, columns: np.ndarray | None = None
                 ) -> tuple[list[GeneScore], list[GeneNote]]:
    """SED and logSED of every variant of ``window`` for every gene of ``window.genes`` with exon bins in its
    output, averaged over ``models`` (replicates, score by score).

    Args:
        models: Borzoi models in eval mode with the same geometry; ``table``: the track table of ``head``.
        sequence_length: input bp (None: the model's default).
        indels: ``refill`` or ``calico`` (module docstring; calico's only for a one-variant window).
        plain: run whole windows instead of the edit engine (the same numbers).
        columns: (kept,) ascending positions on the gene track axis (:func:`gene_tracks`'s order) to score;
            None: all of them. Only their tracks are untransformed and summed, and each kept score has the
            bits it has in a run of every track (tests/analysis/test_genes_cli.py).
    Returns:
        (scores, notes): a :class:`GeneScore` per scored (variant, gene) in variant then gene order, its
        scores ``(kept,)``; a :class:`GeneNote` for each variant not scored (its allele, its REF, no gene)
        and each gene without exon bins in the output.
    """
    from ..edits import EditEngine
    from ..sequence import tokens

    if not models:
        raise ValueError("score_window needs at least one model")
    if indels not in INDEL_RULES:
        raise UserError(f"indels={indels!r}: choose {' or '.join(INDEL_RULES)}")
    geometry = Geometry.of(models[0].config, sequence_length)
    length = geometry.sequence_length
    plan = plan_window(genome, window, geometry)
    bases, chosen, edits, notes = plan.bases, plan.chosen, plan.edits, list(plan.notes)
    if not edits:
        return [], notes
    if indels == "calico" and len(window.variants) > 1:
        raise UserError("indels='calico' cuts each allele around its own variant: variant-centred windows only")

    # The table rows the kept columns read on either strand (their union, ascending), and where each strand's
    # columns lie among them: only those rows of the predictions are untransformed.
    strand_rows = {strand: gene_tracks(table, strand) for strand in "+-"}
    if columns is not None:
        strand_rows = {strand: rows[columns] for strand, rows in strand_rows.items()}
    kept = np.union1d(strand_rows["+"], strand_rows["-"])
    kept_table = table.iloc[kept].reset_index(drop=True)
    strand_columns = {strand: np.searchsorted(kept, rows) for strand, rows in strand_rows.items()}

    strand_pair = np.array(table["strand_pair"], dtype=np.int64)
    totals: dict[tuple[int, str, str], np.ndarray] = {}

    def add(index: int, reference: np.ndarray, alternative: np.ndarray) -> None:
        for gene, bins in chosen:
            tracks = strand_columns["+" if gene.strand == "+" else "-"]
            for stat, value in sed_scores(reference, alternative, bins, tracks).items():
                key = (index, gene.gene_id, stat)
                totals[key] = totals[key] + value if key in totals else value

    for model in models:
        if indels == "calico" and edits[0][1].changes_length:
            add(0, *_calico_coverage(model, bases, edits[0][1], length, head, table, reverse_complement, kept))
            continue
        engine = EditEngine(model, torch.from_numpy(tokens(bases[:length]).astype(np.int64)), heads=[head],
                            right_flank=torch.from_numpy(tokens(bases[length:]).astype(np.int64)),
                            reverse_complement=reverse_complement, strand_pairs={head: strand_pair},
                            accumulate=torch.float64, plain=plain, batch_size=batch_size)
        reference = _coverage(engine.reference_output()[head].numpy()[None][..., kept], kept_table, window)[0]
        done = 0
        for batch, outputs in engine.score(edit for _, edit in edits):
            for offset, alternative in enumerate(_coverage(outputs[head].numpy()[..., kept], kept_table, window)):
                add(done + offset, reference, alternative)
            done += len(batch)
    scores = [GeneScore(variant, gene, bins, {stat: totals[(index, gene.gene_id, stat)] / len(models)
                                              for stat in SED_STATS})
              for index, (variant, _) in enumerate(edits) for gene, bins in chosen]
    return scores, notes


def _coverage(predictions: np.ndarray, table: pd.DataFrame, window: GeneWindow) -> np.ndarray:
    """(batch, bins, tracks) squashed-scale predictions -> coverage; non-finite ones are one UserError line."""
    coverage = undo_squashed_scale(predictions, table)
    if not np.isfinite(coverage).all():
        raise UserError(f"{window.chrom}:{window.start + 1}: the model's predictions are not finite")
    return coverage


def _calico_coverage(model, bases: str, edit, length: int, head: str, table: pd.DataFrame,
                     reverse_complement: bool, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference, alternative) coverage of the ``kept`` table rows of calico's whole indel windows
    (:func:`calico_alleles`)."""
    from ..inference import predict_batch
    from ..sequence import tokens, tokens_to_one_hot

    parameter = next(model.parameters())
    alleles = calico_alleles(bases, edit.position, edit.ref, edit.alt, length)
    inputs = torch.stack([tokens_to_one_hot(torch.from_numpy(tokens(allele).astype(np.int64)), parameter.dtype)
                          for allele in alleles]).to(parameter.device)
    predictions = predict_batch(model, inputs, heads=[head], reverse_complement=reverse_complement,
                                accumulate=torch.float64,
                                strand_pairs={head: np.array(table["strand_pair"], dtype=np.int64)})[head].numpy()
    coverage = undo_squashed_scale(predictions[..., kept], table.iloc[kept])
    return coverage[0], coverage[1]


def score_variant_genes(models: Sequence[torch.nn.Module], genome: Genome, variant: Variant, genes: Sequence[Gene],
                        table: pd.DataFrame, *, head: str = "human", sequence_length: int | None = None,
                        centre: Gene | None = None, reverse_complement: bool = True, indels: str = "refill",
                        plain: bool = False) -> tuple[list[GeneScore], list[GeneNote]]:
    """SED and logSED of one ``variant`` for every gene of ``genes`` that meets its output window
    (:func:`score_window`); ``centre``: None for calico's variant-centred window, else the gene whose midpoint
    centres it. A variant outside the window, an allele that cannot be scored and a REF that differs from the
    genome are one UserError line here (a cohort run notes them instead)."""
    if not models:
        raise ValueError("score_variant_genes needs at least one model")
    if indels == "calico" and centre is not None:
        raise UserError(f"indels={indels!r}: calico's indel windows are variant-centred only")
    if variant.skip is not None:
        raise UserError(f"{variant.chrom}:{variant.pos} {variant.ref}>{variant.alt}: {variant.skip}")
    length = Geometry.of(models[0].config, sequence_length).sequence_length
    start = variant_window_start(variant, length) if centre is None else gene_window_start(centre, length)
    position = variant.start - start
    if position < 0 or position + len(variant.ref) > length:
        raise UserError(f"{variant.chrom}:{variant.pos}: the variant lies outside the window centred on "
                        f"{centre.gene_id if centre is not None else 'it'}")
    window = GeneWindow(variant.chrom, start, (variant,), tuple(genes))
    scores, notes = score_window(models, genome, window, table, head=head, sequence_length=length,
                                 reverse_complement=reverse_complement, indels=indels, plain=plain)
    mismatch = [note for note in notes if note.note.startswith("REF ")]
    if mismatch:
        raise UserError(f"{variant.chrom}:{variant.pos}: {mismatch[0].note}")
    return scores, notes
