"""Intervals, region and BED parsing, and the N-padding FASTA genome."""

from __future__ import annotations

import gzip

import pytest

from senformer.data.genome import Genome, Interval, parse_region, read_bed
from senformer.errors import UserError

CHR_A = ("ACGT" * 50 + "acgtn" * 10)[:230]  # lower case and N inside
CHR_B = "GATTACA" * 20


def write_fasta(path, records, width=60):
    with open(path, "w") as handle:
        for name, sequence in records.items():
            handle.write(f">{name} description\n")
            for i in range(0, len(sequence), width):
                handle.write(sequence[i : i + width] + "\n")
    return path


@pytest.fixture
def fasta(tmp_path):
    return write_fasta(tmp_path / "genome.fa", {"chrA": CHR_A, "chrB": CHR_B})


def test_interval_width_resize_and_text():
    interval = Interval("chr1", 100, 200)
    assert interval.width == 100 and str(interval) == "chr1:100-200"
    assert interval.resize(300) == Interval("chr1", 0, 300)
    assert interval.resize(10) == Interval("chr1", 145, 155)
    assert interval.resize(101) == Interval("chr1", 99, 200)
    # Basenji2 131,072 bp -> Enformer's 196,608 bp: 32,768 bp more on each side.
    basenji = Interval("chr2", 1_000_000, 1_131_072)
    assert basenji.resize(196_608) == Interval("chr2", 1_000_000 - 32_768, 1_131_072 + 32_768)
    assert Interval("chrM", 0, 10).resize(30).start == -10  # windows may start before the chromosome
    with pytest.raises(ValueError, match="start must be less than end"):
        Interval("chr1", 5, 5)


def test_parse_region():
    assert parse_region("chr11:5,225,000-5,230,000") == Interval("chr11", 5_225_000, 5_230_000)
    assert parse_region(" chrX:0-10 ") == Interval("chrX", 0, 10)
    with pytest.raises(UserError, match="chrom:start-end"):
        parse_region("chr1:100")
    with pytest.raises(UserError, match="start 200 must be less than end 100"):
        parse_region("chr1:200-100")


def test_read_bed_streams_names_and_skips_headers(tmp_path):
    path = tmp_path / "regions.bed"
    path.write_text("track name=x\n# comment\nchrA\t10\t20\tfirst\t0\t+\n\nchrB\t0\t5\n")
    assert list(read_bed(path)) == [Interval("chrA", 10, 20), Interval("chrB", 0, 5)]
    assert [i.name for i in read_bed(path)] == ["first", ""]
    gz = tmp_path / "regions.bed.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert list(read_bed(gz)) == list(read_bed(path))


@pytest.mark.parametrize(
    "line, message",
    [("chrA\t10\n", "line 2: expected at least 3 columns"), ("chrA\tten\t20\n", "line 2: start and end must be integers"),
     ("chrA\t30\t20\n", "line 2: need 0 <= start < end")],
)
def test_read_bed_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.bed"
    path.write_text("chrA\t0\t5\n" + line)
    with pytest.raises(UserError, match=message):
        list(read_bed(path))


def test_read_bed_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such BED file"):
        list(read_bed(tmp_path / "absent.bed"))


def test_genome_fetch_pads_with_n_beyond_the_ends(fasta):
    genome = Genome(fasta)
    assert genome.sizes == {"chrA": 230, "chrB": 140}
    assert fasta.with_suffix(".fa.fai").is_file()  # index created when missing
    assert genome.fetch(Interval("chrA", 0, 8)) == "ACGTACGT"
    assert genome.fetch(Interval("chrA", 200, 210)) == CHR_A[200:210].upper()  # upper case
    assert genome.fetch(Interval("chrB", -3, 4)) == "NNN" + "GATT"
    assert genome.fetch(Interval("chrB", 137, 143)) == "ACA" + "NNN"
    assert genome.fetch(Interval("chrB", -2, 142)) == "NN" + CHR_B + "NN"
    assert genome.fetch(Interval("chrB", 150, 155)) == "NNNNN"
    assert genome.fetch(Interval("chrB", -10, -5)) == "NNNNN"


def test_genome_errors(fasta, tmp_path):
    genome = Genome(fasta)
    with pytest.raises(UserError, match="chromosome 'chrZ' is not in genome.fa"):
        genome.fetch(Interval("chrZ", 0, 5))
    with pytest.raises(UserError, match="runs off chrB, which is 140 bp long"):
        genome.check(Interval("chrB", 100, 141))
    genome.check(Interval("chrB", 0, 140))
    with pytest.raises(FileNotFoundError, match="no such FASTA"):
        Genome(tmp_path / "absent.fa")


def test_bgzip_fasta(tmp_path):
    bgzf = pytest.importorskip("Bio.bgzf")
    plain = write_fasta(tmp_path / "plain.fa", {"chrA": CHR_A, "chrB": CHR_B})
    with bgzf.BgzfWriter(str(tmp_path / "genome.fa.gz"), "wb") as handle:
        handle.write(plain.read_bytes())
    genome = Genome(tmp_path / "genome.fa.gz")
    assert genome.sizes == {"chrA": 230, "chrB": 140}
    assert genome.fetch(Interval("chrB", -1, 3)) == "NGAT"


def test_read_bed_strand_and_reversed_or_negative_intervals(tmp_path):
    path = tmp_path / "anchors.bed"
    path.write_text("chrA\t10\t11\tgeneA\t0\t-\nchrB\t5\t6\tgeneB\t0\t+\nchrA\t1\t2\n")
    assert [(i.name, i.strand) for i in read_bed(path)] == [("geneA", "-"), ("geneB", "+"), ("", ".")]
    for line, message in (("chrA\t-5\t10\n", "need 0 <= start < end"), ("chrA\t1\t2\tx\t0\tforward\n", "strand")):
        path.write_text(line)
        with pytest.raises(UserError, match=message):
            list(read_bed(path))


def test_read_bed_names_undecodable_and_damaged_files(tmp_path):
    latin = tmp_path / "latin.bed"
    latin.write_bytes(b"chrA\t0\t5\tok\nchrA\t5\t9\tna\xefve\n")
    with pytest.raises(UserError, match=r"latin\.bed, line 2: not UTF-8"):
        list(read_bed(latin))
    truncated = tmp_path / "cut.bed.gz"
    truncated.write_bytes(gzip.compress(("chrA\t0\t5\n" * 2000).encode())[:-40])
    with pytest.raises(UserError, match=r"cut\.bed\.gz: the gzip stream is truncated or corrupt"):
        list(read_bed(truncated))
    corrupt = bytearray(gzip.compress(("chrA\t0\t5\n" * 2000).encode()))
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / "bad.bed.gz").write_bytes(bytes(corrupt))
    with pytest.raises(UserError, match=r"bad\.bed\.gz: the gzip stream is truncated or corrupt"):
        list(read_bed(tmp_path / "bad.bed.gz"))


def test_a_rewritten_fasta_is_never_read_at_stale_offsets(tmp_path, monkeypatch):
    import os

    path = write_fasta(tmp_path / "genome.fa", {"chrA": CHR_A, "chrB": CHR_B}, width=60)
    with Genome(path) as genome:
        assert genome.fetch(Interval("chrB", 0, 7)) == "GATTACA"
    stale_index = (tmp_path / "genome.fa.fai").read_bytes()
    # rewritten with another line width and the old index made to look newer than it
    write_fasta(path, {"chrA": CHR_A, "chrB": CHR_B}, width=50)
    (tmp_path / "genome.fa.fai").write_bytes(stale_index)
    future = path.stat().st_mtime + 100
    os.utime(tmp_path / "genome.fa.fai", (future, future))
    with Genome(path) as genome:
        assert genome.fetch(Interval("chrB", 0, 7)) == "GATTACA"
    # a new FASTA behind an old index, in a folder the user cannot write: rebuilt privately, left in place
    write_fasta(path, {"chrA": CHR_B, "chrB": CHR_A}, width=40)
    (tmp_path / "genome.fa.fai").write_bytes(stale_index)
    past = path.stat().st_mtime - 100
    os.utime(tmp_path / "genome.fa.fai", (past, past))
    monkeypatch.setattr("senformer.data.genome.os.access", lambda *args: False)
    with Genome(path) as genome:
        assert genome.fetch(Interval("chrA", 0, 7)) == "GATTACA" and genome.sizes["chrB"] == len(CHR_A)
    assert (tmp_path / "genome.fa.fai").read_bytes() == stale_index


def test_a_same_size_edited_fasta_with_an_old_date_is_reindexed(tmp_path):
    """``cp -p``/``rsync -t``/``tar x`` of an edited FASTA: same size, older than its index; the index is
    checked against the bytes, so chrB is not read 3 bp off."""
    import os

    path = write_fasta(tmp_path / "genome.fa", {"chrA": CHR_A, "chrB": CHR_B})
    with Genome(path) as genome:
        assert genome.fetch(Interval("chrB", 0, 7)) == "GATTACA"
    size = path.stat().st_size
    write_fasta(path, {"chrA": CHR_A, "chrB": CHR_B + "GAT"})  # 3 bp longer, and a 3-byte shorter header:
    path.write_bytes(path.read_bytes().replace(b">chrA description", b">chrA descript", 1))
    assert path.stat().st_size == size
    past = (tmp_path / "genome.fa.fai").stat().st_mtime - 100
    os.utime(path, (past, past))
    with Genome(path) as genome:
        assert genome.sizes["chrB"] == len(CHR_B) + 3
        assert genome.fetch(Interval("chrB", 0, 7)) == "GATTACA"
        assert genome.fetch(Interval("chrB", 137, 143)) == "ACAGAT"


def test_a_bgzip_fasta_index_is_checked_through_its_block_table(tmp_path):
    bgzf = pytest.importorskip("Bio.bgzf")
    from senformer.data.genome import _index_is_current

    plain = write_fasta(tmp_path / "plain.fa", {"chrA": CHR_A, "chrB": CHR_B})
    with bgzf.BgzfWriter(str(tmp_path / "genome.fa.gz"), "wb") as handle:
        handle.write(plain.read_bytes())
    path = tmp_path / "genome.fa.gz"
    Genome(path).close()
    index = tmp_path / "genome.fa.gz.fai"
    assert _index_is_current(path, index)
    index.write_text(index.read_text().replace("\t230\t", "\t229\t"))  # chrA one base short
    assert not _index_is_current(path, index)
    with Genome(path) as genome:
        assert genome.sizes == {"chrA": 230, "chrB": 140} and genome.fetch(Interval("chrB", 0, 4)) == "GATT"


def test_the_index_check_reads_each_record_by_seeking(tmp_path):
    from senformer.data.genome import _index_is_current

    path = write_fasta(tmp_path / "genome.fa", {"chrA": CHR_A, "chrB": CHR_B}, width=50)
    Genome(path).close()
    index = tmp_path / "genome.fa.fai"
    good = index.read_text()
    assert _index_is_current(path, index)
    for stale in (good.replace("chrB", "chrC"), good.replace("\t50\t51", "\t60\t61"), good.splitlines()[0] + "\n",
                  good.replace("\t140\t", "\t141\t"), "chrA\tnot a number\n", ""):
        index.write_text(stale)
        assert not _index_is_current(path, index), stale
    crlf = tmp_path / "crlf.fa"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    with Genome(crlf) as genome:
        assert genome.fetch(Interval("chrB", 0, 7)) == "GATTACA"
    assert _index_is_current(crlf, tmp_path / "crlf.fa.fai")


def test_chromosome_names_are_mapped_only_when_none_matches(tmp_path, capsys):
    from senformer.data.genome import chromosome_alias

    assert chromosome_alias("1", {"chr1", "chr2"}) == "chr1"
    assert chromosome_alias("chr1", {"1"}) == "1"
    assert chromosome_alias("MT", {"chrM"}) == "chrM" and chromosome_alias("chrM", {"MT"}) == "MT"
    assert chromosome_alias("chrX", {"chr1"}) is None
    path = write_fasta(tmp_path / "genome.fa", {"chrA": CHR_A, "A": CHR_B})
    with Genome(path) as genome:
        assert genome.fetch(Interval("A", 0, 7)) == "GATTACA"  # the exact name wins
        assert capsys.readouterr().err == ""
    path = write_fasta(tmp_path / "ensembl.fa", {"1": CHR_B, "MT": CHR_A})
    with Genome(path) as genome:
        assert genome.fetch(Interval("chr1", 0, 7)) == "GATTACA" and "chrM" in genome
        genome.check(Interval("chrM", 0, len(CHR_A)))
        assert genome.fetch(Interval("chrM", 0, 4)) == "ACGT"
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "reading 'chr1' as '1'" in err
        with pytest.raises(UserError, match="chromosome 'chr2' is not in ensembl.fa"):
            genome.fetch(Interval("chr2", 0, 4))
