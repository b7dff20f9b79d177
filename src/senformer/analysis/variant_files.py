"""The rows of ``analyze variants`` and their files: ``.tsv`` / ``.tsv.gz`` tables and ``.h5``, streamed a
window at a time into ``OUT.partial`` and resumed after a kill (a torn last line or gzip member is cut off
first).

The layout of each format is described in :mod:`senformer.analysis.variants`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.vcf import Variant
from ..errors import UserError
from ..outputs import hdf5

KEY_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "anchor", "distance", "note")
SUFFIXES = (".tsv.gz", ".tsv", ".h5")  # the output formats, longest suffix first
DEFAULT_SUFFIX = ".h5"  # compact: 4 bytes a value against about 13 in a table
# Bytes one score of one track takes in each format: float32 in HDF5; "%.9g" and a tab in a table (typical
# scores have 8-10 significant digits, a sign and an exponent or leading zeros); gzip roughly halves that.
BYTES_PER_VALUE = {"h5": 4, "tsv": 13, "tsv.gz": 6}
_CHUNK = 1 << 20


@dataclass
class Row:
    """One output row: an allele scored in one window (``edit`` None: skipped, ``note`` says why)."""

    variant: Variant
    anchor: str
    distance: int
    note: str = ""
    edit: object | None = None  # senformer.edits.Edit

    @property
    def key(self) -> tuple[str, int, str, str, str]:
        """The row's stable identity (also across shards): (chrom, pos, ref, alt, anchor)."""
        return self.variant.chrom, self.variant.pos, self.variant.ref, self.variant.alt, self.anchor


@dataclass
class ScoredRow:
    row: Row
    scores: dict[str, np.ndarray] | None  # None: skipped
    bases: str  # SHA-256 of the window's input bases
    ends_window: bool = False  # the last row of its window


def default_suffix(out: str) -> str:
    """``out`` itself when its name has a suffix, else ``out`` + :data:`DEFAULT_SUFFIX` (``calls`` -> ``calls.h5``)."""
    return out if Path(out).suffix else out + DEFAULT_SUFFIX


def size_estimate(rows: int, tracks: int, stats: int, kind: str) -> str:
    """One line: ``rows x tracks x stats x bytes = about N MB`` for an output of ``kind`` (``h5``, ``tsv``, ...)."""
    size = rows * tracks * stats * BYTES_PER_VALUE[kind]
    shown = f"{size / 1e9:,.1f} GB" if size >= 1e9 else f"{size / 1e6:,.1f} MB" if size >= 1e5 else f"{size / 1e3:,.0f} kB"
    return (f"{rows:,} allele{'s' if rows != 1 else ''} x {tracks:,} track{'s' if tracks != 1 else ''} x {stats} "
            f"score{'s' if stats != 1 else ''} x {BYTES_PER_VALUE[kind]} bytes ({kind}): about {shown}")


def output_format(out: str | os.PathLike) -> str:
    """``tsv``, ``tsv.gz`` or ``h5`` from the name of ``out``; else one UserError line."""
    name = Path(out).name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    raise UserError(f"--out {out}: the name must end in .tsv, .tsv.gz or .h5 (the output format)")


class TableWriter:
    """TSV rows, plain or one gzip member per append; row digests beside it in ``PARTIAL.bases``."""

    def __init__(self, path: Path, columns: list[str], compressed: bool):
        self.path, self.columns, self.compressed = path, columns, compressed
        self.digest_path = path.with_name(path.name + ".bases")

    def reset(self) -> list[str]:
        self.path.write_bytes(self._encode("\t".join(self.columns) + "\n"))
        self.digest_path.write_text("", encoding="ascii")
        return []

    def resume(self) -> list[str]:
        """Digests of the complete rows; a torn last line or gzip member is cut off. The file is read in
        chunks, never whole: a partial output can be larger than memory."""
        if not self.path.is_file() or not self.digest_path.is_file():
            return self.reset()
        header, lines, kept = (self._complete_gzip if self.compressed else self._complete_lines)()
        if header != ("\t".join(self.columns) + "\n").encode("utf-8"):
            return self.reset()
        if kept != self.path.stat().st_size:
            with open(self.path, "r+b") as handle:
                handle.truncate(kept)
        digests = self.digest_path.read_text(encoding="ascii").split("\n")[:-1]
        rows = lines - 1
        if len(digests) < rows:  # digests are written before their rows: this file was not written so
            return self.reset()
        if len(digests) > rows:
            self.digest_path.write_text("".join(d + "\n" for d in digests[:rows]), encoding="ascii")
        return digests[:rows]

    def _complete_lines(self) -> tuple[bytes, int, int]:
        """(header line, complete lines, bytes up to the last newline) of a plain TSV."""
        with open(self.path, "rb") as handle:
            header = handle.readline()
            lines, offset, kept = (1, len(header), len(header)) if header.endswith(b"\n") else (0, 0, 0)
            while chunk := handle.read(_CHUNK):
                lines += chunk.count(b"\n")
                last = chunk.rfind(b"\n")
                if last >= 0:
                    kept = offset + last + 1
                offset += len(chunk)
        return header, lines, kept

    def _complete_gzip(self) -> tuple[bytes, int, int]:
        """(first member's text = the header, lines in complete members, bytes up to the last complete one)."""
        header, lines, kept = b"", 0, 0
        member_lines, member_bytes, first = 0, 0, True
        stream = zlib.decompressobj(wbits=31)
        with open(self.path, "rb") as handle:
            buffer = b""
            while True:
                if not buffer:
                    buffer = handle.read(_CHUNK)
                    if not buffer:
                        break
                try:
                    text = stream.decompress(buffer)
                except zlib.error:
                    break
                member_lines += text.count(b"\n")
                if first:
                    header += text
                if not stream.eof:
                    member_bytes += len(buffer)
                    buffer = b""
                    continue
                kept += member_bytes + len(buffer) - len(stream.unused_data)
                lines += member_lines
                buffer, member_lines, member_bytes, first = stream.unused_data, 0, 0, False
                stream = zlib.decompressobj(wbits=31)
        return header, lines, kept

    def _encode(self, text: str) -> bytes:
        return gzip.compress(text.encode("utf-8"), mtime=0) if self.compressed else text.encode("utf-8")

    def append(self, rows: list[ScoredRow], stats: Sequence[str], num_tracks: int) -> None:
        with open(self.digest_path, "a", encoding="ascii") as handle:
            handle.write("".join(row.bases + "\n" for row in rows))
        lines, members = [], []
        for scored in rows:
            row, variant = scored.row, scored.row.variant
            keys = [variant.chrom, str(variant.pos), variant.id, variant.ref, variant.alt, row.anchor,
                    str(row.distance), row.note]
            if scored.scores is None:
                values = ["nan"] * (len(stats) * num_tracks)
            else:
                values = [f"{value:.9g}" for stat in stats for value in scored.scores[stat]]
            lines.append("\t".join(keys + values) + "\n")
            if scored.ends_window or scored is rows[-1]:
                members.append(self._encode("".join(lines)))
                lines = []
        # One gzip member per window, however many windows an append holds: the bytes never depend on when
        # the run was cut or how its appends were grouped.
        with open(self.path, "ab") as handle:
            handle.write(b"".join(members))

    def finish(self) -> None:
        self.digest_path.unlink(missing_ok=True)

    def concatenate(self, parts: Sequence[Path]) -> None:
        """Write the header, then the rows of each finished part (a table of the same columns) in order."""
        header = self._encode("\t".join(self.columns) + "\n")
        with open(self.path, "wb") as target:
            target.write(header)
            for part in parts:
                if part.stat().st_size == 0:
                    continue  # a shard without windows
                with open(part, "rb") as source:
                    if source.read(len(header)) != header:
                        raise UserError(f"{part} does not start with the columns of {self.path.name}: not a part "
                                        "of this output")
                    while chunk := source.read(_CHUNK):
                        target.write(chunk)

    def close(self) -> None:
        """Every append is complete on disk when it returns: nothing is held open."""

    def abandon(self) -> None:
        """After a fault: nothing is held open."""

    def verify(self, path: Path) -> None:
        """Every scored row's values are finite as written (NaN only in a skipped row, with its note)."""
        opener = gzip.open if self.compressed else open
        keys = len(KEY_COLUMNS)
        with opener(path, "rt", encoding="utf-8") as handle:
            handle.readline()
            for number, line in enumerate(handle, start=1):
                fields = line.rstrip("\n").split("\t")
                if fields[keys - 1].startswith("skipped"):
                    continue
                values = np.array(fields[keys:], dtype=np.float64)
                if len(fields) != len(self.columns) or not np.isfinite(values).all():
                    raise UserError(f"{path}: row {number} (variant {fields[0]}:{fields[1]}) is incomplete or not "
                                    "finite as written")


class H5Writer:
    """``/variants``, ``/scores/<stat>`` and ``/tracks`` grown by each append; ``completed`` counts rows."""

    def __init__(self, path: Path, stats: Sequence[str], tracks: np.ndarray, names: list[str],
                 descriptions: list[str]):
        self.path, self.stats, self.tracks, self.names, self.descriptions = path, stats, tracks, names, descriptions
        self.handle = None

    def reset(self) -> list[str]:
        import h5py

        self.close()
        self.path.unlink(missing_ok=True)
        self.handle = hdf5.open_hdf5(self.path, "w")
        strings = h5py.string_dtype("utf-8")
        group = self.handle.create_group("variants")
        for name in ("chrom", "id", "ref", "alt", "anchor", "note"):
            group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=strings, chunks=(1024,))
        for name in ("pos", "distance"):
            group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
        group.create_dataset("bases_sha256", shape=(0,), maxshape=(None,), dtype="S64", chunks=(1024,))
        scores = self.handle.create_group("scores")
        for stat in self.stats:
            scores.create_dataset(stat, shape=(0, len(self.tracks)), maxshape=(None, len(self.tracks)),
                                  dtype=np.float32, chunks=(max(1, min(1024, 2**20 // (4 * len(self.tracks)))),
                                                            len(self.tracks)))
        tracks = self.handle.create_group("tracks")
        tracks.create_dataset("index", data=np.asarray(self.tracks, dtype=np.int64))
        tracks.create_dataset("identifier", data=np.array(self.names, dtype=object), dtype=strings)
        tracks.create_dataset("description", data=np.array(self.descriptions, dtype=object), dtype=strings)
        self.handle.attrs["stats"] = list(self.stats)
        self.handle.attrs["completed"] = 0
        hdf5.check(self.handle)
        return []

    def resume(self) -> list[str]:
        try:
            self.handle = hdf5.open_hdf5(self.path, "a")
            completed = int(self.handle.attrs["completed"])
            if list(self.handle.attrs["stats"]) != list(self.stats):
                raise KeyError("stats")
            digests = [bytes(value).decode("ascii") for value in self.handle["variants/bases_sha256"][:completed]]
        except (OSError, KeyError, ValueError):
            return self.reset()  # killed before the file could be opened again: start it over
        self._resize(completed)
        return digests

    def _resize(self, count: int) -> None:
        for dataset in self._datasets():
            dataset.resize(count, axis=0)

    def _datasets(self):
        yield from self.handle["variants"].values()
        yield from self.handle["scores"].values()

    def append(self, rows: list[ScoredRow], stats: Sequence[str], num_tracks: int) -> None:
        start = int(self.handle.attrs["completed"])
        stop = start + len(rows)
        self._resize(stop)
        group = self.handle["variants"]
        columns = {
            "chrom": [r.row.variant.chrom for r in rows], "id": [r.row.variant.id for r in rows],
            "ref": [r.row.variant.ref for r in rows], "alt": [r.row.variant.alt for r in rows],
            "anchor": [r.row.anchor for r in rows], "note": [r.row.note for r in rows],
        }
        for name, values in columns.items():
            group[name][start:stop] = np.array(values, dtype=object)
        group["pos"][start:stop] = [r.row.variant.pos for r in rows]
        group["distance"][start:stop] = [r.row.distance for r in rows]
        group["bases_sha256"][start:stop] = [r.bases.encode("ascii") for r in rows]
        for stat in stats:
            block = np.full((len(rows), num_tracks), np.nan, dtype=np.float32)
            for index, scored in enumerate(rows):
                if scored.scores is not None:
                    block[index] = scored.scores[stat]
            self.handle["scores"][stat][start:stop] = block
        hdf5.check(self.handle)  # the rows are on the device before ``completed`` counts them
        self.handle.attrs["completed"] = stop
        hdf5.check(self.handle)

    def extend(self, part: Path) -> None:
        """Append every row of a finished part (an HDF5 output of the same stats and tracks)."""
        import h5py

        start = int(self.handle.attrs["completed"])
        with h5py.File(part, "r") as source:
            count = int(source.attrs["completed"])
            self._resize(start + count)
            for dataset in self._datasets():
                dataset[start : start + count] = source[dataset.name][:count]
        self.handle.attrs["completed"] = start + count
        hdf5.check(self.handle)

    def close(self) -> None:
        """Close the file; raises the write failure its file met, if any."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            fault = hdf5.close(handle)
            if fault is not None:
                raise fault

    def abandon(self) -> None:
        """After an error: close the file once (the first error is the one reported)."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            hdf5.close(handle)

    def verify(self, path: Path) -> None:
        """Every scored row's values are finite as written (NaN only in a skipped row, with its note)."""
        import h5py

        with h5py.File(path, "r") as handle:
            count = int(handle.attrs["completed"])
            notes = handle["variants/note"][:count]
            skipped = np.array([bytes(note).startswith(b"skipped") if isinstance(note, bytes) else
                                str(note).startswith("skipped") for note in notes], dtype=bool)
            for stat in handle["scores"]:
                values = handle["scores"][stat][:count]
                bad = np.flatnonzero(~np.isfinite(values).all(axis=1) & ~skipped) if len(values) else []
                if len(values) != count or len(bad):
                    raise UserError(f"{path}: {stat} of row {int(bad[0]) + 1 if len(bad) else count} is incomplete "
                                    "or not finite as written")



