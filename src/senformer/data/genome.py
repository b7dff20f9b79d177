"""Genomic intervals, BED and ``chr:start-end`` parsing, and a FASTA genome that pads with N.

Coordinates are 0-based and half-open everywhere (BED's convention), also in ``chr:start-end`` text:
``chr1:100-200`` is the 100 bp ``[100, 200)``. A model window may reach beyond a chromosome end (a region
near a telomere resized to 196,608 bp); :meth:`Genome.fetch` fills that part with ``N``, which the model
sees as an all-zero one-hot.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import UserError


@dataclass(frozen=True)
class Interval:
    """``chrom:[start, end)``, 0-based half-open. ``start`` may be negative for windows padded with N."""

    chrom: str
    start: int
    end: int
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.chrom:
            raise UserError("an interval needs a chromosome name")
        if self.end <= self.start:
            raise UserError(f"{self.chrom}:{self.start}-{self.end}: start must be less than end")

    @property
    def width(self) -> int:
        return self.end - self.start

    @property
    def center(self) -> int:
        return (self.start + self.end) // 2

    def resize(self, width: int) -> "Interval":
        """The interval of ``width`` bp with the same centre (the extra bp goes right when uneven).

        A 131,072-bp Basenji2 interval resized to 196,608 bp gains exactly 32,768 bp on each side.
        """
        if width <= 0:
            raise UserError(f"width must be positive, got {width}")
        start = self.start + (self.width - width) // 2
        return Interval(self.chrom, start, start + width, self.name)

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start}-{self.end}"


_REGION = re.compile(r"^\s*(?P<chrom>[^\s:]+):(?P<start>[\d,_]+)-(?P<end>[\d,_]+)\s*$")


def parse_region(text: str) -> Interval:
    """``chr:start-end`` (0-based half-open, commas allowed: ``chr1:1,000-2,000``) -> :class:`Interval`."""
    match = _REGION.match(text)
    if match is None:
        raise UserError(f"region {text!r} is not of the form chrom:start-end (e.g. chr11:5,225,000-5,230,000)")
    start, end = (int(match.group(key).replace(",", "").replace("_", "")) for key in ("start", "end"))
    if start >= end:
        raise UserError(f"region {text!r}: start {start:,} must be less than end {end:,}")
    return Interval(match.group("chrom"), start, end)


def _open_text(path: Path):
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")


def read_bed(path: str | os.PathLike) -> Iterator[Interval]:
    """Intervals of a BED file (plain or gzip), streamed; the 4th column, if any, becomes the name.

    Header lines (``#``, ``track``, ``browser``) and blank lines are skipped; a malformed line raises a
    UserError naming the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such BED file: {path}")
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            columns = line.rstrip("\r\n").split("\t")
            if len(columns) < 3:
                columns = line.split()
            if len(columns) < 3:
                raise UserError(f"{path}, line {number}: expected at least 3 columns (chrom, start, end), got {line.strip()!r}")
            try:
                start, end = int(columns[1]), int(columns[2])
            except ValueError:
                raise UserError(f"{path}, line {number}: start and end must be integers, got {columns[1]!r} and {columns[2]!r}") from None
            if start < 0 or start >= end:
                raise UserError(f"{path}, line {number}: need 0 <= start < end, got start {start:,} and end {end:,}")
            name = columns[3].strip() if len(columns) > 3 else ""
            yield Interval(columns[0].strip(), start, end, name)


class Genome:
    """A FASTA genome (plain or bgzip, through pyfaidx; the ``.fai`` index is created when missing).

    >>> genome = Genome("hg38.fa")
    >>> genome.fetch(Interval("chr1", -5, 5))  # 'NNNNN' + the first 5 bp of chr1
    """

    def __init__(self, fasta_path: str | os.PathLike):
        import pyfaidx

        self.path = Path(fasta_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such FASTA file: {self.path}")
        try:
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True, rebuild=False)
        except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat, ValueError, OSError) as error:
            raise UserError(f"{self.path}: cannot read as FASTA ({error})") from None
        except ImportError as error:
            raise UserError(f"{self.path}: reading bgzip FASTA needs biopython ({error})") from None
        self.sizes: dict[str, int] = {name: len(record) for name, record in self._fasta.records.items()}

    def __contains__(self, chrom: str) -> bool:
        return chrom in self.sizes

    def _size(self, chrom: str) -> int:
        try:
            return self.sizes[chrom]
        except KeyError:
            known = ", ".join(list(self.sizes)[:5]) + (", ..." if len(self.sizes) > 5 else "")
            raise UserError(f"chromosome {chrom!r} is not in {self.path.name} (it has {known})") from None

    def check(self, interval: Interval) -> None:
        """Raise a UserError unless ``interval`` lies on its chromosome (a user region, before resizing)."""
        size = self._size(interval.chrom)
        if interval.start < 0 or interval.end > size:
            raise UserError(f"region {interval} runs off {interval.chrom}, which is {size:,} bp long")

    def fetch(self, interval: Interval) -> str:
        """The upper-case sequence of ``interval``; positions beyond the chromosome ends are ``N``."""
        size = self._size(interval.chrom)
        start, end = max(interval.start, 0), min(interval.end, size)
        inside = str(self._fasta[interval.chrom][start:end]) if start < end else ""
        left = min(max(0, -interval.start), interval.width)
        right = interval.width - left - len(inside)
        return "N" * left + inside + "N" * right

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
