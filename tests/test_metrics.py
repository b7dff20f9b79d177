"""Streaming pooled Pearson and per-example Pearson against numpy corrcoef in float64."""

import numpy as np
import pytest
import torch

from senformer.metrics import (
    StreamingPearson,
    nan_summary,
    pearson_from_sums,
    per_example_pearson,
    per_example_summary,
)


def _data(seed=0, examples=37, bins=16, tracks=6):
    rng = np.random.default_rng(seed)
    target = rng.gamma(1.0, 2.0, (examples, bins, tracks))
    pred = 0.6 * target + rng.normal(0, 1.0, target.shape) + 3.0
    target[:, :, 2] = 5.0  # a constant target track
    pred[:, :, 4] = -1.5  # a constant prediction
    return pred, target


def test_streaming_pooled_pearson_equals_corrcoef_over_many_batches():
    pred, target = _data()
    metric = StreamingPearson(pred.shape[-1])
    for start in range(0, len(pred), 5):  # 8 uneven batches
        metric.update(pred[start : start + 5], torch.from_numpy(target[start : start + 5]))
    result = metric.compute()
    assert result.dtype == np.float64 and result.shape == (6,)
    for track in range(6):
        if track in (2, 4):
            assert np.isnan(result[track])
            continue
        expected = np.corrcoef(pred[..., track].ravel(), target[..., track].ravel())[0, 1]
        assert result[track] == pytest.approx(expected, abs=1e-12)
    assert metric.count == pred.shape[0] * pred.shape[1]


def test_float64_sums_survive_large_offsets():
    # Counts around 1e4 with unit noise: float32 sums would lose the variance entirely.
    rng = np.random.default_rng(3)
    target = 1e4 + rng.normal(0, 1, (200, 64, 2))
    pred = target + rng.normal(0, 1, target.shape)
    metric = StreamingPearson(2)
    for batch in np.array_split(np.arange(200), 13):
        metric.update(pred[batch], target[batch])
    expected = [np.corrcoef(pred[..., t].ravel(), target[..., t].ravel())[0, 1] for t in range(2)]
    np.testing.assert_allclose(metric.compute(), expected, atol=1e-6)


def test_merge_and_state_equal_one_pass():
    pred, target = _data(seed=1)
    whole = StreamingPearson(6)
    whole.update(pred, target)
    first, second = StreamingPearson(6), StreamingPearson(6)
    first.update(pred[:10], target[:10])
    second.update(pred[10:], target[10:])
    merged = StreamingPearson.from_state(first.state + second.state)
    np.testing.assert_allclose(first.merge(second).compute(), whole.compute(), equal_nan=True, atol=1e-12)
    np.testing.assert_allclose(merged.compute(), whole.compute(), equal_nan=True, atol=1e-12)


def test_per_example_pearson_equals_corrcoef_per_example_and_track():
    pred, target = _data(seed=2, examples=4)
    target[1, :, 0] = 7.0  # constant along the bins of one example only
    result = per_example_pearson(torch.from_numpy(pred), target)
    assert result.shape == (4, 6)
    for example in range(4):
        for track in range(6):
            if track in (2, 4) or (example, track) == (1, 0):
                assert np.isnan(result[example, track])
            else:
                expected = np.corrcoef(pred[example, :, track], target[example, :, track])[0, 1]
                assert result[example, track] == pytest.approx(expected, abs=1e-12)


def test_summaries_skip_and_count_nan():
    values = np.array([0.5, np.nan, 0.7])
    assert nan_summary(values) == {"mean": pytest.approx(0.6), "count": 2, "nan": 1}
    per_example = np.array([[0.2, 0.4, np.nan], [np.nan, np.nan, np.nan], [1.0, 0.0, 0.5]])
    summary = per_example_summary(per_example)
    # Mean over tracks per example (0.3, -, 0.5), then over the examples that have any finite track.
    assert summary == {"mean": pytest.approx(0.4), "examples": 3, "constant_pairs": 4, "empty_examples": 1}


def test_pearson_from_sums_handles_constant_and_tiny_inputs():
    assert np.isnan(pearson_from_sums(np.array([1.0]), np.array([2.0]), np.array([3.0]), np.array([4.0]),
                                      np.array([9.0]), np.array([6.0]))[0])


def test_shape_errors_name_the_argument():
    metric = StreamingPearson(3)
    with pytest.raises(ValueError, match=r"expected 3 tracks"):
        metric.update(np.zeros((1, 2, 4)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"pred \(1, 2, 3\) and target \(1, 2, 4\)"):
        per_example_pearson(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"pred must have shape \(batch, bins, tracks\)"):
        metric.update(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_tracks"):
        StreamingPearson(0)
