"""Variant effect scores: windows, SAD and centre sums against direct computation, resumable TSV."""

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import tiny_model
from senformer.analysis.variants import (
    Variant,
    center_bin_indices,
    read_vcf,
    score_variants,
    variant_windows,
    write_variant_scores,
)
from senformer.errors import UserError
from senformer.sequence import one_hot, reverse_complement

genome_module = pytest.importorskip("senformer.data.genome")

LENGTH = 2048  # 16 positions; the tiny model keeps the central 8 bins


@pytest.fixture
def genome(tmp_path):
    rng = np.random.default_rng(0)
    chr1 = "".join(rng.choice(list("ACGT"), size=6000))
    chr2 = "".join(rng.choice(list("ACGT"), size=3000))
    path = tmp_path / "genome.fa"
    path.write_text(f">chr1\n{chr1}\n>chr2 second\n{chr2}\n")
    with genome_module.Genome(path) as opened:
        opened.sequences = {"chr1": chr1, "chr2": chr2}  # for the tests' own checks
        yield opened


def write_vcf(path, records):
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += ["\t".join(map(str, record)) + "\t.\t.\t." for record in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_vcf_splits_alleles_and_reads_gzip(tmp_path):
    records = [("chr1", 100, "rs1", "a", "C,T"), ("chr2", 5, ".", "GT", "G")]
    plain = write_vcf(tmp_path / "v.vcf", records)
    variants = list(read_vcf(plain))
    assert [(v.chrom, v.pos, v.ref, v.alt, v.id) for v in variants] == [
        ("chr1", 100, "A", "C", "rs1"), ("chr1", 100, "A", "T", "rs1"), ("chr2", 5, "GT", "G", ".")]
    assert variants[0].start == 99 and variants[0].line == 3
    zipped = tmp_path / "v.vcf.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_vcf(zipped)) == variants
    bad = write_vcf(tmp_path / "bad.vcf", [("chr1", "x", ".", "A", "C")])
    with pytest.raises(UserError, match="bad.vcf:3: POS 'x'"):
        list(read_vcf(bad))
    with pytest.raises(FileNotFoundError):
        list(read_vcf(tmp_path / "none.vcf"))


def test_windows_align_at_the_first_base(genome):
    chr1 = genome.sequences["chr1"]
    half = LENGTH // 2
    snv = Variant("chr1", 3001, chr1[3000], "A" if chr1[3000] != "A" else "C")
    reference, alternative = variant_windows(genome, snv, LENGTH)
    assert reference == chr1[3000 - half : 3000 + half]
    assert alternative[half] == snv.alt and alternative[:half] == reference[:half]
    assert alternative[half + 1 :] == reference[half + 1 :]
    deletion = Variant("chr1", 3001, chr1[3000:3004], chr1[3000])
    _, alternative = variant_windows(genome, deletion, LENGTH)
    assert alternative == chr1[3000 - half : 3001] + chr1[3004 : 3004 + half - 1]
    insertion = Variant("chr1", 3001, chr1[3000], chr1[3000] + "GGG")
    _, alternative = variant_windows(genome, insertion, LENGTH)
    assert alternative == chr1[3000 - half : 3000] + chr1[3000] + "GGG" + chr1[3001 : 3001 + half - 4]
    edge = Variant("chr2", 10, genome.sequences["chr2"][9], "T")
    reference, _ = variant_windows(genome, edge, LENGTH)
    assert reference.startswith("N" * (half - 9)) and len(reference) == LENGTH  # N beyond the chromosome
    with pytest.raises(UserError, match=r"chr1:3001 .* not REF"):
        variant_windows(genome, Variant("chr1", 3001, "NN", "A"), LENGTH)


def test_ref_equal_to_alt_scores_zero(genome):
    model = tiny_model(seed=1)
    chr1 = genome.sequences["chr1"]
    variants = [Variant("chr1", p, chr1[p - 1 : p + 1], chr1[p - 1 : p + 1]) for p in (1500, 2500, 4000)]
    results = list(score_variants(model, genome, variants, head="human", sequence_length=LENGTH, batch_size=2))
    assert len(results) == 3
    for variant, sad, centre, note in results:
        assert sad.shape == centre.shape == (5,) and note == ""
        np.testing.assert_array_equal(sad, 0.0)
        np.testing.assert_array_equal(centre, 0.0)


def test_scores_match_direct_computation(genome):
    model = tiny_model(seed=2).double()
    chr1 = genome.sequences["chr1"]
    variants = [Variant("chr1", 3001, chr1[3000], "G" if chr1[3000] != "G" else "T"),
                Variant("chr1", 2001, chr1[2000:2003], chr1[2000])]
    results = list(score_variants(model, genome, variants, tracks=[3, 1], center_bins=3, sequence_length=LENGTH))
    centre = center_bin_indices(model, LENGTH, 3)
    np.testing.assert_array_equal(centre, [3, 4, 5])  # input centre 1,024 bp = trunk position 8 = output bin 4
    for (variant, sad, central, _), expected_variant in zip(results, variants):
        assert variant == expected_variant
        reference, alternative = variant_windows(genome, variant, LENGTH)
        with torch.no_grad():
            def averaged(sequence):
                x = one_hot(sequence, torch.float64)[None]
                forward = model(x)["human"][0][:, [3, 1]]
                backward = model(reverse_complement(x))["human"][0].flip(0)[:, [3, 1]]
                return (forward + backward) / 2
            difference = (averaged(alternative) - averaged(reference)).numpy()
        np.testing.assert_allclose(sad, difference.sum(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(central, difference[3:6].sum(0), rtol=1e-9, atol=1e-12)
        assert np.abs(sad).max() > 0


def test_unsupported_alleles_and_ref_mismatch(genome):
    model = tiny_model(seed=1)
    variants = [Variant("chr1", 100, "A", "<DEL>"), Variant("chr1", 200, "NNN", "A")]
    results = list(score_variants(model, genome, variants, sequence_length=LENGTH, skip_ref_mismatch=True))
    assert [note.split(":")[0] for *_, note in results] == ["skipped", "skipped"]
    assert np.isnan(results[0][1]).all()
    with pytest.raises(UserError, match="not REF 'NNN'"):
        list(score_variants(model, genome, variants[1:], sequence_length=LENGTH))


def test_write_variant_scores_streams_and_resumes(genome, tmp_path):
    model = tiny_model(seed=3)
    chr1 = genome.sequences["chr1"]
    records = [("chr1", p, f"v{p}", chr1[p - 1], "A" if chr1[p - 1] != "A" else "C") for p in (1100, 2200, 3300, 4400)]
    vcf = write_vcf(tmp_path / "v.vcf", records)
    complete = write_variant_scores(model, genome, vcf, tmp_path / "full.tsv", tracks=[0, 2], track_names=["a", "c"],
                                    sequence_length=LENGTH, batch_size=3, progress=False)
    lines = complete.read_text().splitlines()
    assert lines[0].startswith("# senformer variants {")
    table = pd.read_csv(complete, sep="\t", comment="#")
    assert list(table.columns) == ["chrom", "pos", "id", "ref", "alt", "note", "SAD:a", "SAD:c", "center:a", "center:c"]
    assert list(table["id"]) == ["v1100", "v2200", "v3300", "v4400"]
    # an interrupted run: settings, header, two rows and a torn third line
    out = tmp_path / "resumed.tsv"
    partial = tmp_path / "resumed.tsv.partial"
    partial.write_text("\n".join(lines[:4]) + "\n" + lines[4][:10])
    write_variant_scores(model, genome, vcf, out, tracks=[0, 2], track_names=["a", "c"], sequence_length=LENGTH,
                         batch_size=1, progress=False)
    assert not partial.exists()
    resumed = pd.read_csv(out, sep="\t", comment="#")
    pd.testing.assert_frame_equal(resumed, table, rtol=1e-4)
    # other settings do not mix with a partial run
    (tmp_path / "other.tsv.partial").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(UserError, match="other settings"):
        write_variant_scores(model, genome, vcf, tmp_path / "other.tsv", tracks=[0], track_names=["a"],
                             sequence_length=LENGTH, progress=False)
    # a finished file is not redone
    assert write_variant_scores(model, genome, vcf, out, sequence_length=LENGTH, progress=False) == out


def test_write_variant_scores_selects_tracks_by_the_tracks_grammar(genome, tmp_path):
    model = tiny_model(seed=3)  # 5 human tracks, no table of that size: identifiers human-0 .. human-4
    base = genome.sequences["chr1"][1099]
    vcf = write_vcf(tmp_path / "v.vcf", [("chr1", 1100, "same", base, base)])
    out = write_variant_scores(model, genome, vcf, tmp_path / "x.tsv", tracks=["human-3", "0-1"],
                               sequence_length=LENGTH, progress=False)
    header = pd.read_csv(out, sep="\t", comment="#").columns
    assert [c for c in header if c.startswith("SAD:")] == ["SAD:human-0", "SAD:human-1", "SAD:human-3"]
    with pytest.raises(ValueError, match="head order"):
        write_variant_scores(model, genome, vcf, tmp_path / "y.tsv", tracks=[2, 0], track_names=["c", "a"],
                             sequence_length=LENGTH, progress=False)
