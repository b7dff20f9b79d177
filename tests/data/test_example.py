"""tf.train.Example parsing with protobuf alone."""

from pathlib import Path

import numpy as np
import pytest

from senformer.data.example import make_example, parse_example
from senformer.data.tfrecord import read_records
from senformer.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def test_parses_every_feature_kind_written_by_tensorflow():
    (payload,) = read_records(FIXTURES / "features_zlib.tfr")
    features = parse_example(payload)
    np.testing.assert_array_equal(features["ints"], np.array([1, -2, 3_000_000_000], dtype=np.int64))
    assert features["ints"].dtype == np.int64
    np.testing.assert_array_equal(features["floats"], np.array([0.5, -1.25], dtype=np.float32))
    assert features["words"] == [b"enformer", b"basenji"]


def test_round_trip_matches_tensorflow_bytes():
    # Re-serialising what TensorFlow wrote gives an Example that parses to the same values.
    (payload,) = read_records(FIXTURES / "features_zlib.tfr")
    features = parse_example(payload)
    again = parse_example(make_example(features))
    assert again.keys() == features.keys()
    for name in features:
        np.testing.assert_array_equal(np.asarray(again[name], dtype=object), np.asarray(features[name], dtype=object))


def test_make_example_types():
    payload = make_example({"raw": b"\x00\x01", "n": np.arange(3, dtype=np.int32), "x": [0.25, 2.0], "many": [b"a", b"b"]})
    features = parse_example(payload)
    assert features["raw"] == [b"\x00\x01"]
    np.testing.assert_array_equal(features["n"], [0, 1, 2])
    np.testing.assert_array_equal(features["x"], np.array([0.25, 2.0], np.float32))
    assert features["many"] == [b"a", b"b"]
    with pytest.raises(ValueError, match="feature 'bad'"):
        make_example({"bad": np.array(["text"])})


def test_garbage_is_a_user_error():
    with pytest.raises(UserError, match="not a tf.train.Example"):
        parse_example(b"\xff\xff\xff\xff garbage")
