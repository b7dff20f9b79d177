"""Intervals that include seed variance (issue 23 item 3), from compact per-seed files.

Two intervals of a contrast ``first - second`` (pooled Pearson, mean over a set of tracks), both reported:

- :func:`paired_interval`: a paired t-interval over seeds of the per-seed differences (each seed's two rows
  share weights, data order and test set, so the seed is the unit);
- :func:`two_level_bootstrap`: seeds resampled with replacement, then the test records within each drawn seed
  (a percentile interval); it carries both the seed and the record variance.

Every seed's evaluation keeps its models' per-record sums (:func:`write_per_seed`, float32, shifted by each
track's mean so the sums of squares lose no precision): any interval recomputes from them
(:func:`read_per_seed`, :func:`contrast`), as ``benchmarks/study/recompute.py`` does for a recorded study.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io import write_npz


# Student's t quantile (no scipy in the project's dependencies) ----------------------------------------------
def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom (bisection on its CDF,
    integrated by Simpson's rule; accurate to about 1e-7)."""
    if df < 1 or not 0.5 <= probability < 1:
        raise ValueError(f"t_quantile needs df >= 1 and 0.5 <= probability < 1, not {df}, {probability}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t: float) -> float:
        grid = np.linspace(0.0, t, 4001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
        step = grid[1] - grid[0]
        integral = step / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
        return 0.5 + integral

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def paired_interval(first: Sequence[float], second: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean over seeds of ``first[s] - second[s]`` with a paired t-interval (None bounds with one seed)."""
    differences = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    if differences.ndim != 1 or differences.size == 0 or not np.isfinite(differences).all():
        raise ValueError(f"paired_interval needs one finite value per seed in each row, got {differences}")
    mean = float(differences.mean())
    if differences.size < 2:
        return {"method": "paired t over seeds", "seeds": 1, "difference": mean, "low": None, "high": None}
    half = t_quantile(0.5 + level / 2, differences.size - 1) * differences.std(ddof=1) / math.sqrt(differences.size)
    return {"method": "paired t over seeds", "seeds": int(differences.size), "difference": mean,
            "low": mean - half, "high": mean + half}


# Per-record sums: the compact per-seed form ------------------------------------------------------------
def record_sums(prediction: np.ndarray, target: np.ndarray, shift_p: np.ndarray, shift_y: np.ndarray) -> np.ndarray:
    """(records, tracks, 5) float64 per-record sums over the bins of the shifted values: p, y, p², y², p·y.

    Args:
        prediction, target: (records, bins, tracks). shift_p, shift_y: (tracks,) subtracted first (Pearson
            does not change under a shift; the sums of squares keep their precision in float32).
    """
    p = prediction.astype(np.float64) - shift_p
    y = target.astype(np.float64) - shift_y
    return np.stack([p.sum(1), y.sum(1), (p * p).sum(1), (y * y).sum(1), (p * y).sum(1)], axis=-1)


def pooled_from_record_sums(weights: np.ndarray, sums: np.ndarray, bins: int) -> np.ndarray:
    """(draws, tracks) pooled Pearson per track for each draw of the records.

    Args:
        weights: (draws, records) how often each record is drawn. sums: (records, tracks, 5) (:func:`record_sums`).
    """
    from ..metrics import pearson_from_sums

    total = np.einsum("dr,rtk->dtk", weights, sums.astype(np.float64))
    count = weights.sum(1, keepdims=True) * bins
    return pearson_from_sums(count, total[..., 0], total[..., 1], total[..., 2], total[..., 3], total[..., 4])


def track_mean(pooled: np.ndarray) -> np.ndarray:
    """(..., tracks) per-track Pearson -> (...,) their mean over the finite ones (a constant track has none)."""
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(pooled)
        return np.where(finite, pooled, 0).sum(-1) / np.maximum(finite.sum(-1), 1)


def write_per_seed(path: str | os.PathLike, sums: Mapping[str, np.ndarray], bins: int, seed: int) -> Path:
    """One seed's compact file: every model's (records, tracks, 5) sums as float32, under its name."""
    names = list(sums)
    return write_npz(path, names=np.array(names), sums=np.stack([sums[name] for name in names]).astype(np.float32),
                     bins=np.array(bins), seed=np.array(seed))


def read_per_seed(paths: Sequence[str | os.PathLike]) -> dict[int, dict[str, Any]]:
    """Seed -> {"sums": {model: (records, tracks, 5)}, "bins": int} from :func:`write_per_seed`'s files."""
    per_seed = {}
    for path in paths:
        with np.load(path) as arrays:
            per_seed[int(arrays["seed"])] = {"bins": int(arrays["bins"]), "sums": {
                str(name): arrays["sums"][index].astype(np.float64) for index, name in enumerate(arrays["names"])}}
    return per_seed


def seed_values(per_seed: Mapping[int, Mapping[str, Any]], model: str, tracks: Sequence[int] | None) -> dict[int, float]:
    """Seed -> the model's pooled Pearson (mean over ``tracks``; all when None) on the whole test set."""
    values = {}
    for seed, data in per_seed.items():
        if model in data["sums"]:
            pooled = pooled_from_record_sums(np.ones((1, data["sums"][model].shape[0])), data["sums"][model], data["bins"])
            values[seed] = float(track_mean(pooled[:, _chosen(tracks)])[0])
    return values


def _chosen(tracks: Sequence[int] | None):
    return slice(None) if tracks is None else list(tracks)


def two_level_bootstrap(per_seed: Mapping[int, Mapping[str, Any]], first: str, second: str,
                        tracks: Sequence[int] | None, resamples: int, level: float = 0.95,
                        seed: int = 0) -> dict[str, Any]:
    """Mean over seeds of ``first - second`` with a two-level percentile interval: each resample draws the
    seeds with replacement and, within every drawn seed, the test records with replacement (one record draw
    per seed and resample, the same draw for both rows: they share the test set)."""
    seeds = sorted(s for s, data in per_seed.items() if first in data["sums"] and second in data["sums"])
    if not seeds:
        raise ValueError(f"no seed has both {first!r} and {second!r}")
    generator = np.random.default_rng(seed)
    chosen = _chosen(tracks)
    point, draws = [], []
    for s in seeds:
        data = per_seed[s]
        records = data["sums"][first].shape[0]
        weights = np.vstack([np.ones(records), generator.multinomial(records, np.full(records, 1.0 / records),
                                                                     size=resamples)])
        a = track_mean(pooled_from_record_sums(weights, data["sums"][first], data["bins"])[:, chosen])
        b = track_mean(pooled_from_record_sums(weights, data["sums"][second], data["bins"])[:, chosen])
        point.append(a[0] - b[0])
        draws.append(a[1:] - b[1:])
    draws = np.asarray(draws)  # (seeds, resamples)
    picked = generator.integers(0, len(seeds), size=(resamples, len(seeds)))
    averages = draws[picked, np.arange(resamples)[:, None]].mean(1)
    low, high = np.percentile(averages, [50 - 50 * level, 50 + 50 * level])
    return {"method": "two-level bootstrap (seeds, then records)", "seeds": len(seeds), "resamples": resamples,
            "difference": float(np.mean(point)), "low": float(low), "high": float(high)}


def contrast(per_seed: Mapping[int, Mapping[str, Any]], first: str, second: str, tracks: Sequence[int] | None,
             resamples: int, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Both intervals of ``first - second`` and the per-seed values behind them."""
    a, b = seed_values(per_seed, first, tracks), seed_values(per_seed, second, tracks)
    seeds = sorted(set(a) & set(b))
    return {"first": first, "second": second, "seeds": seeds,
            "per_seed": {str(s): a[s] - b[s] for s in seeds},
            "paired": paired_interval([a[s] for s in seeds], [b[s] for s in seeds], level),
            "bootstrap": two_level_bootstrap(per_seed, first, second, tracks, resamples, level, seed)}
