"""Intervals with seed variance: Student's t quantile, the paired interval over seeds, the two-level
bootstrap, and the compact per-seed files they recompute from."""

import math

import numpy as np
import pytest

from senformer.study.statistics import (contrast, paired_interval, read_per_seed, record_sums, seed_values,
                                        t_quantile, two_level_bootstrap, write_per_seed)


def test_t_quantiles_match_the_tables():
    # Student's table: t(0.975) for 1, 2, 4, 10 degrees of freedom; t(0.95, 4).
    for df, expected in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281)):
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-4)
    assert t_quantile(0.95, 4) == pytest.approx(2.1318, abs=2e-4)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_paired_interval_over_seeds():
    first, second = [0.50, 0.55, 0.52, 0.58, 0.51], [0.45, 0.47, 0.50, 0.50, 0.49]
    result = paired_interval(first, second)
    differences = np.subtract(first, second)
    half = t_quantile(0.975, 4) * differences.std(ddof=1) / math.sqrt(5)
    assert result["difference"] == pytest.approx(differences.mean())
    assert (result["low"], result["high"]) == pytest.approx((differences.mean() - half, differences.mean() + half))
    assert paired_interval([0.5], [0.4])["low"] is None


def _per_seed(seeds: int, records: int = 48, noise_gap: float = 0.8, seed_noise: float = 0.0):
    """Two models on ``seeds`` seeds: "good" = target + noise, "worse" = target + more noise; the seed adds
    ``seed_noise`` x a seed-specific noise level to "worse" (seed variance the records cannot show)."""
    generator = np.random.default_rng(1)
    target = generator.normal(size=(records, 8, 3))
    per_seed = {}
    for s in range(seeds):
        good = target + 0.5 * generator.normal(size=target.shape)
        level = noise_gap + seed_noise * generator.normal()
        worse = target + max(level, 0.1) * generator.normal(size=target.shape)
        shift_y = target.mean((0, 1))
        sums = {name: record_sums(p, target, p.mean((0, 1)), shift_y) for name, p in (("good", good), ("worse", worse))}
        per_seed[s] = {"sums": sums, "bins": 8, "raw": {"good": good, "worse": worse, "target": target}}
    return per_seed


def test_per_seed_files_round_trip_and_give_the_pooled_pearson(tmp_path):
    per_seed = _per_seed(3)
    paths = [write_per_seed(tmp_path / f"seed-{s}.npz", data["sums"], 8, s) for s, data in per_seed.items()]
    back = read_per_seed(paths)
    for s, data in per_seed.items():
        raw = data["raw"]
        direct = np.mean([np.corrcoef(raw["worse"][..., t].ravel(), raw["target"][..., t].ravel())[0, 1] for t in range(3)])
        assert seed_values(back, "worse", None)[s] == pytest.approx(direct, abs=1e-5)  # float32 sums, shifted
        assert seed_values(back, "worse", [1])[s] == pytest.approx(
            np.corrcoef(raw["worse"][..., 1].ravel(), raw["target"][..., 1].ravel())[0, 1], abs=1e-5)


def test_the_two_level_bootstrap_widens_with_seed_variance():
    """The same record noise, once with and once without seed-to-seed variance: the record-only bootstrap of
    a single seed cannot see it, the two-level interval and the paired one grow with it."""
    calm, varied = _per_seed(5), _per_seed(5, seed_noise=0.5)
    narrow = two_level_bootstrap(calm, "worse", "good", None, resamples=300)
    wide = two_level_bootstrap(varied, "worse", "good", None, resamples=300)
    assert narrow["low"] <= narrow["difference"] <= narrow["high"] < 0
    assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"])
    both = contrast(varied, "worse", "good", None, resamples=300)
    assert both["paired"]["difference"] == pytest.approx(both["bootstrap"]["difference"])
    assert both["seeds"] == [0, 1, 2, 3, 4] and len(both["per_seed"]) == 5
    assert two_level_bootstrap(calm, "worse", "good", None, 50, seed=3) == two_level_bootstrap(calm, "worse", "good", None, 50, seed=3)
