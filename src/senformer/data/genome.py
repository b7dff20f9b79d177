"""Genomic intervals, BED and ``chr:start-end`` parsing, and a FASTA genome that pads with N.

Coordinates are 0-based and half-open everywhere (BED's convention), also in ``chr:start-end`` text:
``chr1:100-200`` is the 100 bp ``[100, 200)``. A model window may reach beyond a chromosome end (a region
near a telomere resized to 196,608 bp); :meth:`Genome.fetch` fills that part with ``N``, which the model
sees as an all-zero one-hot.

Chromosome names. Files from other sources name chromosomes differently (``1`` vs ``chr1``, ``MT`` vs
``chrM``). :func:`chromosome_alias` is the one mapping: it applies only when a name does not match as given,
and :class:`Genome` says so in one line the first time it maps a name.

FASTA index. A ``.fai`` is used only when the FASTA's bytes agree with it (each record's header, first and last
line and a few lines between, found by seeking); otherwise it is rebuilt (in a temporary folder when the
FASTA's folder is not writable), so a rewritten FASTA is never read at stale offsets, whatever its file date.
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
import sys
import tempfile
import warnings
import zlib
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
    strand: str = field(default=".", compare=False)  # "+", "-" or "." (BED column 6)

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


def text_lines(path: str | os.PathLike, kind: str = "text") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a plain or gzip text file; a truncated or corrupt gzip stream and bytes
    that are not UTF-8 raise a UserError naming the file (and the line)."""
    path = Path(path)
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    number = 0
    try:
        with raw:
            for number, data in enumerate(raw, start=1):
                try:
                    yield number, data.decode("utf-8")
                except UnicodeDecodeError:
                    raise UserError(f"{path}, line {number}: not UTF-8 text; is this a {kind} file?") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise UserError(f"{path}: the gzip stream is truncated or corrupt after line {number} ({error})") from None


def read_bed(path: str | os.PathLike) -> Iterator[Interval]:
    """Intervals of a BED file (plain or gzip), streamed; the 4th column, if any, becomes the name and the
    6th the strand.

    Header lines (``#``, ``track``, ``browser``) and blank lines are skipped; a malformed line, a negative
    or reversed interval, text that is not UTF-8 and a damaged gzip stream raise a UserError naming the file
    and the line number. This is the one BED reader: every command reads regions through it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such BED file: {path}")
    for number, line in text_lines(path, "BED"):
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
        strand = columns[5].strip() if len(columns) > 5 else "."
        if strand not in ("+", "-", "."):
            raise UserError(f"{path}, line {number}: strand (column 6) must be +, - or ., got {strand!r}")
        yield Interval(columns[0].strip(), start, end, name, strand)


def chromosome_alias(name: str, known) -> str | None:
    """The name in ``known`` that ``name`` means under the usual conventions (``1`` <-> ``chr1``,
    ``MT``/``M`` <-> ``chrM``/``chrMT``), or None. Exact matches are the caller's first choice."""
    bare = name[3:] if name.lower().startswith("chr") else name
    mito = bare.upper() in ("M", "MT")
    candidates = ["chrM", "chrMT", "MT", "M"] if mito else [f"chr{bare}", bare]
    for candidate in candidates:
        if candidate != name and candidate in known:
            return candidate
    return None


_HEADER_REACH = 65_536  # bytes read back from a record's first base to find its header line
_SAMPLED_LINES = 8  # line ends checked inside each record, besides its first and last line


class _Uncompressed:
    """Reads bytes at uncompressed offsets of a plain or bgzip FASTA (through its ``.gzi`` block table), so
    an index can be checked by seeking instead of reading a 3 GB genome whole."""

    def __init__(self, fasta: Path, gzi: Path | None):
        self._handle = open(fasta, "rb")
        self._blocks: list[tuple[int, int]] | None = None  # (uncompressed start, compressed start)
        if gzi is not None:
            from Bio import bgzf

            data = gzi.read_bytes()
            count = int.from_bytes(data[:8], "little")
            if len(data) != 8 + 16 * count:
                raise ValueError(f"{gzi} is not a .gzi block table")
            pairs = [(int.from_bytes(data[8 + 16 * i + 8 : 8 + 16 * i + 16], "little"),
                      int.from_bytes(data[8 + 16 * i : 8 + 16 * i + 8], "little")) for i in range(count)]
            self._blocks = [(0, 0), *pairs]
            self._reader = bgzf.BgzfReader(fileobj=self._handle, mode="rb")
            self._virtual = bgzf.make_virtual_offset

    def read(self, offset: int, size: int) -> bytes:
        size, offset = size + min(offset, 0), max(offset, 0)
        if size <= 0:
            return b""
        if self._blocks is None:
            self._handle.seek(offset)
            return self._handle.read(size)
        ustart, cstart = self._blocks[bisect.bisect_right(self._blocks, (offset, float("inf"))) - 1]
        self._reader.seek(self._virtual(cstart, offset - ustart))  # within-block offsets stay < 64 KiB
        return self._reader.read(size)

    def close(self) -> None:
        self._handle.close()


def _record_is_where_indexed(read, name: str, length: int, offset: int, line_bases: int, line_width: int,
                             last: bool) -> bool:
    """Whether the FASTA bytes agree with one ``.fai`` row: the header line ``>name`` ends just before
    ``offset``, and the first line, a few lines inside, and the last line have the indexed width and end in
    the indexed newline, followed by the next header (or the end of the file for the last record)."""
    if offset < 2 or length < 0 or (length and not 0 < line_bases < line_width <= line_bases + 2):
        return False
    before = read(offset - _HEADER_REACH, _HEADER_REACH)
    if not before.endswith(b"\n"):
        return False
    header_start = before.rfind(b"\n", 0, len(before) - 1) + 1
    if header_start == 0 and offset > _HEADER_REACH:
        return False
    header = before[header_start:].rstrip(b"\r\n")
    if header[:1] != b">" or header[1:].split(maxsplit=1)[:1] != [name.encode("utf-8", "replace")]:
        return False
    if length == 0:
        return True
    newline = b"\n" if line_width - line_bases == 1 else b"\r\n"
    lines = -(-length // line_bases)
    last_bases = length - (lines - 1) * line_bases
    checked = {0, lines - 1} | {k * (lines - 1) // (_SAMPLED_LINES + 1) for k in range(1, _SAMPLED_LINES + 1)}
    for line in sorted(checked):
        bases = last_bases if line == lines - 1 else line_bases
        start = offset + line * line_width
        chunk = read(start - len(newline), len(newline) + bases + len(newline))
        if line and not chunk.startswith(newline):
            return False
        sequence, end = chunk[len(newline) : len(newline) + bases], chunk[len(newline) + bases :]
        if len(sequence) != bases or any(mark in sequence for mark in (b"\n", b"\r", b">")):
            return False
        if line < lines - 1 and end != newline:
            return False
    after = read(offset + (lines - 1) * line_width + last_bases, 64).lstrip(b"\r\n")
    return after == b"" if last else after.startswith(b">")


def _index_is_current(fasta: Path, index: Path) -> bool:
    """Whether ``index`` (a ``.fai``) agrees with the bytes of ``fasta`` (plain or bgzip): every record's
    header, first and last line, and a few lines between are where the index says (seeks, not a full read).
    A file date proves nothing: ``cp -p``, ``rsync -t`` and ``tar x`` give an edited FASTA an old date."""
    if not index.is_file():
        return False
    gzi = Path(f"{fasta}.gzi")
    with open(fasta, "rb") as probe:
        bgzipped = probe.read(2) == b"\x1f\x8b"
    if bgzipped and not gzi.is_file():
        return False
    try:
        rows = [line.split("\t") for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = [(row[0], *map(int, row[1:5])) for row in rows]
    except (ValueError, IndexError, UnicodeDecodeError):
        return False
    if not records or len({record[0] for record in records}) != len(records):
        return False
    try:
        reader = _Uncompressed(fasta, gzi if bgzipped else None)
    except (ImportError, ValueError, OSError):
        return False
    try:
        return all(_record_is_where_indexed(reader.read, *record, last=number == len(records) - 1)
                   for number, record in enumerate(records))
    except (ValueError, OSError, EOFError, zlib.error):  # a bgzip block that is not one: a stale .gzi
        return False
    finally:
        reader.close()


class Genome:
    """A FASTA genome (plain or bgzip, through pyfaidx; the ``.fai`` index is created when missing or stale).
    A path only: names such as ``hg38`` are resolved above, by :func:`senformer.hub.resolve_genome`.

    >>> genome = Genome("hg38.fa")
    >>> genome.fetch(Interval("chr1", -5, 5))  # 'NNNNN' + the first 5 bp of chr1
    """

    def __init__(self, fasta_path: str | os.PathLike):
        import pyfaidx

        self.path = Path(fasta_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such FASTA file: {self.path} (a genome by name, such as hg38, is "
                                    "fetched by the commands' --fasta/--genome and senformer.hub.resolve_genome)")
        self._temporary = None
        index = Path(f"{self.path}.fai")
        options: dict = {}
        if not _index_is_current(self.path, index):
            gzi = Path(f"{self.path}.gzi")
            if os.access(self.path.parent, os.W_OK):
                index.unlink(missing_ok=True)
                gzi.unlink(missing_ok=True)  # a bgzip block table is rebuilt with the index it was checked with
            else:  # a read-only genome folder: build a private index instead of reading stale offsets
                self._temporary = tempfile.TemporaryDirectory(prefix="senformer-fai-")
                options["indexname"] = str(Path(self._temporary.name) / index.name)
                options["gzi_indexname"] = str(Path(self._temporary.name) / gzi.name)
        self._aliases: dict[str, str] = {}
        try:
            with warnings.catch_warnings():  # pyfaidx judges by file dates; the index was checked by content
                warnings.filterwarnings("ignore", message=".* is older than FASTA file", category=RuntimeWarning)
                self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True, rebuild=False,
                                            **options)
        except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat, ValueError, OSError) as error:
            raise UserError(f"{self.path}: cannot read as FASTA ({error})") from None
        except ImportError as error:
            raise UserError(f"{self.path}: reading bgzip FASTA needs biopython ({error})") from None
        self.sizes: dict[str, int] = {name: len(record) for name, record in self._fasta.records.items()}

    def __contains__(self, chrom: str) -> bool:
        return self.resolve(chrom, strict=False) is not None

    def resolve(self, chrom: str, strict: bool = True) -> str | None:
        """This genome's name for ``chrom``: as given when it exists, else its :func:`chromosome_alias`
        (said once on stderr). Unknown: a UserError, or None when not ``strict``."""
        if chrom in self.sizes:
            return chrom
        if chrom not in self._aliases:
            alias = chromosome_alias(chrom, self.sizes)
            if alias is None:
                if not strict:
                    return None
                known = ", ".join(list(self.sizes)[:5]) + (", ..." if len(self.sizes) > 5 else "")
                raise UserError(f"chromosome {chrom!r} is not in {self.path.name} (it has {known})")
            if not self._aliases:
                print(f"senformer: note: {self.path.name} names chromosomes differently; reading {chrom!r} as "
                      f"{alias!r} (and likewise for other names)", file=sys.stderr)
            self._aliases[chrom] = alias
        return self._aliases[chrom]

    def _size(self, chrom: str) -> int:
        return self.sizes[self.resolve(chrom)]

    def check(self, interval: Interval) -> None:
        """Raise a UserError unless ``interval`` lies on its chromosome (a user region, before resizing)."""
        size = self._size(interval.chrom)
        if interval.start < 0 or interval.end > size:
            raise UserError(f"region {interval} runs off {interval.chrom}, which is {size:,} bp long")

    def fetch(self, interval: Interval) -> str:
        """The upper-case sequence of ``interval``; positions beyond the chromosome ends are ``N``."""
        size = self._size(interval.chrom)
        start, end = max(interval.start, 0), min(interval.end, size)
        inside = str(self._fasta[self.resolve(interval.chrom)][start:end]) if start < end else ""
        left = min(max(0, -interval.start), interval.width)
        right = interval.width - left - len(inside)
        return "N" * left + inside + "N" * right

    def close(self) -> None:
        self._fasta.close()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
