"""Variants of a VCF or BCF file (plain, bgzip or BCF, through cyvcf2 and htslib), one per ALT allele.

:func:`read_variants` streams a file in order; :class:`VariantFile` also answers region queries (through the
file's ``.tbi``/``.csi`` index when it has one, else from the variants held in memory). Every record is split
into one :class:`Variant` per ALT allele; alleles senformer cannot score keep their place with a ``skip``
reason instead of disappearing, so a caller can note and count them:

- symbolic alleles (``<DEL>``, ``<INS:ME>``...), the spanning deletion ``*`` and breakends (``A]chr2:5]``);
- a missing ALT (``.``: a record without alternative alleles);
- impossible coordinates: ``POS`` below 1 (``POS 0`` would be scored against the padding before the
  chromosome) and REF running past the contig's end where the header's ``##contig`` line gives its length.
  (A negative ``POS`` does not parse: htslib refuses the record, a malformed-record error.)

A truncated or corrupt file (a damaged bgzip block, a BCF cut short, a bgzip file without its end-of-file
block) is one :class:`~senformer.errors.UserError` line naming the file, never a partial list of variants.
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import UserError

_BASES = re.compile(r"^[ACGTN]+$")
# The empty BGZF block every bgzip/BCF file ends with (SAM/BAM specification, section 4.1.2): without it the
# file was cut at a block boundary, which htslib reads as a clean end of the records.
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")

SKIP_SYMBOLIC = "skipped: symbolic allele"
SKIP_MISSING = "skipped: missing ALT"
SKIP_BREAKEND = "skipped: breakend"
SKIP_SPANNING = "skipped: spanning deletion (*)"
SKIP_REF = "skipped: REF is not spelled in bases"
SKIP_POSITION = "skipped: POS before the chromosome start (POS < 1)"
SKIP_PAST_END = "skipped: REF runs past the contig's end"


@dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record: ``pos`` is 1-based as in the VCF, ``record`` the record's number in
    the file (1-based); ``skip`` says why it cannot be scored (None when it can)."""

    chrom: str
    pos: int
    ref: str
    alt: str
    id: str = "."
    record: int = 0
    skip: str | None = None

    @property
    def start(self) -> int:
        """0-based position of the first REF base."""
        return self.pos - 1

    @property
    def end(self) -> int:
        """0-based end (exclusive) of the REF bases."""
        return self.start + len(self.ref)

    def __str__(self) -> str:
        return f"{self.chrom}:{self.pos} {self.ref}>{self.alt}"


def allele_skip(ref: str, alt: str) -> str | None:
    """Why the allele ``ref > alt`` cannot be scored, or None for an SNV, MNV or indel spelled in bases."""
    if alt in ("", "."):
        return SKIP_MISSING
    if alt == "*":
        return SKIP_SPANNING
    if alt.startswith("<"):
        return SKIP_SYMBOLIC
    if "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return SKIP_BREAKEND
    if not _BASES.match(ref):
        return SKIP_REF
    if not _BASES.match(alt):
        return SKIP_SYMBOLIC
    return None


def _check_complete(path: Path) -> None:
    """A bgzip or BCF file must end with the BGZF end-of-file block; a plain gzip file (not indexable, but
    readable) must decompress to its end."""
    with open(path, "rb") as handle:
        start = handle.read(18)
        if start[:2] != b"\x1f\x8b":
            return  # plain text VCF
        bgzf = len(start) == 18 and start[3] & 4 and start[12:14] == b"BC"  # FEXTRA with the BGZF subfield
        if bgzf:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - len(BGZF_EOF), 0))
            if handle.read() != BGZF_EOF:
                raise UserError(f"{path}: truncated (no BGZF end-of-file block): the file was cut short")
            return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise UserError(f"{path}: the gzip stream is truncated or corrupt ({error})") from None


class VariantFile:
    """A VCF/BCF file opened through cyvcf2; iterate it for every variant, :meth:`query` for a region.

    >>> with VariantFile("calls.vcf.gz") as variants:
    ...     for variant in variants.query("chr1", 1_000_000, 1_100_000):
    ...         ...
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such VCF/BCF file: {self.path}")
        _check_complete(self.path)
        with open(self.path, "rb") as handle:
            self._compressed = handle.read(2) == b"\x1f\x8b"
        self._file = self._open()
        self._indexed: bool | None = None
        self._contig_lengths = self._header_lengths()
        self._in_memory: dict[str, tuple[list[int], list[Variant]]] | None = None

    def _open(self):
        try:
            import cyvcf2
        except ImportError as error:  # a declared dependency; said plainly if an environment lacks it
            raise UserError(f"reading {self.path} needs cyvcf2 (pip install cyvcf2): {error}") from None
        # htslib prints its own errors on stderr; each failure here becomes one line naming the file instead.
        cyvcf2.cyvcf2.set_htslib_log_level(0)
        try:
            return cyvcf2.VCF(str(self.path), lazy=True)
        except Exception as error:  # OSError for a foreign file, a bare Exception for a damaged header
            with open(self.path, "rb") as handle:
                start = handle.read(16)
            if start[:2] != b"\x1f\x8b" and start[:4] != b"BCF\x02" and not start.startswith(b"##fileformat"):
                raise UserError(f"{self.path}: not a VCF file (its first line must be ##fileformat=VCFv4.x, "
                                "then the #CHROM header line)") from None
            if start[:2] != b"\x1f\x8b" and start[:4] != b"BCF\x02":
                raise UserError(f"{self.path}: not a readable VCF header ({_first_line(error)}): its #CHROM line "
                                "names the 8 tab-separated columns CHROM POS ID REF ALT QUAL FILTER INFO") from None
            raise UserError(f"{self.path}: not a readable VCF/BCF file ({_first_line(error)})") from None

    def _header_lengths(self) -> dict[str, int]:
        """Contig lengths from the header's ``##contig=<ID=...,length=...>`` lines (those that give one)."""
        try:
            return {name: int(length) for name, length in zip(self._file.seqnames, self._file.seqlens) if length > 0}
        except Exception:  # cyvcf2 raises when the header names no contigs
            return {}

    def _coordinate_skip(self, chrom: str, pos: int, ref: str) -> str | None:
        if pos < 1:
            return SKIP_POSITION
        length = self._contig_lengths.get(chrom)
        if length is not None and pos - 1 + len(ref) > length:
            return f"{SKIP_PAST_END} ({chrom} is {length:,} bp)"
        return None

    @property
    def chromosomes(self) -> list[str]:
        """Contigs named in the header (VCF ``##contig`` lines; may be empty for a plain VCF)."""
        try:
            return list(self._file.seqnames)
        except Exception:
            return []

    def __iter__(self) -> Iterator[Variant]:
        """Every allele in file order (a fresh pass over the file each time)."""
        handle = self._open()
        try:
            yield from self._variants(iter(handle), 0)
        finally:
            handle.close()

    def _variants(self, records, first_record: int) -> Iterator[Variant]:
        number = first_record
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as error:  # htslib: a damaged block or a malformed record
                if self._compressed:
                    where = f"after record {number}" if number else "in its first record"
                    raise UserError(f"{self.path}: truncated or corrupt {where} ({_first_line(error)})") from None
                raise UserError(f"{self.path}: record {number + 1} is malformed: a VCF record has 8 tab-separated "
                                "columns, CHROM POS ID REF ALT QUAL FILTER INFO ('.' for a missing value)") from None
            number += 1
            if record.end <= record.start and not record.ALT:
                # htslib hands back an unparsed record (no alleles; reading REF or ID crashes the process)
                # when a POS that does not parse comes with a contig the header does not declare.
                raise UserError(f"{self.path}: record {number} is malformed: its POS is not a whole number of "
                                "at least 1 (or it has no REF)")
            ref = (record.REF or "").upper()
            alts = list(record.ALT) or ["."]
            identifier = record.ID or "."
            position = int(record.POS)
            impossible = self._coordinate_skip(record.CHROM, position, ref)
            for alt in alts:
                alt = alt.upper() if _BASES.match(alt.upper()) else alt
                yield Variant(record.CHROM, position, ref, alt, identifier, number,
                              impossible or allele_skip(ref, alt))

    def query(self, chrom: str, start: int, end: int) -> Iterator[Variant]:
        """Alleles whose first REF base lies in ``[start, end)`` (0-based) of ``chrom``, in file order.

        Uses the file's index when there is one (``.tbi`` or ``.csi``, as ``tabix``/``bcftools index``
        write); otherwise reads the whole file once into memory and answers from there.
        """
        if self._indexed is None:
            self._indexed = self._has_index()
        known = self.chromosomes
        if known and chrom not in known:
            from .genome import chromosome_alias

            chrom = chromosome_alias(chrom, known) or chrom  # chr1 in a BED, 1 in the VCF: one naming rule
        if self._indexed:
            if chrom not in known:
                return
            try:
                records = iter(self._file(f"{chrom}:{max(start, 0) + 1}-{max(end, 1)}"))
            except Exception as error:
                raise UserError(f"{self.path}: region query {chrom}:{start + 1}-{end} failed "
                                f"({_first_line(error)})") from None
            # Records overlapping the region but starting before it (a deletion, an SV's END) are not ours.
            for variant in self._variants(records, 0):
                if start <= variant.start < end:
                    yield variant
            return
        if self._in_memory is None:
            self._in_memory = {}
            for variant in self:
                starts, variants = self._in_memory.setdefault(variant.chrom, ([], []))
                starts.append(variant.start)
                variants.append(variant)
            for chrom_name, (starts, variants) in self._in_memory.items():
                order = sorted(range(len(starts)), key=lambda i: (starts[i], variants[i].record))
                self._in_memory[chrom_name] = ([starts[i] for i in order], [variants[i] for i in order])
        if chrom not in self._in_memory:
            from .genome import chromosome_alias

            chrom = chromosome_alias(chrom, self._in_memory) or chrom
        starts, variants = self._in_memory.get(chrom, ([], []))
        found = variants[bisect.bisect_left(starts, start) : bisect.bisect_left(starts, end)]
        yield from sorted(found, key=lambda variant: variant.record)

    def _has_index(self) -> bool:
        for suffix in (".tbi", ".csi"):
            index = Path(f"{self.path}{suffix}")
            if index.is_file():
                try:
                    self._file.set_index(str(index))
                except Exception as error:
                    raise UserError(f"{index}: not a readable index of {self.path.name} "
                                    f"({_first_line(error)})") from None
                return True
        return False

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "VariantFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_variants(path: str | os.PathLike) -> Iterator[Variant]:
    """Every allele of a VCF/BCF file in file order (see :class:`VariantFile`)."""
    with VariantFile(path) as variants:
        yield from variants


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
