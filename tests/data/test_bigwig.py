"""Users' bigWig tracks to a Basenji2 directory: binning as Basenji does, end to end through the CLI."""

import json

import numpy as np
import pytest

from senformer.cli import main
from senformer.data.basenji import BasenjiDataset, read_statistics
from senformer.data.bigwig import TrackSpec, bin_coverage, read_track_sheet, regions_from_bed, tile_regions
from senformer.data.tracks import read_targets


def test_bin_coverage_statistics_clip_and_scale():
    coverage = np.array([1, 1, 3, np.nan, 10, 10, 10, 10], dtype=np.float32)  # NaN = uncovered = 0
    np.testing.assert_allclose(bin_coverage(coverage, 4, "sum"), [5, 40])
    np.testing.assert_allclose(bin_coverage(coverage, 4, "mean"), [1.25, 10])
    np.testing.assert_allclose(bin_coverage(coverage, 4, "max"), [3, 10])
    np.testing.assert_allclose(bin_coverage(coverage, 4, "median"), [1, 10])
    np.testing.assert_allclose(bin_coverage(coverage, 4, "sum_sqrt"), [np.sqrt(6) - 1, np.sqrt(41) - 1], rtol=1e-6)
    np.testing.assert_allclose(bin_coverage(coverage, 4, "sum", clip=32, scale=2), [10, 64])
    # Soft clip above 8: 8 + sqrt(40 - 8); then the hard clip at 32 does not bite.
    np.testing.assert_allclose(bin_coverage(coverage, 4, "sum", clip=32, clip_soft=8), [5, 8 + np.sqrt(32)], rtol=1e-6)
    with pytest.raises(ValueError, match="not a 1-D multiple of pool_width 3"):
        bin_coverage(coverage, 3)
    with pytest.raises(ValueError, match="sum_stat 'mode'"):
        TrackSpec("a", "a.bw", "DNASE:a", sum_stat="mode")


def test_tiling_and_bed_regions(tmp_path):
    rows = tile_regions({"chr1": 1000, "chr2": 700, "chr3": 300}, 256, stride=200, valid_chroms=["chr2"], test_chroms=["chr3"])
    assert rows[:2] == [("chr1", 0, 256, "train"), ("chr1", 200, 456, "train")]
    assert [r for r in rows if r[0] == "chr3"] == [("chr3", 0, 256, "test")]
    assert {r[3] for r in rows if r[0] == "chr2"} == {"valid"}
    bed = tmp_path / "r.bed"
    bed.write_text("# comment\nchr1\t100\t200\tvalid\nchr2\t0\t50\n")
    assert regions_from_bed(bed, 256, test_chroms=["chr2"]) == [("chr1", 22, 278, "valid"), ("chr2", -103, 153, "test")]
    with pytest.raises(Exception, match="unknown chromosome"):
        tile_regions({"chr1": 1000}, 256, test_chroms=["chrX"])


def test_track_sheet(tmp_path):
    sheet = tmp_path / "tracks.tsv"
    sheet.write_text("identifier\tfile\tdescription\tsum_stat\tclip\tscale\nA\ta.bw\tCAGE:x\tsum\t384\t1\nB\t/abs/b.bw\tDNASE:y\t\t\t2\n")
    a, b = read_track_sheet(sheet)
    assert a == TrackSpec("A", str(tmp_path / "a.bw"), "CAGE:x", "sum", 384.0, 1.0, None)
    assert b == TrackSpec("B", "/abs/b.bw", "DNASE:y", "mean", 32.0, 2.0, None)


def test_from_bigwig_end_to_end(tmp_path, capsys):
    pybigtools = pytest.importorskip("pybigtools")
    pytest.importorskip("senformer.data.genome")
    rng = np.random.default_rng(0)
    sizes = {"chr1": 3000, "chr2": 1300}
    fasta = tmp_path / "genome.fa"
    sequences = {name: "".join(rng.choice(list("ACGT"), size)) for name, size in sizes.items()}
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in sequences.items()))
    # A bigWig with value 2.0 on chr1:[300, 400) and 5.0 on chr2:[640, 641).
    path = tmp_path / "signal.bw"
    writer = pybigtools.open(str(path), "w")
    writer.write(sizes, [("chr1", 300, 400, 2.0), ("chr2", 640, 641, 5.0)])
    out = tmp_path / "dataset"
    code = main(["data", "from-bigwig", str(out), "--genome", str(fasta), "--bigwig", f"sig={path}",
                 "--description", "DNASE", "--sum-stat", "sum", "--scale", "0.5", "--clip", "1000", "--test-chroms", "chr2",
                 "--seq-length", "1024", "--crop-bp", "256", "--records-per-file", "2"])
    assert code == 0, capsys.readouterr().err
    statistics = read_statistics(out)
    assert (statistics["train_seqs"], statistics["test_seqs"], statistics["target_length"]) == (2, 1, 4)
    assert read_targets(out / "targets.txt").loc[0, "description"] == "DNASE:sig"
    train = list(BasenjiDataset(out, "train"))
    assert [e["interval"] for e in train] == ["chr1:0-1024", "chr1:1024-2048"]
    # Targets cover [256, 768) of the first window: bin 0 = [256, 384) holds 84 bp of 2.0, bin 1 = [384, 512) 16 bp.
    np.testing.assert_allclose(train[0]["target"][:, 0].numpy(), [84.0, 16.0, 0.0, 0.0])
    assert train[1]["target"].abs().sum() == 0
    expected = np.zeros((1024, 4), np.float32)
    expected[np.arange(1024), ["ACGT".index(b) for b in sequences["chr1"][:1024]]] = 1
    np.testing.assert_array_equal(train[0]["sequence"].numpy(), expected)
    (test,) = BasenjiDataset(out, "test")
    np.testing.assert_allclose(test["target"][:, 0].numpy(), [0.0, 0.0, 0.0, 2.5])  # bp 640: bin 3 of [256, 768)
    assert json.loads((out / "statistics.json").read_text())["valid_seqs"] == 0
    # Without --bed the chromosomes are tiled; the run record holds what is read, no --tile switch.
    assert "tile" not in json.loads((out / "run.json").read_text())["settings"]
    with pytest.raises(SystemExit):
        main(["data", "from-bigwig", str(tmp_path / "again"), "--genome", str(fasta), "--tile"])


def test_from_bigwig_errors(tmp_path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nACGT\n")
    assert main(["data", "from-bigwig", str(tmp_path / "o"), "--genome", str(fasta)]) == 2
    assert "give tracks with --bigwig" in capsys.readouterr().err


def _bigwig(path, sizes, intervals):
    pybigtools = pytest.importorskip("pybigtools")
    writer = pybigtools.open(str(path), "w")
    writer.write(sizes, intervals)
    return path


def test_from_bigwig_chromosome_names_and_overlap(tmp_path, capsys):
    rng = np.random.default_rng(1)
    fasta = tmp_path / "genome.fa"
    sizes = {"chr1": 2048, "chr2": 1024}
    fasta.write_text("".join(f">{name}\n{''.join(rng.choice(list('ACGT'), size))}\n" for name, size in sizes.items()))
    common = ["--genome", str(fasta), "--seq-length", "1024", "--crop-bp", "256", "--sum-stat", "sum", "--scale", "0.5", "--clip", "1000"]
    # Ensembl names, one chromosome, another size: mapped (one line), partial overlap and size warned, values kept
    ensembl = _bigwig(tmp_path / "ensembl.bw", {"1": 3000}, [("1", 300, 400, 2.0)])
    out = tmp_path / "mapped"
    assert main(["data", "from-bigwig", str(out), "--bigwig", f"e={ensembl}", *common, "--test-chroms", "chr2"]) == 0
    err = capsys.readouterr().err
    assert "reading 'chr1' as '1'" in err and "covers 1 of the 2 chromosomes" in err
    assert "1 chromosome(s) of ensembl.bw differ in size" in err and "valid split(s) are empty" in err
    first = next(iter(BasenjiDataset(out, "train")))
    np.testing.assert_allclose(first["target"][:, 0].numpy(), [84.0, 16.0, 0.0, 0.0])
    # no chromosome in common: refused, nothing written
    other = _bigwig(tmp_path / "other.bw", {"scaffold_7": 5000}, [("scaffold_7", 0, 10, 1.0)])
    assert main(["data", "from-bigwig", str(tmp_path / "none"), "--bigwig", f"o={other}", *common]) == 2
    err = capsys.readouterr().err
    assert "other.bw shares no chromosome with genome.fa" in err and err.count("\n") == 1
    assert not (tmp_path / "none").exists()


def test_from_bigwig_bed_rejects_reversed_and_negative_intervals(tmp_path, capsys):
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 512 + "\n")
    signal = _bigwig(tmp_path / "s.bw", {"chr1": 2048}, [("chr1", 0, 10, 1.0)])
    for line, message in (("chr1\t500\t100\n", "need 0 <= start < end"), ("chr1\t-5\t100\n", "need 0 <= start < end")):
        (tmp_path / "r.bed").write_text(line)
        assert main(["data", "from-bigwig", str(tmp_path / "o"), "--genome", str(fasta), "--bigwig", f"s={signal}",
                     "--bed", str(tmp_path / "r.bed"), "--seq-length", "1024", "--crop-bp", "256"]) == 2
        assert f"r.bed, line 1: {message}" in capsys.readouterr().err


def test_a_file_that_is_not_a_bigwig_is_one_line_without_the_library_text(tmp_path, capfd):
    pytest.importorskip("pybigtools")
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 512 + "\n")
    (tmp_path / "bad.bw").write_text("not a bigWig\n")
    assert main(["data", "from-bigwig", str(tmp_path / "out"), "--genome", str(fasta), "--bigwig",
                 str(tmp_path / "bad.bw"), "--seq-length", "1024", "--crop-bp", "256"]) == 2
    error = capfd.readouterr().err  # file-descriptor level: the library writes there, not to sys.stderr
    assert error.count("\n") == 1 and "bad.bw: not a readable bigWig" in error and "Error when opening" not in error


def test_bin_coverage_squashes_sqrt_tracks_as_basenji_or_borzoi():
    coverage = np.array([[1.0, 2.0, 3.0, 10.0], [0.0, 0.0, 4.0, 12.0]])  # two windows, pooled by 2
    np.testing.assert_allclose(bin_coverage(coverage, 2, "sum_sqrt"), np.sqrt(1 + np.array([[3, 13], [0, 16]])) - 1,
                               rtol=1e-6)
    np.testing.assert_allclose(bin_coverage(coverage, 2, "sum_sqrt", root="borzoi"),
                               np.array([[3, 13], [0, 16]]) ** 0.75, rtol=1e-6)
    np.testing.assert_allclose(bin_coverage(coverage, 2, "mean_sqrt", clip_soft=2.0, scale=0.5, root="borzoi"),
                               0.5 * np.array([[1.5**0.75, 2 + np.sqrt(6.5**0.75 - 2)], [0, 2 + np.sqrt(8**0.75 - 2)]]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="root 'log'"):
        bin_coverage(coverage, 2, "sum_sqrt", root="log")


def test_from_bigwig_writes_borzoi_targets_at_32_bp(tmp_path, capsys):
    # --sqrt borzoi: sum_sqrt tracks to the power 3/4, as the published Borzoi models' targets.
    pybigtools = pytest.importorskip("pybigtools")
    sizes = {"chr1": 2048}
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 512 + "\n")
    path = tmp_path / "signal.bw"
    writer = pybigtools.open(str(path), "w")
    writer.write(sizes, [("chr1", 300, 400, 2.0)])
    out = tmp_path / "dataset"
    code = main(["data", "from-bigwig", str(out), "--genome", str(fasta), "--bigwig", f"rna={path}",
                 "--description", "RNA", "--sum-stat", "sum_sqrt", "--scale", "0.5", "--clip", "1000",
                 "--seq-length", "1024", "--crop-bp", "256", "--pool-width", "32", "--sqrt", "borzoi"])
    assert code == 0, capsys.readouterr().err
    first = list(BasenjiDataset(out, "train"))[0]["target"][:, 0].numpy()
    assert first.shape == (16,)  # [256, 768) in 32-bp bins: [288, 320) holds 20 bp of 2.0, then 32, 32, 16
    np.testing.assert_allclose(first[:6], 0.5 * np.array([0.0, 40.0, 64.0, 64.0, 32.0, 0.0]) ** 0.75, rtol=1e-3)
