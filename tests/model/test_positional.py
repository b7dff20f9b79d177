"""Relative positional features against an independent float64 computation (DeepMind's formulas)."""

import math

import numpy as np
import pytest
import torch

from senformer.model.positional import relative_distances, relative_position_features


def reference_features(distances, num_features, length):
    """A direct, loop-based transcription of DeepMind's positional_features_all in float64."""
    count = num_features // 6
    half_lives = [2.0 ** (3 + (math.log2(length) - 3) * k / (count - 1)) for k in range(count)]
    widths = [2.0 ** (k + 1) - 1 for k in range(count)]
    stddev = length / (2 * count)
    means = [length / count + (length - length / count) * k / (count - 1) for k in range(count)]

    def gamma_density(x, k):
        concentration = (means[k] / stddev) ** 2
        rate = means[k] / stddev**2
        log_norm = math.lgamma(concentration) - concentration * math.log(rate)
        log_unnorm = (concentration - 1) * math.log(x) - rate * x if x > 0 else -math.inf
        return math.exp(log_unnorm - log_norm) + 1e-8

    # Normalise each gamma feature by its maximum over all 2T - 1 distances (over positions).
    maxima = [max(gamma_density(abs(d), k) for d in range(-(length - 1), length)) for k in range(count)]
    rows = []
    for d in distances:
        a = abs(d)
        exp = [math.exp(-math.log(2) * a / h) for h in half_lives]
        mask = [1.0 if w > a else 0.0 for w in widths]
        gam = [gamma_density(a, k) / maxima[k] for k in range(count)]
        symmetric = exp + mask + gam
        sign = (d > 0) - (d < 0)
        rows.append(symmetric + [sign * v for v in symmetric])
    return np.array(rows)


@pytest.mark.parametrize("length", [1536, 1024, 100])
def test_features_match_the_reference_at_chosen_distances(length):
    distances = [-(length - 1), -700 % length - length + 1, -48, -3, -1, 0, 1, 2, 24, 47, 48, 95, length // 2, length - 1]
    features = relative_position_features(torch.tensor(distances), 192, length, dtype=torch.float64)
    np.testing.assert_allclose(features.numpy(), reference_features(distances, 192, length), rtol=1e-10, atol=1e-12)


def test_gamma_is_normalised_over_positions_not_features():
    length = 1536
    features = relative_position_features(relative_distances(length), 192, length, dtype=torch.float64)
    gamma = features[:, 64:96]
    torch.testing.assert_close(gamma.amax(dim=0), torch.ones(32, dtype=torch.float64))
    # Normalising over the feature axis instead (enformer-pytorch) gives a different table.
    assert (gamma.amax(dim=1) < 0.999).any()


def test_basis_length_fixes_the_constants_for_longer_inputs():
    short = relative_position_features(relative_distances(1536), 192, 1536, dtype=torch.float64)
    long = relative_position_features(relative_distances(3072), 192, 1536, dtype=torch.float64)
    # Distances shared by both lengths get identical features when the basis is fixed at 1536.
    torch.testing.assert_close(long[3071 - 1535 : 3071 + 1536], short, rtol=0, atol=0)
    default_long = relative_position_features(relative_distances(3072), 192, 3072, dtype=torch.float64)
    assert not torch.allclose(default_long[3071 - 1535 : 3071 + 1536], short)


def test_layout_and_sign():
    features = relative_position_features(torch.tensor([-5, 0, 5]), 12, 64, dtype=torch.float64)
    torch.testing.assert_close(features[0, :6], features[2, :6])
    torch.testing.assert_close(features[0, 6:], -features[2, 6:])
    assert (features[1, 6:] == 0).all()
    with pytest.raises(ValueError, match="divisible by 6"):
        relative_position_features(torch.tensor([0]), 10, 64)
