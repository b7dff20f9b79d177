"""Validation during training: pooled Pearson per track over this rank's share, summed across ranks.

The statistic is the official ``PearsonR(reduce_axis=(0, 1))``: per track, float64 sums over every
(example, bin) pair, correlation from the sums, then means over all tracks and over each assay group.
Sums add across ranks, so a sharded evaluation equals the single-process one.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .distributed import all_reduce_sum_


class PooledPearsonSums:
    """Running ``n, sum x, sum y, sum x^2, sum y^2, sum xy`` per track in float64."""

    def __init__(self, num_tracks: int):
        self.sums = torch.zeros(6, num_tracks, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """prediction, target: (batch, bins, tracks)."""
        x = prediction.detach().to("cpu", torch.float64).reshape(-1, prediction.shape[-1])
        y = target.detach().to("cpu", torch.float64).reshape(-1, target.shape[-1])
        self.sums += torch.stack([
            torch.full((x.shape[1],), float(x.shape[0]), dtype=torch.float64),
            x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0),
        ])

    def all_reduce(self) -> "PooledPearsonSums":
        all_reduce_sum_(self.sums)
        return self

    def compute(self) -> np.ndarray:
        """(tracks,) correlations; NaN for a constant track."""
        n, sx, sy, sxx, syy, sxy = self.sums.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sxy - sx * sy / n
            var_x = sxx - sx * sx / n
            var_y = syy - sy * sy / n
            r = cov / np.sqrt(var_x * var_y)
        r[~(var_x > 0) | ~(var_y > 0)] = np.nan
        return r


def summarise(correlations: np.ndarray, groups: Sequence[str] | None = None, prefix: str = "pearson") -> dict[str, float]:
    """``{prefix: mean over tracks, prefix/<group>: mean within each group}`` ignoring NaN tracks."""
    summary = {prefix: _nanmean(correlations)}
    if groups is not None:
        labels = np.asarray(groups)
        for group in dict.fromkeys(groups):
            summary[f"{prefix}/{group}"] = _nanmean(correlations[labels == group])
    return summary


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def track_groups(directory: str | None, num_tracks: int) -> list[str] | None:
    """Assay group per track from a dataset's ``targets.txt`` (the data room's reader), or None when the
    directory has no usable table."""
    if directory is None:
        return None
    from pathlib import Path

    targets = Path(directory) / "targets.txt"
    if not targets.is_file():
        return None
    from ..data.tracks import read_targets

    table = read_targets(targets)
    if len(table) != num_tracks:
        return None
    return [str(group) for group in table["assay_group"]]


def group_columns(metrics: Mapping[str, float]) -> list[str]:
    return sorted(key for key in metrics if "/" in key)
