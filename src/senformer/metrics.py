"""Evaluation metrics as pure functions: the official pooled Pearson per track and the per-example Pearson.

Official metric (DeepMind training colab, ``PearsonR(reduce_axis=(0, 1))``): for every track keep running
sums over all examples and bins -- n, sum y, sum p, sum y^2, sum p^2, sum y p -- and at the end

    r = cov / (sqrt(var_y) sqrt(var_p)),  cov = sum yp - n mean_y mean_p,  var_y = sum y^2 - n mean_y^2.

This is exactly the Pearson correlation of all (example, bin) pairs of a track. The sums here are float64
(float32 sums lose several digits over millions of bins). Tracks with zero variance give NaN, counted
separately by callers, never silently 0.

The S-Enformer report compares models per example instead: Pearson along the bins of each example and
track (:func:`per_example_pearson`), averaged over tracks, then over examples.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(array: ArrayLike, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float64).numpy()
    result = np.asarray(array, dtype=np.float64)
    if result.ndim != 3:
        raise ValueError(f"{name} must have shape (batch, bins, tracks); got {result.shape}")
    return result


def _check_pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_float64(pred, "pred"), _as_float64(target, "target")
    if p.shape != y.shape:
        raise ValueError(f"pred {p.shape} and target {y.shape} must have the same shape (batch, bins, tracks)")
    return p, y


def pearson_from_sums(n, sum_p, sum_y, sum_pp, sum_yy, sum_py) -> np.ndarray:
    """Pearson r from running sums (arrays of the same shape); NaN where either variance is zero."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, mean_y = sum_p / n, sum_y / n
        covariance = sum_py - n * mean_p * mean_y
        var_p = sum_pp - n * mean_p**2
        var_y = sum_yy - n * mean_y**2
        # Rounding can leave a tiny positive variance for a constant track; treat as constant.
        tolerance_p = 1e-12 * np.maximum(sum_pp, 1e-300)
        tolerance_y = 1e-12 * np.maximum(sum_yy, 1e-300)
        r = covariance / (np.sqrt(var_p) * np.sqrt(var_y))
    constant = (var_p <= tolerance_p) | (var_y <= tolerance_y) | (n < 2)
    return np.where(constant, np.nan, np.clip(r, -1.0, 1.0))


class StreamingPearson:
    """Per-track Pearson pooled over every example and bin, accumulated batch by batch (float64 sums).

    ``update(pred, target)`` takes arrays or tensors ``(batch, bins, tracks)``; ``compute()`` returns the
    correlation per track ``(tracks,)`` float64, NaN for tracks whose prediction or target is constant.
    ``merge(other)`` adds another accumulator's sums (e.g. from other ranks), and ``state``/``from_state``
    expose the sums as one ``(6, tracks)`` array for an all-reduce.
    """

    def __init__(self, num_tracks: int):
        if num_tracks <= 0:
            raise ValueError(f"num_tracks must be positive, got {num_tracks}")
        self.num_tracks = num_tracks
        self.sums = np.zeros((6, num_tracks), dtype=np.float64)  # n, p, y, pp, yy, py

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        p, y = _check_pair(pred, target)
        if p.shape[-1] != self.num_tracks:
            raise ValueError(f"expected {self.num_tracks} tracks, got arrays of shape {p.shape}")
        p = p.reshape(-1, self.num_tracks)
        y = y.reshape(-1, self.num_tracks)
        self.sums[0] += p.shape[0]
        self.sums[1] += p.sum(axis=0)
        self.sums[2] += y.sum(axis=0)
        self.sums[3] += np.einsum("ij,ij->j", p, p)
        self.sums[4] += np.einsum("ij,ij->j", y, y)
        self.sums[5] += np.einsum("ij,ij->j", p, y)

    def merge(self, other: "StreamingPearson") -> "StreamingPearson":
        if other.num_tracks != self.num_tracks:
            raise ValueError(f"cannot merge {other.num_tracks} tracks into {self.num_tracks}")
        self.sums += other.sums
        return self

    @property
    def count(self) -> int:
        """Number of (example, bin) pairs seen per track."""
        return int(self.sums[0, 0])

    @property
    def state(self) -> np.ndarray:
        return self.sums.copy()

    @classmethod
    def from_state(cls, state: np.ndarray) -> "StreamingPearson":
        state = np.asarray(state, dtype=np.float64)
        if state.ndim != 2 or state.shape[0] != 6:
            raise ValueError(f"state must have shape (6, tracks); got {state.shape}")
        metric = cls(state.shape[1])
        metric.sums[:] = state
        return metric

    def compute(self) -> np.ndarray:
        n, sum_p, sum_y, sum_pp, sum_yy, sum_py = self.sums
        return pearson_from_sums(n, sum_p, sum_y, sum_pp, sum_yy, sum_py)


def per_example_pearson(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Pearson along the bins for every example and track.

    Args:
        pred, target: ``(batch, bins, tracks)`` arrays or tensors.
    Returns:
        ``(batch, tracks)`` float64; NaN where the prediction or the target is constant along the bins.
    """
    p, y = _check_pair(pred, target)
    bins = p.shape[1]
    return pearson_from_sums(
        np.full(p.shape[::2], bins, dtype=np.float64),
        p.sum(axis=1), y.sum(axis=1),
        np.einsum("bij,bij->bj", p, p), np.einsum("bij,bij->bj", y, y), np.einsum("bij,bij->bj", p, y),
    )


def nan_summary(values: np.ndarray) -> dict[str, float | int]:
    """Mean over the finite entries of ``values`` and how many were NaN (constant tracks)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    return {
        "mean": float(values[finite].mean()) if finite.any() else float("nan"),
        "count": int(finite.sum()),
        "nan": int((~finite).sum()),
    }


def per_example_summary(per_example: np.ndarray) -> dict[str, float | int]:
    """The per-example metric of the report: mean over tracks (skipping NaN) per example, then over examples.

    Returns ``mean`` and how many (example, track) pairs were constant (``constant_pairs``) and examples with
    no finite track at all (``empty_examples``, left out of the mean).
    """
    per_example = np.asarray(per_example, dtype=np.float64)
    if per_example.ndim != 2:
        raise ValueError(f"per_example must have shape (examples, tracks); got {per_example.shape}")
    finite = np.isfinite(per_example)
    counts = finite.sum(axis=1)
    with np.errstate(invalid="ignore"):
        example_means = np.where(finite, per_example, 0.0).sum(axis=1) / counts
    kept = counts > 0
    return {
        "mean": float(example_means[kept].mean()) if kept.any() else float("nan"),
        "examples": int(per_example.shape[0]),
        "constant_pairs": int((~finite).sum()),
        "empty_examples": int((~kept).sum()),
    }
