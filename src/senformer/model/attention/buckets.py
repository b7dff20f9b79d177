"""The relative-position term of step-function features, from a per-query table of its few values.

Borzoi's position features (:func:`~senformer.model.positional.borzoi_central_mask_features`) are central
masks: feature ``k`` of distance ``d`` is 1 while ``|d|`` is below width ``w_k = (L + 1)**(k / 16) - 1``
(``k = 1 .. 16``), and the second 16 features are the same times ``sign(d)``. The vector ``f(d)`` therefore
depends only on ``sign(d)`` and on how many widths exceed ``|d|``: a *bucket* of distances. With the
published basis ``L = 4,096`` the widths are 0.68, 1.83, 3.76, 7.00, 12.5, 21.6, 37.1, 63.0, 106.6, 180.0,
303.5, 511.1, 860.2, 1,447.5, 2,435.1 and 4,096.0, so ``|d|`` falls in one of the runs

    0 | 1 | 2-3 | 4-7 | 8-12 | 13-21 | 22-37 | 38-63 | 64-106 | 107-180 | 181-303 | 304-511 | 512-860
      | 861-1,447 | 1,448-2,435 | 2,436-4,095 | 4,096 and beyond

and ``d`` in one of ``1 + 2 * 16 = 33`` buckets (distance 0, then each run for either sign). Beyond the
widest width both signs give the zero vector, so the distinct vectors number 31 when ``T <= 4,096``
positions (no distance reaches 4,096) and 32 for longer inputs; baskerville's own basis (``L = T``) keeps
every ``|d| < T`` inside the widest width, 31 at any length. Each bucket is found from the features
themselves (their distinct rows), so the grouping is exact for any step-function family.

The content-dependent term ``(q_i + r_r_bias) . W_r f(j - i)`` then takes one value per bucket: per query
and head a table of ``buckets`` values ``(q_i + r_r_bias) . r_k[b]``, read at ``bucket[j - i]``. This is
exact (the same products, one per bucket instead of one per distance), linear in memory, works on every
device and in backward (a gather, whose backward is a scatter-add into the table), and never forms
``(T, 2T - 1)``. Which layers use it is decided from the config (:func:`is_step_family`): Enformer's
features are not step functions and keep the per-distance term.
"""

from __future__ import annotations

import torch

from ..positional import relative_distances, relative_position_features

# Position feature families that are step functions of |d| (a few distinct vectors over all distances).
STEP_FUNCTIONS = frozenset({"central_mask", "borzoi_central_mask"})


def is_step_family(config) -> bool:
    """True when ``config``'s relative position features are step functions of the distance only."""
    return bool(config.relative_positions) and set(config.positional_functions) <= STEP_FUNCTIONS


def bucket_count(config, positions: int) -> int:
    """The number of distinct feature vectors at ``positions`` for a step-function ``config``."""
    basis_length = config.positional_basis_length or positions
    return position_buckets(positions, config.relative_features, basis_length, config.positional_functions)[0].shape[0]


def position_buckets(
    length: int, num_features: int, basis_length: int, functions: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct feature vectors over the ``2T - 1`` distances and each distance's bucket.

    Returns:
        features: (buckets, num_features) float64, one row per distinct vector.
        index: (2T - 1,) int64, entry ``m`` is the bucket of distance ``m - (T - 1)``.
    """
    features = relative_position_features(
        relative_distances(length), num_features, basis_length, dtype=torch.float64, functions=functions
    )
    distinct, index = torch.unique(features, dim=0, return_inverse=True)
    return distinct, index


def bucket_table(q_position: torch.Tensor, bucket_keys: torch.Tensor) -> torch.Tensor:
    """(batch, heads, n, key) queries plus ``r_r_bias``, (heads, buckets, key) projected bucket features ->
    (batch, heads, n, buckets): each query's term for every bucket."""
    return torch.matmul(q_position, bucket_keys.transpose(-1, -2))


def range_bucket_index(buckets: torch.Tensor, start: int, rows: int, length: int) -> torch.Tensor:
    """(rows, T) bucket of distance ``j - i`` for queries ``i = start .. start + rows - 1`` and keys ``j``."""
    device = buckets.device
    distance = torch.arange(length, device=device)[None, :] - torch.arange(start, start + rows, device=device)[:, None]
    return buckets[distance + (length - 1)]


def gather_term(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Read ``table`` (..., n, buckets) at ``index`` (n, keys) or (..., n, keys), broadcast over the leading
    axes of ``table`` -> (..., n, keys)."""
    leading = table.shape[:-1]
    index = index.expand(*leading, index.shape[-1])
    return torch.gather(table, -1, index)


def bucketed_range_term(
    q_position: torch.Tensor, bucket_keys: torch.Tensor, buckets: torch.Tensor, start: int, length: int
) -> torch.Tensor:
    """The relative term of queries ``start .. start + c - 1`` against all ``T`` keys.

    Args:
        q_position: (batch, heads, c, key) queries plus ``r_r_bias``.
        bucket_keys: (heads, buckets, key) projected bucket features.
        buckets: (2T - 1,) bucket of each distance (:func:`position_buckets`).
    Returns:
        (batch, heads, c, T), equal to the per-distance term.
    """
    rows = q_position.shape[-2]
    return gather_term(bucket_table(q_position, bucket_keys), range_bucket_index(buckets, start, rows, length))
