"""Gene-level SED and logSED against a direct whole-window computation written here from calico's
``borzoi_sed.py`` (window at POS - L // 2, exon bins by rounding, strand-matched tracks, reverse complement
averaged with strand pairs swapped before the untransform, replicates averaged last)."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import SHARED, randomize_, write_random_chromosome
from senformer.analysis.gene_scores import (
    NOTE_NO_EXON, NOTE_NO_GENE, SED_STATS, GeneWindow, calico_alleles, exon_bins, gene_tracks, score_variant_genes,
    score_window, sed_scores, track_strands, variant_window_start,
)
from senformer.config import BorzoiConfig
from senformer.data.genome import Genome
from senformer.data.gtf import read_gtf
from senformer.data.vcf import Variant
from senformer.errors import UserError
from senformer.model.borzoi import Borzoi

CD99 = SHARED / "data" / "borzoi" / "CD99_example.gtf"
LENGTH = 16_384  # 128 positions of 128 bp; 508 output bins of 32 bp (crop 2): 4 to 8 of CD99's 13 exons per window
CHROM_LENGTH = 2_800_000


def tiny_borzoi(seed: int) -> Borzoi:
    """Borzoi's geometry (6 tower blocks, 2 U-Net levels: 32-bp bins) at tiny widths, float64."""
    config = BorzoiConfig(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5,
                          conv_tower_start=8, conv_tower_divisible_by=4, crop=2, final_channels=12,
                          output_heads={"human": 3}, dropout_rate=0.0, attention_dropout_rate=0.0,
                          positional_dropout_rate=0.0, final_dropout_rate=0.0)
    torch.manual_seed(seed)
    # Weights of scale 0.3 (not the helpers' 0.2) let a variant move the exon sums by ~1e-4 of themselves:
    # then 1e-10 relative on SED, a difference of sums, is a statement about the scores, not about roundoff.
    return randomize_(Borzoi(config), seed, scale=0.3).double().eval()


def track_table() -> pd.DataFrame:
    """A stranded pair (+, -) and an unstranded track; soft clips low enough that predictions cross them."""
    return pd.DataFrame({
        "identifier": ["RNA1+", "RNA1-", "DNASE1"], "clip": [384.0] * 3, "clip_soft": [0.3, 0.5, 0.4],
        "scale": [2.0, 0.5, 1.0], "sum_stat": ["sum_sqrt", "sum_sqrt", "sum"], "strand_pair": [1, 0, 2],
        "description": ["RNA:x", "RNA:x", "DNASE:y"],
    })


# calico, written out -----------------------------------------------------------------------------------------
def calico_exons(path) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """{gene_id: (strand, merged exons)} from the GTF's exon rows, positions united per gene."""
    positions: dict[str, set[int]] = {}
    strands = {}
    for line in open(path):
        columns = line.rstrip("\n").split("\t")
        if line.startswith("#") or columns[2] != "exon":
            continue
        gene_id = columns[8].split('gene_id "')[1].split('"')[0]
        positions.setdefault(gene_id, set()).update(range(int(columns[3]) - 1, int(columns[4])))
        strands[gene_id] = columns[6]
    genes = {}
    for gene_id, covered in positions.items():
        ordered = sorted(covered)
        runs, first = [], ordered[0]
        for previous, current in zip(ordered, ordered[1:]):
            if current != previous + 1:
                runs.append((first, previous + 1))
                first = current
        runs.append((first, ordered[-1] + 1))
        genes[gene_id] = (strands[gene_id], runs)
    return genes


def calico_sed(models, sequence: str, pos: int, ref: str, alt: str, gtf, table: pd.DataFrame,
               start: int | None = None, indels: str = "refill") -> dict:
    """{gene_id: {stat: (tracks,)}}, replicate-averaged, from whole windows starting at ``start`` (0-based;
    default calico's variant-centred start); indels refilled from the right, or cut as ``bvcf.snp_seq1``."""
    if start is None:
        start = pos - LENGTH // 2  # bvcf.snp_seq1: 1-based pos - (L // 2 - 1), as a 0-based start
    index = pos - 1 - start
    if indels == "refill":
        reference = sequence[start : start + LENGTH]
        alternative = (sequence[start : pos - 1] + alt + sequence[pos - 1 + len(ref) : start + LENGTH + len(ref)])[:LENGTH]
    else:  # snp_seq1 fetches to pos + L // 2 + max(0, len(ref) - len(alt)); dna_length_1hot keeps the centre
        fetched = sequence[start : start + LENGTH + max(0, len(ref) - len(alt))]
        swapped = fetched[:index] + alt + fetched[index + len(ref):]
        reference, alternative = (s[(len(s) - LENGTH) // 2 :][:LENGTH] for s in (fetched, swapped))
        assert len(alternative) == LENGTH  # a deletion's alternative is exactly L, an insertion's is cut
    assert sequence[pos - 1 : pos - 1 + len(ref)] == ref
    one_hot = torch.from_numpy(np.stack([[np.eye(4)["ACGT".index(base)] for base in s] for s in [reference, alternative]]))
    pairs = table["strand_pair"].to_numpy()
    crop, bins = 2, LENGTH // 32 - 4
    output_start = start + crop * 32
    strand_of = np.array(["." if pair == row else name[-1] for row, (pair, name) in enumerate(zip(pairs, table.identifier))])
    result: dict = {}
    for model in models:
        with torch.no_grad():
            forward = model(one_hot)["human"].numpy()
            backward = model(one_hot.flip(1).flip(2))["human"].numpy()[:, ::-1][..., pairs]
        preds = (forward + backward) / 2
        scale, soft = table.scale.to_numpy(), table.clip_soft.to_numpy()
        coverage = preds / scale
        coverage = np.where(coverage > soft, soft + (coverage - soft) ** 2, coverage)
        root = np.array(["_sqrt" in stat for stat in table.sum_stat])
        coverage[..., root] = coverage[..., root] ** (4 / 3)
        coverage = coverage * scale
        for gene_id, (strand, exons) in calico_exons(gtf).items():
            chosen = []
            for exon_start, exon_end in exons:
                if exon_end <= output_start or exon_start >= output_start + bins * 32:
                    continue
                low = min(int(np.round(max(0, exon_start - output_start) / 32)), bins)
                high = min(int(np.round(max(0, exon_end - output_start) / 32)), bins)
                chosen.extend(range(low, high))
            chosen = np.unique(chosen).astype(int)
            mask = strand_of != "-" if strand == "+" else strand_of != "+"
            ref_sum = coverage[0][chosen][:, mask].sum(axis=0)
            alt_sum = coverage[1][chosen][:, mask].sum(axis=0)
            scores = {"SED": alt_sum - ref_sum, "logSED": np.log2(alt_sum + 1) - np.log2(ref_sum + 1)}
            for stat, value in scores.items():
                result.setdefault(gene_id, {}).setdefault(stat, []).append(value)
    return {gene: {stat: np.mean(values, axis=0) for stat, values in stats.items()} for gene, stats in result.items()}


# Fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not CD99.exists():
        pytest.skip(f"{CD99} is not here")
    folder = tmp_path_factory.mktemp("genes")
    sequence = write_random_chromosome(folder / "genome.fa", CHROM_LENGTH, seed=7, name="chrX")
    plus = folder / "plus.gtf"
    shutil.copy(CD99, plus)
    minus = folder / "minus.gtf"
    minus.write_text("".join(
        "\t".join(columns[:6] + ["-"] + columns[7:]) if len(columns) == 9 else line
        for line in plus.read_text().splitlines(keepends=True) for columns in [line.split("\t")]))
    both = folder / "both.gtf"  # the gene on both strands (the - copy renamed): one prediction scores both
    both.write_text(plus.read_text() + minus.read_text().replace('gene_id "', 'gene_id "minus-'))
    return {"sequence": sequence, "genome": Genome(folder / "genome.fa"), "plus": plus, "minus": minus,
            "both": both, "models": [tiny_borzoi(1), tiny_borzoi(2)]}


def variant_at(sequence: str, kind: str) -> Variant:
    if kind == "snv":
        pos = 2_714_430  # in CD99's second exon
        ref = sequence[pos - 1]
        return Variant("chrX", pos, ref, "ACGT"[("ACGT".index(ref) + 1) % 4])
    if kind == "insertion":
        pos = 2_717_620
        return Variant("chrX", pos, sequence[pos - 1], sequence[pos - 1] + "GATTACA")
    pos = 2_719_670
    return Variant("chrX", pos, sequence[pos - 1 : pos + 5], sequence[pos - 1])


# Tests -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["snv", "insertion", "deletion"])
def test_sed_equals_calico_whole_windows(world, kind):
    """Through the edit engine (the default) and whole windows (plain), both strands of gene."""
    table = track_table()
    variant = variant_at(world["sequence"], kind)
    genes = read_gtf(world["both"])
    expected = calico_sed(world["models"], world["sequence"], variant.pos, variant.ref, variant.alt, world["both"],
                          table)
    for plain in (False, True) if kind == "deletion" else (False,):
        scores, notes = score_variant_genes(world["models"], world["genome"], variant, genes, table,
                                            sequence_length=LENGTH, plain=plain)
        assert notes == [] and [score.gene.gene_id for score in scores] == list(expected)
        assert [score.gene.strand for score in scores] == ["+", "-"]
        for score in scores:
            for stat in ("SED", "logSED"):
                want = expected[score.gene.gene_id][stat]
                np.testing.assert_allclose(score.scores[stat], want, rtol=1e-10, atol=0)
                assert np.all(np.abs(want) > 0)  # the variant moves the coverage: the comparison is not of zeros


@pytest.mark.parametrize("kind", ["insertion", "deletion"])
def test_calico_indel_windows(world, kind):
    table = track_table()
    variant = variant_at(world["sequence"], kind)
    scores, notes = score_variant_genes(world["models"], world["genome"], variant, read_gtf(world["plus"]), table,
                                        sequence_length=LENGTH, indels="calico")
    expected = calico_sed(world["models"], world["sequence"], variant.pos, variant.ref, variant.alt, world["plus"],
                          table, indels="calico")
    refill, _ = score_variant_genes(world["models"], world["genome"], variant, read_gtf(world["plus"]), table,
                                    sequence_length=LENGTH)
    assert notes == [] and len(scores) == 1
    for stat in ("SED", "logSED"):
        np.testing.assert_allclose(scores[0].scores[stat], expected[scores[0].gene.gene_id][stat], rtol=1e-10, atol=0)
        assert not np.allclose(scores[0].scores[stat], refill[0].scores[stat])  # the two rules differ
    with pytest.raises(UserError, match="indels='calico'"):
        score_variant_genes(world["models"], world["genome"], variant, read_gtf(world["plus"]), table,
                            sequence_length=LENGTH, indels="calico", centre=scores[0].gene)


def test_gene_centred_window(world):
    table = track_table()
    variant = variant_at(world["sequence"], "deletion")
    (gene,) = read_gtf(world["minus"])
    positions = [p for start, end in gene.exons for p in range(start, end)]
    start = int(np.mean(positions)) - LENGTH // 2  # baskerville Gene.midpoint
    scores, notes = score_variant_genes(world["models"], world["genome"], variant, [gene], table,
                                        sequence_length=LENGTH, centre=gene)
    expected = calico_sed(world["models"], world["sequence"], variant.pos, variant.ref, variant.alt, world["minus"],
                          table, start=start)
    assert notes == [] and len(scores) == 1
    for stat in ("SED", "logSED"):
        np.testing.assert_allclose(scores[0].scores[stat], expected[gene.gene_id][stat], rtol=1e-10, atol=0)


def test_minus_strand_genes_read_minus_tracks(world):
    table = track_table()
    variant = variant_at(world["sequence"], "snv")
    plus, _ = score_variant_genes(world["models"][:1], world["genome"], variant, read_gtf(world["plus"]), table,
                                  sequence_length=LENGTH)
    minus, _ = score_variant_genes(world["models"][:1], world["genome"], variant, read_gtf(world["minus"]), table,
                                   sequence_length=LENGTH)
    # Same exon bins; the unstranded track agrees, the stranded one is the other strand's.
    np.testing.assert_array_equal(plus[0].bins, minus[0].bins)
    assert plus[0].scores["SED"][1] == minus[0].scores["SED"][1]
    assert plus[0].scores["SED"][0] != minus[0].scores["SED"][0]


def test_genes_without_exon_bins_and_variants_without_genes_are_notes(world, tmp_path):
    table = track_table()
    sequence = world["sequence"]
    # A gene whose span covers the window but whose exons lie outside its output.
    gtf = tmp_path / "wide.gtf"
    gtf.write_text('chrX\tt\texon\t1000000\t1000100\t.\t+\t.\tgene_id "WIDE"; gene_name "WIDE";\n'
                   'chrX\tt\texon\t2000000\t2000100\t.\t+\t.\tgene_id "WIDE"; gene_name "WIDE";\n')
    pos = 1_500_000
    variant = Variant("chrX", pos, sequence[pos - 1], "A" if sequence[pos - 1] != "A" else "C")
    scores, notes = score_variant_genes(world["models"][:1], world["genome"], variant, read_gtf(gtf), table,
                                        sequence_length=LENGTH)
    assert scores == [] and [(note.gene.gene_id, note.note) for note in notes] == [("WIDE", NOTE_NO_EXON)]
    far = Variant("chrX", 100_000, sequence[99_999], "A" if sequence[99_999] != "A" else "C")
    scores, notes = score_variant_genes(world["models"][:1], world["genome"], far, read_gtf(world["plus"]), table,
                                        sequence_length=LENGTH)
    assert scores == [] and [(note.gene, note.note) for note in notes] == [(None, NOTE_NO_GENE)]
    wrong = Variant("chrX", pos, "ACGTACGT"[:1] if sequence[pos - 1] != "A" else "C", "G")
    with pytest.raises(UserError, match="differs from the genome"):
        score_variant_genes(world["models"][:1], world["genome"], wrong, read_gtf(world["plus"]), table,
                            sequence_length=LENGTH)


def test_chosen_columns_have_the_bits_of_every_column(world):
    """``columns`` (--tracks): each kept score is its column of a run of every track, float64 bit for bit, for
    genes of both strands (one column alone too, which NumPy would sum pairwise)."""
    table = track_table()
    variant = variant_at(world["sequence"], "snv")
    window = GeneWindow("chrX", variant_window_start(variant, LENGTH), (variant,), tuple(read_gtf(world["both"])))
    every, _ = score_window(world["models"][:1], world["genome"], window, table, sequence_length=LENGTH)
    assert [score.gene.strand for score in every] == ["+", "-"]
    for columns in ([0], [1]):
        kept, _ = score_window(world["models"][:1], world["genome"], window, table, sequence_length=LENGTH,
                               columns=np.array(columns))
        assert len(kept) == len(every)
        for whole, part in zip(every, kept):
            for stat in SED_STATS:
                assert part.scores[stat].tobytes() == whole.scores[stat][columns].tobytes(), (columns, stat)


def test_exon_bins_majority_rule_and_clipping():
    # Output starts at 1,000, 10 bins of 32 bp: [1000, 1320).
    assert exon_bins([(1000, 1016)], 1000, 10, 32).tolist() == []  # 16/32: round(0.5) = 0, not a majority
    assert exon_bins([(1000, 1017)], 1000, 10, 32).tolist() == [0]
    assert exon_bins([(1040, 1100)], 1000, 10, 32).tolist() == [1, 2]  # round(1.25), round(3.125)
    assert exon_bins([(900, 1050), (1300, 2000)], 1000, 10, 32).tolist() == [0, 1, 9]  # clipped both ends
    assert exon_bins([(1000, 1064), (1032, 1096)], 1000, 10, 32).tolist() == [0, 1, 2]  # overlaps unite
    assert exon_bins([(5000, 6000)], 1000, 10, 32).tolist() == []


def test_strands_of_tracks_and_sed_formula():
    table = track_table()
    assert track_strands(table).tolist() == ["+", "-", "."]
    assert gene_tracks(table, "+").tolist() == [0, 2] and gene_tracks(table, "-").tolist() == [1, 2]
    reference = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    alternative = np.array([[2.0, 2.0], [3.0, 8.0], [0.0, 0.0]])
    scores = sed_scores(reference, alternative, np.array([0, 1]))
    np.testing.assert_allclose(scores["SED"], [1.0, 4.0])
    np.testing.assert_allclose(scores["logSED"], [np.log2(6 / 5), np.log2(11 / 7)])
    odd = table.assign(identifier=["RNA1", "RNA1-", "DNASE1"])
    with pytest.raises(UserError, match="RNA1"):
        track_strands(odd)


def test_calico_alleles_keep_the_centre():
    # 8 bp windows; the variant at index 3 (L // 2 - 1).
    assert calico_alleles("AACCGGTT", 3, "C", "T", 8) == ("AACCGGTT", "AACTGGTT")
    assert calico_alleles("AACCGGTT", 3, "C", "CAAA", 8) == ("AACCGGTT", "ACCAAAGG")  # 3 extra: 1 left, 2 right
    assert calico_alleles("AACCGGTTAAA", 3, "CGGT", "C", 8) == ("ACCGGTTA", "AACCTAAA")  # reference moves by 1
    assert calico_alleles("AACCGGTT", 3, "C", "", 8)[1] == "AACGGTTN"  # shorter: padded with N on both sides


@pytest.mark.parametrize("head, stranded", [("human", 1226), ("mouse", 522)])
def test_shipped_tables_pair_plus_and_minus_gene_tracks(head, stranded):
    from senformer.data.borzoi_targets import borzoi_track_table

    table = borzoi_track_table(head)
    strands = track_strands(table)
    assert (strands == "+").sum() == (strands == "-").sum() == stranded
    plus, minus = gene_tracks(table, "+"), gene_tracks(table, "-")
    # Scores of + and - genes share one track axis: the i-th column is one experiment on the gene's strand.
    pairs = table["strand_pair"].to_numpy()
    np.testing.assert_array_equal(np.where(strands[plus] == "+", pairs[plus], plus), minus)
