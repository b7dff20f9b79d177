"""TFRecord files without TensorFlow: a streaming reader and a writer for ZLIB, GZIP and uncompressed files.

Framing (TensorFlow ``core/lib/io/record_writer.cc``), repeated for every record::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)

``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``. A ZLIB file is this byte stream as ONE
zlib stream (header ``0x78 0x9c``; Basenji2's default), a GZIP file as a gzip stream. Plain ``tfrecord``
readers on PyPI accept only gzip or none, so Basenji2 data used to need TensorFlow.

The reader decompresses in bounded chunks (never the whole file), checks both CRCs unless told not to, and
raises :class:`TFRecordError` naming the file and the record number for a truncated file, a bad CRC or
trailing garbage: nothing silently yields a short dataset.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import google_crc32c

from ..errors import UserError
from ..io import atomic_path

COMPRESSIONS = ("zlib", "gzip", "none")
_MASK_DELTA = 0xA282EAD8
_HEADER_BYTES = 12  # uint64 length + uint32 crc
_FOOTER_BYTES = 4
_READ_CHUNK = 1 << 16  # fewest compressed bytes read per step
_MAX_INPUT_CHUNK = 1 << 26  # most compressed bytes read per step (bounds memory for huge records)
_MAX_RECORD_BYTES = 1 << 34  # 16 GiB: anything larger is a misread length, not a record


class TFRecordError(UserError):
    """A malformed TFRecord file; the message names the file and the record number (0-based)."""


def mask_crc(crc: int) -> int:
    """TensorFlow's CRC mask (``crc32c.h: Mask``): rotate right by 15 bits and add a constant."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC32C of ``data``, as TFRecord framing and TensorBundle files store it."""
    return mask_crc(google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data))


def _normalise_compression(compression: str | None, path: Path) -> str:
    name = "none" if compression in (None, "", "none", "NONE") else str(compression).lower()
    if name == "auto":
        return detect_compression(path)
    if name not in COMPRESSIONS:
        raise UserError(f"compression {compression!r} is not one of auto, {', '.join(COMPRESSIONS)}")
    return name


def detect_compression(path: str | os.PathLike) -> str:
    """Guess ``"gzip"``, ``"none"`` or ``"zlib"`` from the first bytes of ``path``.

    gzip has a magic number; an uncompressed file starts with a length whose masked CRC follows it; a zlib
    stream starts with a 2-byte header that is a multiple of 31. An empty file is an empty uncompressed file.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_BYTES)
    if not head:
        return "none"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) == _HEADER_BYTES and int.from_bytes(head[8:12], "little") == masked_crc32c(head[:8]):
        return "none"
    if len(head) >= 2 and head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return "zlib"
    raise TFRecordError(f"{path}: not a TFRecord file (neither zlib, gzip nor an uncompressed record header)")


class _ByteSource:
    """Exact-size reads from a file through an optional streaming decompressor, in bounded memory.

    The decompressor is asked for at most the bytes still missing (``max_length``), so nothing is
    decompressed ahead of need and a payload is assembled with a single join: one copy per record.
    """

    def __init__(self, handle: BinaryIO, compression: str, path: Path):
        self.handle = handle
        self.path = path
        self.compression = compression
        self._decompressor = self._new_decompressor() if compression != "none" else None
        self._input = b""  # compressed bytes read from the file, not yet given to the decompressor
        self._finished = False  # the compressed stream ended cleanly
        self.stream_truncated = False
        self._consumed = 1  # compressed and decompressed byte counts, for the ratio that sizes reads
        self._produced = 1

    def _new_decompressor(self):
        return zlib.decompressobj(zlib.MAX_WBITS | (16 if self.compression == "gzip" else 0))

    def _produce(self, wanted: int) -> bytes:
        """Up to ``wanted`` more bytes; ``b""`` only at the end of the input."""
        if self._decompressor is None:
            return self.handle.read(wanted)
        while not self._finished:
            decompressor = self._decompressor
            source = decompressor.unconsumed_tail or self._input or self.handle.read(self._input_size(wanted))
            self._input = b""
            if not source:
                # The file ended inside the compressed stream.
                self.stream_truncated = True
                self._finished = True
                return decompressor.flush()[:wanted]
            try:
                output = decompressor.decompress(source, wanted)
            except zlib.error as error:
                raise TFRecordError(f"{self.path}: corrupted {self.compression} stream ({error})") from None
            self._consumed += len(source) - len(decompressor.unconsumed_tail)
            self._produced += len(output)
            if decompressor.eof:
                self._end_of_stream(decompressor.unused_data)
            if output:
                return output
        return b""

    def _input_size(self, wanted: int) -> int:
        """Compressed bytes to read for ``wanted`` output bytes: a little more than the ratio so far
        predicts, so a 10 MB payload inflates in one call and little input is left over to copy."""
        estimate = int(wanted * self._consumed / self._produced * 1.02) + 4096
        return max(_READ_CHUNK, min(estimate, _MAX_INPUT_CHUNK))

    def _end_of_stream(self, unused: bytes) -> None:
        """After a stream ends: gzip may hold further members; anything after a zlib stream is garbage."""
        rest = unused or self.handle.read(_READ_CHUNK)
        if not rest:
            self._finished = True
            return
        if self.compression != "gzip":
            raise TFRecordError(f"{self.path}: {len(rest)}+ bytes of trailing data after the end of the zlib stream")
        self._decompressor = self._new_decompressor()
        self._input = rest

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or fewer only at the end of the input."""
        parts = []
        missing = size
        while missing > 0:
            chunk = self._produce(missing)
            if not chunk:
                break
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def skip(self, size: int) -> int:
        """Discard up to ``size`` bytes; return how many were skipped."""
        if self._decompressor is None:
            here = self.handle.tell()
            end = self.handle.seek(0, os.SEEK_END)
            skipped = min(size, end - here)
            self.handle.seek(here + skipped)
            return skipped
        skipped = 0
        while skipped < size:
            chunk = self._produce(min(size - skipped, 1 << 22))
            if not chunk:
                break
            skipped += len(chunk)
        return skipped


class TFRecordReader:
    """Iterate over the payloads of one TFRecord file.

    Args:
        path: the file.
        compression: ``"auto"`` (default: detected from the first bytes), ``"zlib"``, ``"gzip"`` or ``"none"``.
        check_crc: verify the masked CRC32C of every length and payload (about 1 ms per 10 MB record).
    Yields ``bytes`` payloads; :meth:`skip_record` advances past one without returning (nor checking) it.
    """

    def __init__(self, path: str | os.PathLike, compression: str | None = "auto", check_crc: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TFRecord file not found: {self.path}")
        self.compression = _normalise_compression(compression, self.path)
        self.check_crc = check_crc
        self.record_number = 0  # index of the next record
        self._handle = open(self.path, "rb")
        self._source = _ByteSource(self._handle, self.compression, self.path)

    def __enter__(self) -> "TFRecordReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            payload = self.read_record()
            if payload is None:
                return
            yield payload

    def _error(self, message: str) -> TFRecordError:
        return TFRecordError(f"{self.path}: record {self.record_number}: {message}")

    def _read_length(self) -> int | None:
        header = self._source.read(_HEADER_BYTES)
        if not header:
            if self._source.stream_truncated:
                raise self._error(f"truncated file: the {self.compression} stream ends before its end marker")
            return None
        if len(header) < _HEADER_BYTES:
            raise self._error(f"truncated file: {len(header)} of the {_HEADER_BYTES} header bytes")
        length = int.from_bytes(header[:8], "little")
        # The length CRC is always checked: without it a misread length would drive a huge read.
        if int.from_bytes(header[8:], "little") != masked_crc32c(header[:8]):
            raise self._error(
                f"bad length CRC (corrupted data, or compression {self.compression!r} is wrong for this file)"
            )
        if length > _MAX_RECORD_BYTES:
            raise self._error(f"implausible record length {length:,} bytes")
        return length

    def read_record(self) -> bytes | None:
        """The next payload, or ``None`` at a clean end of file."""
        length = self._read_length()
        if length is None:
            return None
        payload = self._source.read(length)
        footer = self._source.read(_FOOTER_BYTES) if len(payload) == length else b""
        if len(footer) < _FOOTER_BYTES:
            got = len(payload) + len(footer)
            raise self._error(f"truncated file: {got:,} of {length + _FOOTER_BYTES:,} payload+CRC bytes")
        if self.check_crc and int.from_bytes(footer, "little") != masked_crc32c(payload):
            raise self._error("bad payload CRC (corrupted data)")
        self.record_number += 1
        return payload

    def skip_record(self) -> bool:
        """Advance past one record (length CRC checked, payload not); ``False`` at a clean end of file."""
        length = self._read_length()
        if length is None:
            return False
        skipped = self._source.skip(length + _FOOTER_BYTES)
        if skipped < length + _FOOTER_BYTES:
            raise self._error(f"truncated file: {skipped:,} of {length + _FOOTER_BYTES:,} payload+CRC bytes")
        self.record_number += 1
        return True


def read_records(
    path: str | os.PathLike, compression: str | None = "auto", check_crc: bool = True
) -> Iterator[bytes]:
    """Payloads of one TFRecord file, streamed (see :class:`TFRecordReader`)."""
    with TFRecordReader(path, compression, check_crc) as reader:
        yield from reader


def count_records(path: str | os.PathLike, compression: str | None = "auto") -> int:
    """Number of records in a file (decompresses it; checks the framing but not the payload CRCs)."""
    with TFRecordReader(path, compression, check_crc=False) as reader:
        while reader.skip_record():
            pass
        return reader.record_number


def frame_record(payload: bytes) -> bytes:
    """One record in TFRecord framing (uncompressed)."""
    length = len(payload).to_bytes(8, "little")
    return b"".join(
        (length, masked_crc32c(length).to_bytes(4, "little"), payload, masked_crc32c(payload).to_bytes(4, "little"))
    )


class TFRecordWriter:
    """Write records to ``path`` atomically (a temporary file renamed on :meth:`close`).

    Args:
        path: the output file.
        compression: ``"zlib"`` (Basenji2's and this writer's default), ``"gzip"`` or ``"none"``.
        level: zlib compression level (TensorFlow's default is zlib's default, 6).
    Use as a context manager; an exception inside the block leaves no file behind.
    """

    def __init__(self, path: str | os.PathLike, compression: str | None = "zlib", level: int = 6):
        self.path = Path(path)
        name = "none" if compression in (None, "", "none") else str(compression).lower()
        if name not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")
        self.compression = name
        self.count = 0
        self._atomic = atomic_path(self.path)
        self._temporary = self._atomic.__enter__()
        self._handle = open(self._temporary, "wb")
        self._compressor = None
        if name != "none":
            wbits = zlib.MAX_WBITS | (16 if name == "gzip" else 0)
            self._compressor = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def write(self, payload: bytes) -> None:
        framed = frame_record(payload)
        self._handle.write(self._compressor.compress(framed) if self._compressor else framed)
        self.count += 1

    def close(self) -> None:
        if self._handle.closed:
            return
        if self._compressor is not None:
            self._handle.write(self._compressor.flush())
        self._handle.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Close and delete the temporary file; the target path is left untouched."""
        if not self._handle.closed:
            self._handle.close()
            error = RuntimeError("TFRecordWriter aborted")
            self._atomic.__exit__(RuntimeError, error, None)  # removes the temporary file

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_records(
    path: str | os.PathLike, payloads: Iterable[bytes], compression: str | None = "zlib", level: int = 6
) -> int:
    """Write ``payloads`` to one TFRecord file atomically; return the number of records."""
    with TFRecordWriter(path, compression, level) as writer:
        for payload in payloads:
            writer.write(payload)
        return writer.count
