"""Enformer's relative positional features (DeepMind ``attention_module.py``).

For distances ``d`` the feature vector is ``[exp, mask, gamma, sign(d)*exp, sign(d)*mask, sign(d)*gamma]``,
each family with ``features // 6`` basis functions of ``|d|``. The basis constants depend on a length ``L``:
by default the number of positions ``T`` (what the official code does), or ``positional_basis_length`` to
keep the features of a model trained at one length when it runs on another.
"""

from __future__ import annotations

import math

import torch


def exponential_features(distance: torch.Tensor, count: int, basis_length: int) -> torch.Tensor:
    """exp(-ln2 |d| / half_life_k), half lives 2**linspace(3, log2 L, count). distance: (n,) -> (n, count)."""
    max_range = math.log(basis_length) / math.log(2.0)
    half_life = 2.0 ** torch.linspace(3.0, max_range, count, dtype=torch.float64)
    return torch.exp(-math.log(2.0) / half_life * distance.abs().to(torch.float64)[:, None])


def central_mask_features(distance: torch.Tensor, count: int) -> torch.Tensor:
    """1 where width_k = 2**(k+1) - 1 exceeds |d|, else 0. distance: (n,) -> (n, count)."""
    widths = 2.0 ** torch.arange(1, count + 1, dtype=torch.float64) - 1
    return (widths > distance.abs().to(torch.float64)[:, None]).to(torch.float64)


def _gamma_log_pdf(x: torch.Tensor, concentration: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    log_unnormalised = torch.xlogy(concentration - 1.0, x) - rate * x
    log_normalisation = torch.lgamma(concentration) - concentration * torch.log(rate)
    return log_unnormalised - log_normalisation


def gamma_features(distance: torch.Tensor, count: int, basis_length: int) -> torch.Tensor:
    """Gamma densities with means linspace(L/count, L, count), std L/(2 count), each divided by its maximum
    over the distances ``|d| < L`` (per feature, over positions: DeepMind's axis; enformer-pytorch
    normalises over features instead). distance: (n,) -> (n, count).
    """
    stddev = basis_length / (2 * count)
    mean = torch.linspace(basis_length / count, basis_length, count, dtype=torch.float64)
    concentration = (mean / stddev) ** 2
    rate = mean / stddev**2

    def density(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(_gamma_log_pdf(x.to(torch.float64)[:, None], concentration, rate)) + 1e-8

    basis_distances = torch.arange(basis_length, dtype=torch.float64)
    maximum = density(basis_distances).amax(dim=0)
    return density(distance.abs()) / maximum


def relative_position_features(
    distance: torch.Tensor, num_features: int, basis_length: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Feature vectors for integer distances (key minus query).

    Args:
        distance: (n,) integer distances.
        num_features: total features, a multiple of 6.
        basis_length: the length ``L`` that sets the basis constants.
    Returns:
        (n, num_features) tensor of ``dtype``; computed in float64.
    """
    if num_features % 6:
        raise ValueError(f"num_features={num_features} is not divisible by 6")
    count = num_features // 6
    symmetric = torch.cat(
        [
            exponential_features(distance, count, basis_length),
            central_mask_features(distance, count),
            gamma_features(distance, count, basis_length),
        ],
        dim=-1,
    )
    sign = torch.sign(distance.to(torch.float64))[:, None]
    return torch.cat([symmetric, sign * symmetric], dim=-1).to(dtype)


def relative_distances(length: int, device: torch.device | None = None) -> torch.Tensor:
    """All distances -(T-1) .. (T-1) in order: row ``m`` of the features is distance ``m - (T - 1)``."""
    return torch.arange(-(length - 1), length, device=device)
