"""VCF/BCF reading through cyvcf2: the committed bcftools fixtures, allele splitting, skips, region queries
with and without an index, and damaged files refused in one line naming the file."""

import gzip
import shutil
from pathlib import Path

import pytest

from senformer.data.vcf import (
    SKIP_BREAKEND, SKIP_MISSING, SKIP_PAST_END, SKIP_POSITION, SKIP_SPANNING, SKIP_SYMBOLIC, VariantFile, read_variants,
)
from senformer.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "variants"
EXPECTED = [  # (pos, id, ref, alt, skip) as make_variants.sh writes them
    (1500, "snv1", "C", "A", None), (2200, "multi", "A", "C", None), (2200, "multi", "A", "G", None),
    (2600, "del3", "TTGA", "T", None), (3000, "ins4", "G", "GGATT", None), (3300, "mnv", "AC", "CA", None),
    (3500, "sv", "T", "<DEL>", SKIP_SYMBOLIC), (3600, "star", "A", "C", None),
    (3600, "star", "A", "*", SKIP_SPANNING), (4000, "missing", "T", ".", SKIP_MISSING),
    (800, "snv2", "G", "A", None), (2000, "bnd", "A", "A]chr1:100]", SKIP_BREAKEND),
    (2950, "edge", "TTC", "T", None),
]


def summary(variants):
    return [(v.pos, v.id, v.ref, v.alt, v.skip) for v in variants]


@pytest.mark.parametrize("name", ["variants.vcf.gz", "variants.bcf"])
def test_bcftools_fixtures_split_alleles_and_name_skips(name):
    variants = list(read_variants(FIXTURES / name))
    assert summary(variants) == EXPECTED
    assert [v.chrom for v in variants] == ["chr1"] * 10 + ["chr2"] * 3
    assert variants[1].record == variants[2].record == 2 and variants[1].start == 2199
    assert variants[3].end == 2603  # 0-based end of TTGA


def test_plain_text_and_gzip_vcf_read_the_same(tmp_path):
    text = gzip.decompress((FIXTURES / "variants.vcf.gz").read_bytes())
    (tmp_path / "plain.vcf").write_bytes(text)
    (tmp_path / "plain.vcf.gz").write_bytes(gzip.compress(text))  # gzip, not bgzip: readable, not indexable
    assert summary(read_variants(tmp_path / "plain.vcf")) == EXPECTED
    assert summary(read_variants(tmp_path / "plain.vcf.gz")) == EXPECTED


def test_region_queries_with_and_without_an_index(tmp_path):
    shutil.copy(FIXTURES / "variants.vcf.gz", tmp_path / "unindexed.vcf.gz")
    paths = [FIXTURES / "variants.vcf.gz", FIXTURES / "variants.bcf", tmp_path / "unindexed.vcf.gz"]
    for path in paths:
        with VariantFile(path) as variants:
            # del3 (2600..2603) overlaps 2602 but starts before it: only alleles starting in the region count
            assert [v.id for v in variants.query("chr1", 2599, 3000)] == ["del3", "ins4"], path
            assert [v.id for v in variants.query("chr1", 2600, 3000)] == ["ins4"], path
            assert [v.alt for v in variants.query("chr1", 3599, 3600)] == ["C", "*"], path
            assert [v.id for v in variants.query("2", 0, 10_000)] == ["snv2", "bnd", "edge"], path  # 2 = chr2
            assert list(variants.query("chrX", 0, 10_000)) == [], path


def one_line_error(path, match):
    with pytest.raises(UserError, match=match) as caught:
        list(read_variants(path))
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_truncated_and_corrupt_files_are_one_line_naming_the_file(tmp_path):
    bgzip = (FIXTURES / "variants.vcf.gz").read_bytes()
    bcf = (FIXTURES / "variants.bcf").read_bytes()
    cases = {
        "cut.vcf.gz": bgzip[:-28],  # cut at the block boundary: htslib alone would read a clean end
        "half.vcf.gz": bgzip[: len(bgzip) // 2],
        "cut.bcf": bcf[: len(bcf) - 40],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        one_line_error(tmp_path / name, "truncated")
    flipped = bytearray(bgzip)
    flipped[len(bgzip) // 2] ^= 0xFF
    (tmp_path / "flipped.vcf.gz").write_bytes(bytes(flipped))
    one_line_error(tmp_path / "flipped.vcf.gz", "not a readable VCF/BCF|corrupt")
    text = gzip.decompress(bgzip)
    (tmp_path / "cut_gzip.vcf.gz").write_bytes(gzip.compress(text)[:-30])
    one_line_error(tmp_path / "cut_gzip.vcf.gz", "truncated or corrupt")
    (tmp_path / "headerless.vcf").write_text("chr1\t100\t.\tA\tC\n")
    one_line_error(tmp_path / "headerless.vcf", "##fileformat")
    with pytest.raises(FileNotFoundError, match="no such VCF"):
        list(read_variants(tmp_path / "absent.vcf"))


HEADER = "##fileformat=VCFv4.2\n{contigs}#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def test_impossible_coordinates_are_skipped_with_a_note(tmp_path):
    """POS 0 lies before the chromosome (it was scored against the padding); REF past a ##contig length
    cannot be on the chromosome; a negative POS does not parse at all."""
    records = ("chr1\t0\tzero\tN\tA\t.\t.\t.\n" "chr1\t5999\tpast\tACG\tA,T\t.\t.\t.\n"
               "chr1\t5998\tlast\tACG\tA\t.\t.\t.\n" "chr2\t10\tbare\tA\tC\t.\t.\t.\n")
    contigs = "##contig=<ID=chr1,length=6000>\n##contig=<ID=chr2>\n"
    (tmp_path / "calls.vcf").write_text(HEADER.format(contigs=contigs) + records)
    (tmp_path / "calls.vcf.gz").write_bytes(gzip.compress((tmp_path / "calls.vcf").read_bytes()))
    for path in (tmp_path / "calls.vcf", tmp_path / "calls.vcf.gz"):
        assert [(v.id, v.alt, v.skip) for v in read_variants(path)] == [
            ("zero", "A", SKIP_POSITION), ("past", "A", f"{SKIP_PAST_END} (chr1 is 6,000 bp)"),
            ("past", "T", f"{SKIP_PAST_END} (chr1 is 6,000 bp)"), ("last", "A", None), ("bare", "C", None)]
    (tmp_path / "negative.vcf").write_text(HEADER.format(contigs="") + "chr1\t-3\tneg\tA\tC\t.\t.\t.\n")
    one_line_error(tmp_path / "negative.vcf", "record 1 is malformed")  # it crashed the process
    (tmp_path / "declared.vcf").write_text(HEADER.format(contigs=contigs) + "chr1\t10\tok\tA\tC\t.\t.\t.\n"
                                            "chr1\t-3\tneg\tA\tC\t.\t.\t.\n")
    one_line_error(tmp_path / "declared.vcf", "record 2 is malformed")
