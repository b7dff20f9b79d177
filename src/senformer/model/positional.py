"""Enformer's relative positional features (DeepMind ``attention_module.py``).

For distances ``d`` the feature vector is ``[exp, mask, gamma, sign(d)*exp, sign(d)*mask, sign(d)*gamma]``,
each family with ``features // 6`` basis functions of ``|d|``. The basis constants depend on a length ``L``:
by default the number of positions ``T`` (what the official code does), or ``positional_basis_length`` to
keep the features of a model trained at one length when it runs on another.

Borzoi (calico's baskerville) keeps only a central mask whose widths grow with ``L``
(:func:`borzoi_central_mask_features`), with its sign copy: 32 features of 16 widths. A config names its
families in ``positional_functions`` (keys of :data:`POSITIONAL_FUNCTIONS`).
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


def borzoi_central_mask_features(distance: torch.Tensor, count: int, basis_length: int) -> torch.Tensor:
    """1 where width_k = (L + 1)**(k / count) - 1 (k = 1 .. count) exceeds |d|, else 0: baskerville's
    ``positional_features_central_mask``. The widths are float32 as baskerville and borzoi-pytorch compute
    them, so a width within float64 rounding of an integer falls on the same side. distance: (n,) -> (n, count).
    """
    rate = torch.tensor(math.exp(math.log(basis_length + 1) / count), dtype=torch.float32)
    widths = torch.pow(rate, torch.arange(1, count + 1, dtype=torch.float32)) - 1
    return (widths.to(torch.float64) > distance.abs().to(torch.float64)[:, None]).to(torch.float64)


# name -> f(distance (n,), count, basis_length) -> (n, count) float64; DeepMind looks its functions up by name.
POSITIONAL_FUNCTIONS = {
    "exponential": exponential_features,
    "central_mask": lambda distance, count, basis_length: central_mask_features(distance, count),
    "gamma": gamma_features,
    "borzoi_central_mask": borzoi_central_mask_features,
}
ENFORMER_FUNCTIONS = ("exponential", "central_mask", "gamma")


def relative_position_features(
    distance: torch.Tensor,
    num_features: int,
    basis_length: int,
    dtype: torch.dtype = torch.float32,
    functions: tuple[str, ...] = ENFORMER_FUNCTIONS,
) -> torch.Tensor:
    """Feature vectors for integer distances (key minus query).

    Args:
        distance: (n,) integer distances.
        num_features: total features, a multiple of ``2 * len(functions)``.
        basis_length: the length ``L`` that sets the basis constants.
        functions: the families, names in :data:`POSITIONAL_FUNCTIONS` (Enformer's three by default).
    Returns:
        (n, num_features) tensor of ``dtype``: each family's ``num_features / (2 * len(functions))`` basis
        functions of ``|d|``, then the same multiplied by ``sign(d)``; computed in float64.
    """
    unknown = [name for name in functions if name not in POSITIONAL_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown positional functions {unknown}; choose from {', '.join(POSITIONAL_FUNCTIONS)}")
    parts = 2 * len(functions)
    if num_features % parts:
        raise ValueError(f"num_features={num_features} is not divisible by {parts}")
    count = num_features // parts
    symmetric = torch.cat([POSITIONAL_FUNCTIONS[name](distance, count, basis_length) for name in functions], dim=-1)
    sign = torch.sign(distance.to(torch.float64))[:, None]
    return torch.cat([symmetric, sign * symmetric], dim=-1).to(dtype)


def relative_distances(length: int, device: torch.device | None = None) -> torch.Tensor:
    """All distances -(T-1) .. (T-1) in order: row ``m`` of the features is distance ``m - (T - 1)``."""
    return torch.arange(-(length - 1), length, device=device)
