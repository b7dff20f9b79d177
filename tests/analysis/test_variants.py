"""Variant effect scores on the committed bcftools fixtures: each score against direct whole-window model
calls in both window modes, the edit engine against the plain path, clustering, the three output formats."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import tiny_model
from senformer.analysis.variants import (
    STATS, Anchor, VariantOptions, plan_windows, score_windows, track_selection, write_variant_scores,
)
from senformer.data.genome import Genome
from senformer.data.vcf import VariantFile
from senformer.windows import Geometry
from senformer.sequence import one_hot, reverse_complement

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "variants"
LENGTH = 2048  # 16 trunk positions; the tiny model keeps the central 8 bins (input bp 512..1536)
TILE = 10 * 128  # shorter than the input: the reference conv trunk is tiled, as at full length
TRACKS = (3, 1, 4)


@pytest.fixture
def genome(tmp_path):
    shutil.copy(FIXTURES / "genome.fa", tmp_path / "genome.fa")  # its .fai is written beside the copy
    with Genome(tmp_path / "genome.fa") as opened:
        yield opened


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=4, conv_tile_length=TILE, num_random_blocks=1).double()


def sequence(genome, chrom, start, end):
    from senformer.data.genome import Interval

    return genome.fetch(Interval(chrom, start, end))


def predicted(model, bases, rc=True):
    """(bins, tracks) of one whole window: forward and reverse complement averaged, float64."""
    with torch.no_grad():
        x = one_hot(bases, torch.float64)[None]
        forward = model(x)["human"][0][:, list(TRACKS)]
        if not rc:
            return forward.numpy()
        backward = model(reverse_complement(x))["human"][0].flip(0)[:, list(TRACKS)]
    return ((forward + backward) / 2).numpy()


def centred_alt(genome, chrom, start, ref, alt, window_start):
    """Left flank and first base fixed, right flank refilled from the genome."""
    left = sequence(genome, chrom, window_start, start)
    right = sequence(genome, chrom, start + len(ref), start + len(ref) + LENGTH)
    return (left + alt + right)[:LENGTH]


def anchored_left_alt(genome, chrom, start, ref, alt, window_start):
    """A variant left of the anchor: the right end stays, the left flank is refilled from the genome."""
    right = sequence(genome, chrom, start + len(ref), window_start + LENGTH)
    needed = LENGTH - len(right) - len(alt)
    return sequence(genome, chrom, start - needed, start) + alt + right


def expected_stats(reference, alternative, centre_bins):
    difference = alternative - reference
    return {
        "SAD": difference.sum(0), "center": difference[centre_bins].sum(0),
        "logSAD": np.log2((alternative.sum(0) + 1) / (reference.sum(0) + 1)),
        "D2": np.sqrt((difference**2).sum(0)), "REF": reference.sum(0), "ALT": alternative.sum(0),
    }


def options(**changes):
    return VariantOptions(sequence_length=LENGTH, tracks=tuple(map(str, TRACKS)), **changes)


def read_h5(path):
    with h5py.File(path, "r") as handle:
        table = pd.DataFrame({name: handle["variants"][name][:] for name in handle["variants"]})
        for column in table:
            if table[column].dtype == object:
                table[column] = [v.decode() if isinstance(v, bytes) else v for v in table[column]]
        scores = {stat: handle["scores"][stat][:] for stat in handle["scores"]}
        assert handle["tracks/index"][:].tolist() == sorted(TRACKS)
    return table, scores


@pytest.mark.parametrize("vcf", ["variants.vcf.gz", "variants.bcf"])
def test_centred_windows_score_as_whole_window_calls(model, genome, tmp_path, vcf):
    run = write_variant_scores(model, genome, FIXTURES / vcf, tmp_path / "scores.h5", options(), progress=False)
    assert run.counts == {"scored": 9, "symbolic allele": 1, "spanning deletion": 1, "missing ALT": 1, "breakend": 1}
    table, scores = read_h5(tmp_path / "scores.h5")
    assert list(table["id"]) == ["snv1", "multi", "multi", "del3", "ins4", "mnv", "sv", "star", "star", "missing",
                                 "snv2", "bnd", "edge"]
    skipped = table["note"].str.startswith("skipped")
    assert list(table["alt"][skipped]) == ["<DEL>", "*", ".", "A]chr1:100]"]
    assert np.isnan(scores["SAD"][skipped.to_numpy()]).all() and np.isfinite(scores["SAD"][~skipped.to_numpy()]).all()
    order = np.argsort(TRACKS)  # columns come in head order
    half = LENGTH // 2
    for row in (0, 2, 3, 4, 12):  # SNV, the second allele of a site, deletion, insertion, deletion at chr2's end
        chrom, pos, ref, alt = table.loc[row, ["chrom", "pos", "ref", "alt"]]
        start = int(pos) - 1
        window = start - half
        reference = predicted(model, sequence(genome, chrom, window, window + LENGTH))
        alternative = predicted(model, centred_alt(genome, chrom, start, ref, alt, window))
        expected = expected_stats(reference, alternative, [3, 4, 5])  # input index 1024 = output bin 4
        for stat in STATS:
            np.testing.assert_allclose(scores[stat][row], expected[stat][order], rtol=2e-6,
                                       atol=1e-6 * np.abs(expected[stat]).max(), err_msg=f"{stat} row {row}")
        assert np.abs(expected["SAD"]).max() > 0


@pytest.mark.parametrize("vcf", ["variants.vcf.gz", "variants.bcf"])
def test_anchored_windows_keep_the_anchor_and_score_as_whole_window_calls(model, genome, tmp_path, vcf):
    bed = tmp_path / "anchors.bed"
    bed.write_text("chr1\t2799\t2800\tgeneA\t0\t-\nchr2\t899\t900\tgeneB\t0\t+\n")
    out = tmp_path / "anchored.tsv"
    run = write_variant_scores(model, genome, FIXTURES / vcf, out, options(max_distance=420),
                               anchors=bed, progress=False)
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(zip(table["anchor"], table["id"], table["alt"])) == [
        ("geneA", "del3", "T"), ("geneA", "ins4", "GGATT"), ("geneB", "snv2", "A")]
    assert list(table["distance"]) == [200, -200, -100]  # on a minus-strand anchor 2599 - 2799 is downstream
    assert run.counts == {"scored": 3}
    order = np.argsort(TRACKS)
    names = [f"human-{track}" for track in sorted(TRACKS)]
    half = LENGTH // 2
    for row in range(3):
        chrom, pos, ref, alt = table.loc[row, ["chrom", "pos", "ref", "alt"]]
        anchor = {"geneA": 2799, "geneB": 899}[table.loc[row, "anchor"]]
        start, window = int(pos) - 1, anchor - half
        reference = predicted(model, sequence(genome, chrom, window, window + LENGTH))
        if start < anchor:
            bases = anchored_left_alt(genome, chrom, start, ref, alt, window)
            assert bases[half:] == sequence(genome, chrom, anchor, window + LENGTH)  # the anchor did not move
        else:
            bases = centred_alt(genome, chrom, start, ref, alt, window)
            assert bases[:half] == sequence(genome, chrom, window, anchor)
        expected = expected_stats(reference, predicted(model, bases), [3, 4, 5])  # centred on the anchor's bin
        for stat in STATS:
            found = table[[f"{stat}:{name}" for name in names]].to_numpy()[row]
            np.testing.assert_allclose(found, expected[stat][order], rtol=1e-6,
                                       atol=1e-7 * np.abs(expected[stat]).max(), err_msg=f"{stat} row {row}")


def all_scores(model, genome, vcf, chosen, anchors=None):
    """{(row key): {stat: float64 (tracks,)}} straight from score_windows."""
    geometry = Geometry.of(model.config, LENGTH)
    tracks = track_selection(model, chosen)[0]
    with VariantFile(vcf) as variants:
        windows = plan_windows(variants, genome, geometry, chosen, anchors)
        return {scored.row.key: scored.scores for scored in score_windows(model, genome, windows, chosen, tracks,
                                                                           geometry) if scored.scores is not None}


@pytest.mark.parametrize("mode", ["centred", "clustered", "anchored"])
def test_engine_equals_plain_within_the_bound(model, genome, mode):
    anchors = [Anchor("a", "chr1", 2799, "+"), Anchor("b", "chr2", 1100, "-")] if mode == "anchored" else None
    settings = {"cluster_bp": 400} if mode == "clustered" else {"max_distance": 600} if mode == "anchored" else {}
    engine = all_scores(model, genome, FIXTURES / "variants.vcf.gz", options(**settings), anchors)
    plain = all_scores(model, genome, FIXTURES / "variants.vcf.gz", options(plain=True, **settings), anchors)
    assert engine.keys() == plain.keys() and len(engine) >= 3
    for stat in ("SAD", "center", "D2", "REF", "ALT", "logSAD"):
        reference = np.stack([plain[key][stat] for key in plain])
        difference = np.stack([engine[key][stat] for key in plain]) - reference
        assert np.abs(difference).max() <= 1e-10 * np.abs(reference).max(), stat


def test_cluster_bp_shares_one_reference_per_cluster(model, genome, tmp_path, monkeypatch):
    from senformer.edits import EditEngine

    references = []
    original = EditEngine.reference_output

    def counted(self):
        references.append(self)
        return original(self)

    monkeypatch.setattr(EditEngine, "reference_output", counted)
    run = write_variant_scores(model, genome, FIXTURES / "variants.vcf.gz", tmp_path / "c.tsv",
                               options(cluster_bp=500, reverse_complement=False), progress=False)
    # chr1: 1500 | 2200 2200 2600 | 3000 3300 | 3600 and chr2: 800 | 2950: six windows for nine alleles
    assert len(references) == 6 and run.counts["scored"] == 9
    table = pd.read_csv(tmp_path / "c.tsv", sep="\t", keep_default_na=False)
    row = table.index[table["id"] == "del3"][0]  # the cluster 2199..2599 is centred at 2399
    assert table.loc[row, "distance"] == 200
    window = 2399 - LENGTH // 2
    reference = predicted(model, sequence(genome, "chr1", window, window + LENGTH), rc=False)
    alternative = predicted(model, centred_alt(genome, "chr1", 2599, "TTGA", "T", window), rc=False)
    expected = expected_stats(reference, alternative, [4, 5, 6])  # the variant sits at input index 1224: bin 5
    names = [f"human-{track}" for track in sorted(TRACKS)]
    for stat in ("SAD", "center", "D2"):
        np.testing.assert_allclose(table.loc[row, [f"{stat}:{n}" for n in names]].to_numpy(dtype=float),
                                   expected[stat][np.argsort(TRACKS)], rtol=1e-6,
                                   atol=1e-7 * np.abs(expected[stat]).max())
    with pytest.raises(Exception, match="half the output window"):
        write_variant_scores(model, genome, FIXTURES / "variants.vcf.gz", tmp_path / "far.tsv",
                             options(cluster_bp=600), progress=False)


def test_tsv_gzip_and_hdf5_hold_the_same_rows(model, genome, tmp_path):
    chosen = options(stats=("SAD", "logSAD"), reverse_complement=False)
    for suffix in ("tsv", "tsv.gz", "h5"):
        write_variant_scores(model, genome, FIXTURES / "variants.bcf", tmp_path / f"s.{suffix}", chosen,
                             progress=False)
    plain = pd.read_csv(tmp_path / "s.tsv", sep="\t", keep_default_na=False)
    zipped = pd.read_csv(tmp_path / "s.tsv.gz", sep="\t", keep_default_na=False)
    pd.testing.assert_frame_equal(plain, zipped)
    assert list(plain.columns[:8]) == ["chrom", "pos", "id", "ref", "alt", "anchor", "distance", "note"]
    assert [c for c in plain.columns[8:]] == [f"{s}:human-{t}" for s in ("SAD", "logSAD") for t in sorted(TRACKS)]
    table, scores = read_h5(tmp_path / "s.h5")
    assert set(scores) == {"SAD", "logSAD"} and scores["SAD"].dtype == np.float32
    for column in ("chrom", "id", "ref", "alt", "note", "pos", "distance"):
        assert list(table[column]) == list(plain[column]), column
    sad = plain[[c for c in plain.columns if c.startswith("SAD:")]].to_numpy(dtype=float)
    np.testing.assert_allclose(scores["SAD"], sad.astype(np.float32), rtol=1e-6, equal_nan=True)
    assert not (tmp_path / "s.tsv.partial.bases").exists() and not (tmp_path / "s.tsv.partial").exists()


def test_a_variant_off_the_chromosome_is_noted_not_scored_against_the_padding(model, genome, tmp_path):
    """POS 0 and a REF running past chr2's end read N padding, which a REF of N matched: scored, exit 0."""
    from senformer.data.genome import Interval

    last = genome.fetch(Interval("chr2", 2999, 3000))
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    snvs = "".join(f"chr1\t{pos}\tsnv\t{sequence(genome, 'chr1', pos - 1, pos)}\tN\t.\t.\t.\n" for pos in (1500, 1510, 1520))
    (tmp_path / "off.vcf").write_text(header + "chr1\t0\tzero\tN\tA\t.\t.\t.\n" + snvs +
                                      f"chr2\t3000\tend\t{last}N\t{last}\t.\t.\t.\n")
    run = write_variant_scores(model, genome, tmp_path / "off.vcf", tmp_path / "off.tsv",  # 1 in 4 off: no build rule
                               options(reverse_complement=False, allow_ref_mismatch=True), progress=False)
    table = pd.read_csv(tmp_path / "off.tsv", sep="\t", keep_default_na=False)
    assert list(table["note"]) == ["skipped: POS before the chromosome start (POS < 1)", "", "", "",
                                   "skipped: REF runs past the contig's end (chr2 is 3,000 bp)"]
    assert run.counts["scored"] == 3
