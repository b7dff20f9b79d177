"""The TensorFlow-free checkpoint reader on the checkpoint written by DeepMind's own code."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from senformer.errors import UserError
from senformer.weights.tensorbundle import TensorBundle, checkpoint_prefix, masked_crc32c


@pytest.fixture
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "official_tf_tiny"


def expected_shapes(path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        shapes[key] = tuple(int(n) for n in shape.strip("[]").split(",") if n.strip())
    return shapes


def test_reads_every_key_and_shape_and_verifies_every_checksum(fixture_dir):
    bundle = TensorBundle(fixture_dir / "ckpt")
    assert bundle.num_shards == 1
    assert bundle.shapes() == expected_shapes(fixture_dir / "keys.txt")
    for key in bundle.keys():
        value = bundle.get(key)  # raises on any checksum mismatch
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH":
            assert value.shape == bundle.entries[key].shape
    graph = bundle.get("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert len(graph) == 1 and b"_trunk" in graph[0]
    counter = bundle.get("module/_trunk/_layers/0/_layers/1/_module/_layers/0/moving_mean/_counter/.ATTRIBUTES/VARIABLE_VALUE")
    assert counter.dtype == np.int64 and counter.shape == ()
    weight = bundle.get("module/_trunk/_layers/0/_layers/0/w/.ATTRIBUTES/VARIABLE_VALUE")
    assert weight.dtype == np.float32 and weight.shape == (15, 4, 192) and np.isfinite(weight).all() and weight.std() > 0


def test_prefix_index_and_data_paths_name_the_same_checkpoint(fixture_dir):
    prefix = fixture_dir / "ckpt"
    assert checkpoint_prefix(f"{prefix}.index") == prefix
    assert checkpoint_prefix(f"{prefix}.data-00000-of-00001") == prefix
    assert TensorBundle(f"{prefix}.index").keys() == TensorBundle(prefix).keys()


def test_masked_crc_matches_tensorflow_constants():
    # crc32c("") = 0 -> mask = 0xa282ead8; crc32c("123456789") = 0xe3069283 (the CRC-32C check value).
    assert masked_crc32c(b"") == 0xA282EAD8
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.fixture
def copied(fixture_dir, tmp_path):
    for name in ("ckpt.index", "ckpt.data-00000-of-00001"):
        shutil.copy(fixture_dir / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    return tmp_path / "ckpt"


def test_truncated_index_is_reported(copied):
    index = copied.with_name("ckpt.index")
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(UserError, match="not a TensorFlow checkpoint index or is truncated"):
        TensorBundle(copied)


def test_damaged_index_block_is_reported(copied):
    index = copied.with_name("ckpt.index")
    data = bytearray(index.read_bytes())
    data[100] ^= 0xFF
    index.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum mismatch"):
        TensorBundle(copied)


def test_truncated_and_damaged_data_are_reported(copied):
    data_path = copied.with_name("ckpt.data-00000-of-00001")
    bundle = TensorBundle(copied)
    last = max(bundle.entries.values(), key=lambda entry: entry.offset)
    original = data_path.read_bytes()
    data_path.write_bytes(original[: last.offset + last.size // 2])
    with pytest.raises(UserError, match="truncated"):
        bundle.get(last.key)
    damaged = bytearray(original)
    damaged[last.offset] ^= 0x01
    data_path.write_bytes(bytes(damaged))
    with pytest.raises(UserError, match="checksum mismatch"):
        bundle.get(last.key)
    data_path.unlink()
    with pytest.raises(FileNotFoundError, match="data shard"):
        bundle.get(last.key)


def test_missing_index_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint index"):
        TensorBundle(tmp_path / "nothing")


def test_agrees_with_tensorflows_own_reader(fixture_dir):
    tf = pytest.importorskip("tensorflow")
    reader = tf.train.load_checkpoint(str(fixture_dir / "ckpt"))
    bundle = TensorBundle(fixture_dir / "ckpt")
    assert set(reader.get_variable_to_shape_map()) == set(bundle.keys())
    for key in bundle.keys():
        if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
            continue
        np.testing.assert_array_equal(bundle.get(key), reader.get_tensor(key))
