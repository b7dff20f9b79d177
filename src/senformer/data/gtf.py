"""Gene models of a GTF file (GENCODE, Ensembl; plain or gzip), read with gtfparse.

A :class:`Gene` is isoform-agnostic as in calico's ``baskerville.gene.Transcriptome``: its ``exon`` rows of
every transcript, in 0-based half-open coordinates (GTF ``start - 1``, ``end``), merged where they overlap;
its chromosome and strand are those of its exons. Genes keep the order of their first exon in the file.

gtfparse reports a malformed file without its line, so each exon row is checked first: a row without nine
tab-separated columns, with a start or end that is not a whole number (or an end before its start), a
strand other than ``+``, ``-`` or ``.``, or no ``gene_id``, and a gene whose exons lie on two chromosomes or
strands, is one :class:`~senformer.errors.UserError` line naming the file and the line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .genome import text_lines

_GENE_ID = re.compile(r'(?:^|;)\s*gene_id\s+"?([^";]+)"?')


@dataclass(frozen=True)
class Gene:
    """One gene: ``exons`` the merged exon intervals ``(start, end)``, 0-based half-open, sorted."""

    gene_id: str
    name: str
    chrom: str
    strand: str
    exons: tuple[tuple[int, int], ...]

    @property
    def start(self) -> int:
        return self.exons[0][0]

    @property
    def end(self) -> int:
        return self.exons[-1][1]

    @property
    def midpoint(self) -> int:
        """The mean of the gene's exonic positions, truncated (baskerville ``Gene.midpoint``)."""
        starts = np.array([start for start, _ in self.exons], dtype=np.float64)
        ends = np.array([end for _, end in self.exons], dtype=np.float64)
        widths = ends - starts
        # The mean of start..end-1 over every exon, weighted by its width, without listing the positions.
        return int(((starts + ends - 1) / 2 * widths).sum() / widths.sum())


def merge_intervals(intervals) -> tuple[tuple[int, int], ...]:
    """Sorted ``(start, end)`` intervals with overlapping ones merged (touching ones stay apart, as
    intervaltree's ``merge_overlaps`` leaves them)."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def _check_exon_rows(path: Path) -> dict[str, tuple[int, str, str]]:
    """``{gene_id: (first line, chrom, strand)}`` of the exon rows; a malformed row is a UserError."""
    genes: dict[str, tuple[int, str, str]] = {}
    for number, line in text_lines(path, "GTF"):
        if line.startswith("#") or not line.strip():
            continue
        columns = line.rstrip("\r\n").split("\t")
        where = f"{path}, line {number}"
        if len(columns) != 9:
            raise UserError(f"{where}: a GTF row has 9 tab-separated columns, found {len(columns)}")
        if columns[2] != "exon":
            continue
        try:
            start, end = int(columns[3]), int(columns[4])
        except ValueError:
            raise UserError(f"{where}: start {columns[3]!r} and end {columns[4]!r} must be whole numbers") from None
        if start < 1 or end < start:
            raise UserError(f"{where}: an exon runs from start >= 1 to end >= start, found {start}-{end}")
        if columns[6] not in ("+", "-", "."):
            raise UserError(f"{where}: strand must be +, - or ., found {columns[6]!r}")
        match = _GENE_ID.search(columns[8])
        if match is None:
            raise UserError(f"{where}: the exon has no gene_id attribute")
        gene_id = match.group(1)
        first = genes.setdefault(gene_id, (number, columns[0], columns[6]))
        if first[1:] != (columns[0], columns[6]):
            raise UserError(f"{where}: gene {gene_id} has exons on {first[1]}{first[2]} (line {first[0]}) and "
                            f"{columns[0]}{columns[6]}")
    return genes


def read_gtf(path: str | os.PathLike) -> list[Gene]:
    """The genes of a GTF file with their merged exons, in the order of their first exon row.

    A file without exon rows, a missing file and a malformed exon row are one UserError line.
    """
    import gtfparse

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such GTF file")
    checked = _check_exon_rows(path)
    if not checked:
        raise UserError(f"{path}: no exon rows (a GTF gene model lists its exons with feature 'exon')")
    try:
        table = gtfparse.read_gtf(str(path), features={"exon"}, result_type="pandas")
    except Exception as error:  # gtfparse's own errors (ParsingError, polars' and pandas') carry no line
        raise UserError(f"{path}: not a GTF file gtfparse can read ({str(error).splitlines()[0]})") from None
    names = table["gene_name"] if "gene_name" in table.columns else table["gene_id"]
    exons: dict[str, list[tuple[int, int]]] = {}
    gene_names: dict[str, str] = {}
    for gene_id, name, start, end in zip(table["gene_id"], names, table["start"], table["end"]):
        exons.setdefault(gene_id, []).append((int(start) - 1, int(end)))
        gene_names.setdefault(gene_id, str(name) or gene_id)
    genes = [Gene(gene_id, gene_names[gene_id], chrom, strand, merge_intervals(exons[gene_id]))
             for gene_id, (_, chrom, strand) in sorted(checked.items(), key=lambda item: item[1][0])]
    return genes
