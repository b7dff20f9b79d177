"""The GTF reader: genes with merged exons (calico's isoform-agnostic genes), malformed rows named by line."""

import gzip

import numpy as np
import pytest

from helpers import SHARED
from senformer.data.gtf import Gene, read_gtf
from senformer.errors import UserError

CD99 = SHARED / "data" / "borzoi" / "CD99_example.gtf"


def test_read_gtf_merges_exons_per_gene(tmp_path):
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(
        "#!genome-build test\n"
        'chr1\tt\tgene\t10\t200\t.\t-\t.\tgene_id "B";\n'
        'chr1\tt\texon\t100\t200\t.\t-\t.\tgene_id "B"; transcript_id "B1"; gene_name "Bee";\n'
        'chr1\tt\texon\t10\t50\t.\t-\t.\tgene_id "B"; transcript_id "B1"; gene_name "Bee";\n'
        'chr1\tt\texon\t40\t60\t.\t-\t.\tgene_id "B"; transcript_id "B2"; gene_name "Bee";\n'
        'chr1\tt\texon\t61\t70\t.\t-\t.\tgene_id "B"; transcript_id "B2"; gene_name "Bee";\n'
        'chr2\tt\texon\t5\t5\t.\t+\t.\tgene_id "A"; transcript_id "A1"; gene_name "Ay";\n')
    genes = read_gtf(gtf)
    assert [(gene.gene_id, gene.name, gene.chrom, gene.strand) for gene in genes] == [
        ("B", "Bee", "chr1", "-"), ("A", "Ay", "chr2", "+")]
    assert genes[0].exons == ((9, 60), (60, 70), (99, 200))  # touching exons stay apart, as intervaltree's
    assert (genes[0].start, genes[0].end, genes[1].exons) == (9, 200, ((4, 5),))
    positions = [p for start, end in genes[0].exons for p in range(start, end)]
    assert genes[0].midpoint == int(np.mean(positions))


def test_read_gtf_cd99(tmp_path):
    if not CD99.exists():
        pytest.skip(f"{CD99} is not here")
    (gene,) = read_gtf(CD99)
    packed = tmp_path / "cd99"  # gzip is recognised by its bytes, not its name
    packed.write_bytes(gzip.compress(CD99.read_bytes()))
    assert read_gtf(packed) == [gene]
    assert (gene.gene_id, gene.name, gene.chrom, gene.strand) == ("ENSG00000002586.20", "CD99", "chrX", "+")
    assert gene.start == 2_691_186 and gene.exons == tuple(sorted(gene.exons))
    assert all(end <= start for (_, end), (start, _) in zip(gene.exons, gene.exons[1:]))


@pytest.mark.parametrize("row, message", [
    ('chr1\tt\texon\t10\t20\t.\t+\t.', "line 2: a GTF row has 9 tab-separated columns, found 8"),
    ('chr1\tt\texon\tten\t20\t.\t+\t.\tgene_id "A";', "line 2: start 'ten' and end '20' must be whole numbers"),
    ('chr1\tt\texon\t30\t20\t.\t+\t.\tgene_id "A";', "line 2: an exon runs from start >= 1 to end >= start"),
    ('chr1\tt\texon\t10\t20\t.\t?\t.\tgene_id "A";', "line 2: strand must be"),
    ('chr1\tt\texon\t10\t20\t.\t+\t.\ttranscript_id "A";', "line 2: the exon has no gene_id"),
    ('chr1\tt\texon\t10\t20\t.\t-\t.\tgene_id "G";', "line 2: gene G has exons on chr1\\+ \\(line 1\\) and chr1-"),
])
def test_read_gtf_refuses_a_malformed_row_naming_its_line(tmp_path, row, message):
    gtf = tmp_path / "bad.gtf"
    gtf.write_text('chr1\tt\texon\t1\t5\t.\t+\t.\tgene_id "G";\n' + row + "\n")
    with pytest.raises(UserError, match=f"bad.gtf, {message}"):
        read_gtf(gtf)


def test_read_gtf_refuses_missing_and_exonless_files(tmp_path):
    with pytest.raises(UserError, match="no such GTF file"):
        read_gtf(tmp_path / "absent.gtf")
    empty = tmp_path / "genes.gtf"
    empty.write_text('chr1\tt\tgene\t1\t5\t.\t+\t.\tgene_id "G";\n')
    with pytest.raises(UserError, match="no exon rows"):
        read_gtf(empty)


def test_gene_is_plain_data():
    gene = Gene("G", "G", "chr1", "+", ((0, 10), (20, 30)))
    assert (gene.start, gene.end, gene.midpoint) == (0, 30, 14)
