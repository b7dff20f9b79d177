"""TFRecord framing, compression and error reporting, against files written by TensorFlow itself."""

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest

from senformer.data import tfrecord
from senformer.data.example import parse_example
from senformer.data.tfrecord import (
    TFRecordError,
    TFRecordReader,
    TFRecordWriter,
    count_records,
    detect_compression,
    frame_record,
    masked_crc32c,
    read_records,
    write_records,
)
from senformer.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def test_masked_crc32c_matches_the_crc32c_check_value_and_tensorflow_mask():
    # CRC-32C check value of "123456789" (RFC 3720) is 0xE3069283; TF masks it with rotate-right-15 + 0xa282ead8.
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


@pytest.mark.parametrize("compression", ["zlib", "gzip", "none"])
def test_reads_tensorflow_written_records_exactly(compression):
    expected = np.load(FIXTURES / "expected.npz")
    path = FIXTURES / f"records_{compression}.tfr"
    assert detect_compression(path) == compression
    payloads = list(read_records(path))
    assert len(payloads) == 3
    for number, payload in enumerate(payloads):
        features = parse_example(payload)
        sequence = np.frombuffer(features["sequence"][0], dtype=bool).reshape(64, 4)
        target = np.frombuffer(features["target"][0], dtype=np.float16).reshape(2, 3)
        np.testing.assert_array_equal(sequence, expected["records_sequence"][number])
        np.testing.assert_array_equal(target, expected["records_target"][number])
    # The same file read with the compression named explicitly gives the same bytes.
    assert list(read_records(path, compression)) == payloads


def test_tensorflow_zlib_file_is_byte_identical_to_ours_after_decompression():
    tf_payloads = list(read_records(FIXTURES / "records_zlib.tfr"))
    raw = zlib.decompress((FIXTURES / "records_zlib.tfr").read_bytes())
    assert raw == b"".join(frame_record(p) for p in tf_payloads)
    assert raw == (FIXTURES / "records_none.tfr").read_bytes()


@pytest.mark.parametrize("compression", ["zlib", "gzip", "none"])
def test_writer_round_trip_across_chunk_boundaries(tmp_path, monkeypatch, compression):
    rng = np.random.default_rng(0)
    payloads = [b"", b"x", rng.bytes(5000), bytes(20000), rng.bytes(3)]
    path = tmp_path / f"data.{compression}"
    assert write_records(path, payloads, compression) == len(payloads)
    assert detect_compression(path) == compression
    assert list(read_records(path)) == payloads
    # A tiny chunk size forces every header, payload and CRC to straddle reads and decompressor outputs.
    monkeypatch.setattr(tfrecord, "_READ_CHUNK", 7)
    monkeypatch.setattr(tfrecord, "_MAX_INPUT_CHUNK", 7)
    assert list(read_records(path, compression)) == payloads
    assert count_records(path) == len(payloads)


def test_our_files_decompress_with_the_standard_library(tmp_path):
    payloads = [b"alpha", b"beta"]
    write_records(tmp_path / "a.tfr", payloads, "zlib")
    write_records(tmp_path / "b.tfr", payloads, "gzip")
    framed = b"".join(frame_record(p) for p in payloads)
    assert zlib.decompress((tmp_path / "a.tfr").read_bytes()) == framed
    assert gzip.decompress((tmp_path / "b.tfr").read_bytes()) == framed


def test_concatenated_gzip_members_are_read(tmp_path):
    path = tmp_path / "members.tfr"
    path.write_bytes(gzip.compress(frame_record(b"one")) + gzip.compress(frame_record(b"two")))
    assert list(read_records(path, "gzip")) == [b"one", b"two"]


def test_skip_record_and_record_numbers(tmp_path):
    path = tmp_path / "r.tfr"
    write_records(path, [b"a" * 10, b"b" * 20, b"c" * 30])
    with TFRecordReader(path) as reader:
        assert reader.skip_record()
        assert reader.record_number == 1
        assert reader.read_record() == b"b" * 20
        assert reader.skip_record()
        assert not reader.skip_record()
        assert reader.record_number == 3


def _uncompressed(tmp_path, payloads):
    path = tmp_path / "plain.tfr"
    write_records(path, payloads, "none")
    return path


def test_bad_payload_crc_names_file_and_record(tmp_path):
    path = _uncompressed(tmp_path, [b"first", b"second", b"third"])
    data = bytearray(path.read_bytes())
    second_payload = len(frame_record(b"first")) + 12
    data[second_payload] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match=r"plain\.tfr: record 1: bad payload CRC"):
        list(read_records(path, "none"))
    # With the checks off the corrupted payload comes through.
    assert len(list(read_records(path, "none", check_crc=False))) == 3


def test_bad_length_crc_names_the_record(tmp_path):
    path = _uncompressed(tmp_path, [b"first", b"second"])
    data = bytearray(path.read_bytes())
    data[len(frame_record(b"first"))] ^= 0x01  # the second record's length
    path.write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match=r"record 1: bad length CRC"):
        list(read_records(path, "none", check_crc=False))


@pytest.mark.parametrize("cut", [3, 12, 15, 20])
def test_truncated_uncompressed_file(tmp_path, cut):
    path = _uncompressed(tmp_path, [b"first", b"second-record"])
    data = path.read_bytes()
    path.write_bytes(data[: len(frame_record(b"first")) + cut])
    with pytest.raises(TFRecordError, match=r"record 1: truncated file"):
        list(read_records(path, "none"))


@pytest.mark.parametrize("compression", ["zlib", "gzip"])
def test_truncated_compressed_file(tmp_path, compression):
    path = tmp_path / "c.tfr"
    rng = np.random.default_rng(1)
    write_records(path, [rng.bytes(4000) for _ in range(3)], compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(TFRecordError, match=r"c\.tfr: record 2: truncated"):
        list(read_records(path, compression))


def test_zlib_stream_cut_at_a_record_boundary_is_still_an_error(tmp_path):
    # Stream complete up to a record boundary but without the zlib end marker: must not pass as a short file.
    compressor = zlib.compressobj()
    body = compressor.compress(frame_record(b"one")) + compressor.flush(zlib.Z_SYNC_FLUSH)
    path = tmp_path / "cut.tfr"
    path.write_bytes(body)
    with pytest.raises(TFRecordError, match=r"record 1: truncated file: the zlib stream ends before its end marker"):
        list(read_records(path, "zlib"))


def test_trailing_garbage_after_zlib_stream(tmp_path):
    path = tmp_path / "g.tfr"
    write_records(path, [b"one"], "zlib")
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(TFRecordError, match="trailing data"):
        list(read_records(path, "zlib"))


def test_wrong_compression_is_reported(tmp_path):
    path = tmp_path / "z.tfr"
    write_records(path, [b"payload"], "zlib")
    with pytest.raises(TFRecordError, match=r"record 0: bad length CRC .*compression 'none'"):
        list(read_records(path, "none"))
    with pytest.raises(TFRecordError, match="corrupted gzip stream"):
        list(read_records(path, "gzip"))


def test_not_a_tfrecord_file(tmp_path):
    path = tmp_path / "text.tfr"
    path.write_text("hello, this is not a record file")
    with pytest.raises(TFRecordError, match="not a TFRecord file"):
        detect_compression(path)
    assert isinstance(TFRecordError("x"), UserError)


def test_missing_file_and_bad_compression_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tfr"):
        TFRecordReader(tmp_path / "nope.tfr")
    write_records(tmp_path / "a.tfr", [b"a"])
    with pytest.raises(ValueError, match="lz4"):
        TFRecordReader(tmp_path / "a.tfr", "lz4")


def test_empty_file_is_an_empty_record_file(tmp_path):
    path = tmp_path / "empty.tfr"
    path.write_bytes(b"")
    assert list(read_records(path)) == []
    write_records(tmp_path / "empty.zlib", [], "zlib")
    assert list(read_records(tmp_path / "empty.zlib", "zlib")) == []


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.tfr"
    with pytest.raises(RuntimeError):
        with TFRecordWriter(path) as writer:
            writer.write(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
