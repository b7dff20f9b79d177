"""A TensorFlow-free reader for TensorFlow checkpoints (the TensorBundle format), so converting the
official weights needs no TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index`` plus ``PREFIX.data-00000-of-0000N``:

- ``.index`` is a LevelDB-style SSTable (TensorFlow ``core/lib/io/table``): data blocks of prefix-compressed
  entries with restart points, an index block pointing at them, and a 48-byte footer holding two block
  handles and the magic number ``0xdb4775248b80fb57``. Every block is followed by a compression byte and the
  masked CRC32C of the block.
- Its values are serialized protos: the empty key holds ``BundleHeaderProto`` (shard count, endianness),
  every other key a ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked CRC32C of the bytes)
  (``core/protobuf/tensor_bundle.proto``).
- ``.data-*`` shards hold the raw little-endian tensor bytes; string tensors are stored as varint lengths,
  a checksum of the lengths, then the bytes.

Every block and tensor checksum is verified, so a truncated or damaged file ends in a clear error.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..data.tfrecord import mask_crc, masked_crc32c
from ..errors import UserError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C

# TensorFlow DataType enum values (core/framework/types.proto) -> numpy little-endian dtypes.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DT_STRING = 7
DT_BFLOAT16 = 14


# Protos ---------------------------------------------------------------------------------------------
def _build_messages() -> dict[str, type]:
    """BundleHeaderProto, BundleEntryProto and their parts, declared with the same field numbers as
    TensorFlow's ``tensor_bundle.proto``, ``tensor_shape.proto`` and ``tensor_slice.proto``."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="senformer_tensor_bundle.proto", package="senformer.tfbundle", syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]]):
        proto = file.message_type.add(name=name)
        for field_name, number, field_type, label, type_name in fields:
            field = proto.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = f".senformer.tfbundle.{type_name}"
        return proto

    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    dim = message("Dim", [("size", 1, F.TYPE_INT64, optional, None), ("name", 2, F.TYPE_STRING, optional, None)])
    del dim
    message("TensorShapeProto", [("dim", 2, F.TYPE_MESSAGE, repeated, "Dim"), ("unknown_rank", 3, F.TYPE_BOOL, optional, None)])
    message("Extent", [("start", 1, F.TYPE_INT64, optional, None), ("length", 2, F.TYPE_INT64, optional, None)])
    message("TensorSliceProto", [("extent", 1, F.TYPE_MESSAGE, repeated, "Extent")])
    message("VersionDef", [("producer", 1, F.TYPE_INT32, optional, None), ("min_consumer", 2, F.TYPE_INT32, optional, None),
                           ("bad_consumers", 3, F.TYPE_INT32, repeated, None)])
    # Enums are read as plain int32 (same wire encoding): endianness 0 = little, dtype = DataType number.
    message("BundleHeaderProto", [("num_shards", 1, F.TYPE_INT32, optional, None), ("endianness", 2, F.TYPE_INT32, optional, None),
                                  ("version", 3, F.TYPE_MESSAGE, optional, "VersionDef")])
    message("BundleEntryProto", [
        ("dtype", 1, F.TYPE_INT32, optional, None), ("shape", 2, F.TYPE_MESSAGE, optional, "TensorShapeProto"),
        ("shard_id", 3, F.TYPE_INT32, optional, None), ("offset", 4, F.TYPE_INT64, optional, None),
        ("size", 5, F.TYPE_INT64, optional, None), ("crc32c", 6, F.TYPE_FIXED32, optional, None),
        ("slices", 7, F.TYPE_MESSAGE, repeated, "TensorSliceProto"),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"senformer.tfbundle.{name}"))
        for name in ("BundleHeaderProto", "BundleEntryProto")
    }


_MESSAGES = _build_messages()


# The SSTable ----------------------------------------------------------------------------------------
def _varint(data: bytes, position: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``position``; returns (value, next position)."""
    result = shift = 0
    while True:
        if position >= len(data):
            raise UserError("the TensorFlow checkpoint is truncated or damaged: a varint runs past the end of its block")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


class _Table:
    """Read-only iteration over a LevelDB-format table held in memory."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name
        if len(data) < FOOTER_SIZE:
            raise UserError(f"{name} is truncated: {len(data)} bytes is shorter than the {FOOTER_SIZE}-byte table footer")
        footer = data[-FOOTER_SIZE:]
        (magic,) = struct.unpack("<Q", footer[-8:])
        if magic != TABLE_MAGIC:
            raise UserError(f"{name} is not a TensorFlow checkpoint index or is truncated (bad table magic {magic:#x})")
        _metaindex_offset, position = _varint(footer, 0)
        _metaindex_size, position = _varint(footer, position)
        self.index_offset, position = _varint(footer, position)
        self.index_size, _ = _varint(footer, position)

    def _block(self, offset: int, size: int) -> bytes:
        end = offset + size + BLOCK_TRAILER_SIZE
        if end > len(self.data) - FOOTER_SIZE:
            raise UserError(f"{self.name} is truncated or damaged: a block at byte {offset} runs past the end")
        contents = self.data[offset : offset + size]
        compression = self.data[offset + size]
        (stored_crc,) = struct.unpack("<I", self.data[offset + size + 1 : end])
        if masked_crc32c(contents + bytes([compression])) != stored_crc:
            raise UserError(f"{self.name} is damaged: checksum mismatch in the block at byte {offset}")
        if compression != 0:
            raise UserError(f"{self.name}: compressed table blocks (type {compression}) are not supported")
        return contents

    @staticmethod
    def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
        (num_restarts,) = struct.unpack("<I", block[-4:])
        limit = len(block) - 4 - 4 * num_restarts
        position, key = 0, b""
        while position < limit:
            shared, position = _varint(block, position)
            non_shared, position = _varint(block, position)
            value_length, position = _varint(block, position)
            key = key[:shared] + block[position : position + non_shared]
            position += non_shared
            yield key, block[position : position + value_length]
            position += value_length

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        index = self._block(self.index_offset, self.index_size)
        for _separator, handle in self._entries(index):
            offset, position = _varint(handle, 0)
            size, _ = _varint(handle, position)
            yield from self._entries(self._block(offset, size))


# The bundle -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives: dtype (TensorFlow enum), shape, shard file, byte range and checksum."""

    key: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix of ``PREFIX``, ``PREFIX.index`` or ``PREFIX.data-*``."""
    text = str(path)
    if text.endswith(".index"):
        text = text[: -len(".index")]
    elif ".data-" in Path(text).name:
        text = text[: text.rindex(".data-")]
    return Path(text)


class TensorBundle:
    """The tensors of a TensorFlow checkpoint, read without TensorFlow.

    >>> bundle = TensorBundle("enformer-fine-tuned-human-1")
    >>> bundle.shapes()["module/_heads/human/_layers/0/w/.ATTRIBUTES/VARIABLE_VALUE"]
    (3072, 5313)
    """

    def __init__(self, path: str | os.PathLike):
        self.prefix = checkpoint_prefix(path)
        index_path = Path(f"{self.prefix}.index")
        if not index_path.is_file():
            raise FileNotFoundError(f"no TensorFlow checkpoint index {index_path}")
        table = _Table(index_path.read_bytes(), str(index_path))
        self.num_shards = 1
        self.entries: dict[str, BundleEntry] = {}
        for raw_key, value in table.items():
            if raw_key == b"":
                header = _MESSAGES["BundleHeaderProto"].FromString(value)
                if header.endianness != 0:
                    raise UserError(f"{index_path}: big-endian checkpoints are not supported")
                self.num_shards = max(1, header.num_shards)
                continue
            proto = _MESSAGES["BundleEntryProto"].FromString(value)
            key = raw_key.decode("utf-8")
            self.entries[key] = BundleEntry(
                key=key, dtype=proto.dtype, shape=tuple(int(d.size) for d in proto.shape.dim),
                shard_id=proto.shard_id, offset=proto.offset, size=proto.size, crc32c=proto.crc32c,
                sliced=len(proto.slices) > 0,
            )
        self._handles: dict[int, object] = {}

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def keys(self) -> list[str]:
        return list(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: entry.shape for key, entry in self.entries.items()}

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def _read(self, entry: BundleEntry, verify: bool = True) -> bytes:
        path = self.shard_path(entry.shard_id)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint data shard {path} is missing (needed for {entry.key})")
        with open(path, "rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.size)
        if len(data) != entry.size:
            raise UserError(
                f"{path} is truncated: {entry.key} needs bytes {entry.offset}..{entry.offset + entry.size}, "
                f"the file has {os.path.getsize(path)}"
            )
        if verify and masked_crc32c(data) != entry.crc32c:
            raise UserError(f"{path} is damaged: checksum mismatch for {entry.key}")
        return data

    def get(self, key: str) -> np.ndarray | list[bytes]:
        """The tensor under ``key`` as a numpy array (string tensors: a list of bytes), checksum verified."""
        try:
            entry = self.entries[key]
        except KeyError:
            raise KeyError(f"{key!r} is not in the checkpoint {self.prefix}") from None
        if entry.sliced:
            raise UserError(f"{key} is stored as slices of a partitioned variable, which this reader does not support")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.dtype == DT_STRING:
            return _decode_strings(self._read(entry, verify=False), count, entry)
        data = self._read(entry)
        if entry.dtype == DT_BFLOAT16:
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(entry.shape)
        try:
            dtype = DTYPES[entry.dtype]
        except KeyError:
            raise UserError(f"{key}: TensorFlow dtype {entry.dtype} is not supported") from None
        if count * dtype.itemsize != len(data):
            raise UserError(f"{key}: {len(data)} bytes do not hold {entry.shape} values of {dtype}")
        return np.frombuffer(data, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))


def _decode_strings(data: bytes, count: int, entry: BundleEntry) -> list[bytes]:
    """``[varint64 length] * count``, the masked CRC32C of the lengths, then the string bytes.

    Both checksums see each length as a fixed-width little-endian integer (4 bytes; 8 from 4 GiB), not as
    the varint written to the file; the entry checksum then covers the length checksum and the bytes.
    """
    lengths, position = [], 0
    for _ in range(count):
        length, position = _varint(data, position)
        lengths.append(length)
    fixed = b"".join(struct.pack("<I" if n < 2**32 else "<Q", n) for n in lengths)
    stored_lengths_crc = data[position : position + 4]
    if struct.pack("<I", masked_crc32c(fixed)) != stored_lengths_crc:
        raise UserError(f"{entry.key}: checksum mismatch in the string lengths (damaged checkpoint data)")
    position += 4
    strings = []
    for length in lengths:
        strings.append(data[position : position + length])
        position += length
    if position != len(data):
        raise UserError(f"{entry.key}: string tensor of {len(data)} bytes does not match its lengths")
    crc = google_crc32c.extend(google_crc32c.extend(google_crc32c.value(fixed), stored_lengths_crc), b"".join(strings))
    if mask_crc(crc) != entry.crc32c:
        raise UserError(f"{entry.key}: checksum mismatch (damaged checkpoint data)")
    return strings
