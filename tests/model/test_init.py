"""The truncated-normal initialisation draws DeepMind's law: N(0, std^2) cut at +-2 std, seeded."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_config

from senformer import Enformer
from senformer.model.init import TRUNCATION_STDS, truncated_normal_


def _standard_normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _truncated_cdf(x: torch.Tensor, std: float) -> torch.Tensor:
    """CDF of N(0, std^2) conditioned on |value| < 2 std, at float64 points ``x``."""
    low, high = _standard_normal_cdf(-TRUNCATION_STDS), _standard_normal_cdf(TRUNCATION_STDS)
    cdf = 0.5 * (1.0 + torch.erf(x / (std * math.sqrt(2.0))))
    return ((cdf - low) / (high - low)).clamp(0.0, 1.0)


def _truncated_std(std: float) -> float:
    """Standard deviation of the two-sided truncated normal (Johnson, Kotz & Balakrishnan, eq. 13.135)."""
    c = TRUNCATION_STDS
    density = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
    mass = 2.0 * _standard_normal_cdf(c) - 1.0
    return std * math.sqrt(1.0 - 2.0 * c * density / mass)


@pytest.mark.parametrize("shape", [(512, 1024), (64, 32, 5)])
def test_draws_follow_the_truncated_normal(shape):
    std = 0.03
    torch.manual_seed(0)
    values = truncated_normal_(torch.empty(shape), std).double().flatten()
    count = values.numel()
    assert values.abs().max() <= TRUNCATION_STDS * std * (1 + 1e-6)
    # The clamp only absorbs rounding: no mass piles up on the bounds.
    assert (values.abs() >= TRUNCATION_STDS * std * (1 - 1e-6)).sum() <= 2
    standard_error = _truncated_std(std) / math.sqrt(count)
    assert abs(values.mean().item()) < 5 * standard_error
    assert values.std().item() == pytest.approx(_truncated_std(std), rel=0.01)
    # Kolmogorov-Smirnov distance to the exact CDF; 1.63 / sqrt(n) is the 1% critical value.
    ordered = values.sort().values
    empirical = torch.arange(1, count + 1, dtype=torch.float64) / count
    distance = (empirical - _truncated_cdf(ordered, std)).abs().max().item()
    assert distance < 1.63 / math.sqrt(count)


def test_non_contiguous_tensor_is_filled_in_place():
    base = torch.zeros(300, 200)
    view = base.t()
    torch.manual_seed(1)
    assert truncated_normal_(view, 0.1) is view
    assert (base != 0).float().mean() > 0.99
    assert base.abs().max() <= 0.2 * (1 + 1e-6)


def test_seeding_is_deterministic():
    torch.manual_seed(3)
    first = truncated_normal_(torch.empty(1000), 1.0)
    torch.manual_seed(3)
    again = truncated_normal_(torch.empty(1000), 1.0)
    other = truncated_normal_(torch.empty(1000), 1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_model_initialisation_is_seeded_and_scaled_by_fan_in():
    config = tiny_config(output_heads={"human": 2000})
    torch.manual_seed(0)
    model = Enformer(config)
    torch.manual_seed(0)
    again = Enformer(config)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    head = model.heads["human"].weight  # (tracks, 2 dim): Sonnet's default TruncatedNormal(1 / sqrt(fan_in))
    std = 1.0 / math.sqrt(head.shape[1])
    assert head.abs().max() <= TRUNCATION_STDS * std * (1 + 1e-6)
    assert head.std().item() == pytest.approx(_truncated_std(std), rel=0.03)
    query = model.transformer[0].attention.to_q.weight  # VarianceScaling(2.0), fan_in = dim
    query_std = math.sqrt(2.0 / query.shape[1])
    assert query.abs().max() <= TRUNCATION_STDS * query_std * (1 + 1e-6)
    assert query.abs().max() > TRUNCATION_STDS * query_std * 0.9
