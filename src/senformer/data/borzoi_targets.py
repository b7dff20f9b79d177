"""Borzoi's track tables and the squashed scale they define (calico/borzoi ``examples/targets_*.txt``).

The shipped tables (``resources/borzoi_targets_{human,mouse}.txt.gz``; Apache-2.0, calico/borzoi at commit
5c93582) are calico's 7,611 human and 2,608 mouse rows in head order without the ``file`` column (paths on
calico's machines). Per track: ``clip`` and ``clip_soft`` (coverage above ``clip_soft`` was square-rooted),
``scale``, ``sum_stat`` (``sum``, ``mean``; ``*_sqrt`` tracks were raised to the power 3/4 first) and
``strand_pair`` (the row of the other strand of a stranded assay; itself when unstranded).

:func:`undo_squashed_scale` inverts the published models' transform exactly as baskerville's
``dataset.untransform_preds1`` does, so predictions come out in the experiment's units;
:func:`apply_squashed_scale` is that transform, for training targets from per-bp coverage.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache

import numpy as np
import pandas as pd

from ..errors import UserError
from .tracks import BORZOI_RESOURCES as SHIPPED
from .tracks import _resource, read_targets, strand_pairs

BORZOI_TARGET_COLUMNS = ("index", "identifier", "clip", "clip_soft", "scale", "sum_stat", "strand_pair", "description")
_NUMERIC = ("clip", "clip_soft", "scale")


def read_borzoi_targets(path: str | os.PathLike) -> pd.DataFrame:
    """A Borzoi ``targets_*.txt`` (tab separated, calico's unnamed index column first): the columns of
    :data:`BORZOI_TARGET_COLUMNS` (plus ``file`` and ``assay_group`` where present), one row per output
    track in head order. A missing column or a non-numeric ``clip``/``clip_soft``/``scale`` is a UserError."""
    table = read_targets(path)
    missing = [column for column in BORZOI_TARGET_COLUMNS if column not in table.columns]
    if missing:
        raise UserError(f"{path}: a Borzoi targets table needs column(s) {', '.join(missing)}")
    table = check_scale_columns(table, str(path))
    pairs = strand_pairs(table, path)
    table["strand_pair"] = np.arange(len(table), dtype=np.int64) if pairs is None else pairs
    return table


def check_scale_columns(table: pd.DataFrame, where: str) -> pd.DataFrame:
    """``table`` with ``clip``/``clip_soft``/``scale`` as float64 and ``sum_stat`` as str, checked: a missing
    column (``clip`` may be absent) or a non-numeric value (``scale`` must be positive) is a UserError naming
    ``where`` and the row."""
    table = table.copy()
    missing = [column for column in ("clip_soft", "scale", "sum_stat") if column not in table.columns]
    if missing:
        raise UserError(f"{where}: the squashed scale needs column(s) {', '.join(missing)} of a Borzoi targets table")
    for column in _NUMERIC:
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | (values <= 0) if column == "scale" else values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"{where}: row {row} has {column}={table[column].iloc[row]!r}; expected a "
                            f"{'positive ' if column == 'scale' else ''}number")
        table[column] = values.astype(np.float64)
    table["sum_stat"] = table["sum_stat"].astype(str)
    return table


@lru_cache(maxsize=None)
def _shipped(head: str) -> pd.DataFrame:
    return read_borzoi_targets(_resource(SHIPPED[head]))


def borzoi_track_table(head: str = "human") -> pd.DataFrame:
    """The shipped table of a published Borzoi head (``human``: 7,611 tracks, ``mouse``: 2,608)."""
    if head not in SHIPPED:
        raise UserError(f"no shipped Borzoi track table for head {head!r}; choose {' or '.join(SHIPPED)}")
    return _shipped(head).copy()


def undo_squashed_scale(values, table: pd.DataFrame, unscale: bool = False, unclip: bool = True) -> np.ndarray:
    """Predictions in the squashed scale -> coverage, track by track (baskerville ``untransform_preds1``).

    Per track: divide by ``scale``; above ``clip_soft`` (``c``) a value ``x`` becomes ``c + (x - c)**2``
    (``unclip``); ``*_sqrt`` tracks are raised to the power 4/3; then multiplied by ``scale`` again unless
    ``unscale`` (calico's default keeps the scale).

    Args:
        values: (..., tracks) predictions, float.
        table: one row per track in output order with ``clip_soft``, ``scale`` and ``sum_stat``
            (:func:`read_borzoi_targets`, :func:`borzoi_track_table`, or a selection of its rows).
    Returns:
        (..., tracks) float64 array.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] != len(table):
        raise UserError(f"predictions with {values.shape[-1] if values.ndim else 0} tracks cannot use a track "
                        f"table of {len(table)} rows")
    scale = table["scale"].to_numpy(dtype=np.float64)
    coverage = values / scale
    if unclip:
        clip_soft = table["clip_soft"].to_numpy(dtype=np.float64)
        coverage = np.where(coverage > clip_soft, clip_soft + (coverage - clip_soft) ** 2, coverage)
    root = np.array(["_sqrt" in str(stat) for stat in table["sum_stat"]])
    coverage[..., root] = coverage[..., root] ** (4.0 / 3.0)
    return coverage if unscale else coverage * scale


def apply_squashed_scale(coverage, table: pd.DataFrame, pool_width: int = 1) -> np.ndarray:
    """Per-bp coverage -> training targets in the squashed scale the published models learned (baskerville
    ``hound_data_read --transform_old``, the inverse of :func:`undo_squashed_scale`).

    Per track, in calico's order (:func:`senformer.data.bigwig.bin_coverage` with ``root="borzoi"``): sum or
    average ``pool_width`` bp per bin (``sum_stat``); ``*_sqrt`` tracks to the power 3/4; above ``clip_soft``
    (``c``) a value ``x`` becomes ``c + sqrt(x - c)``; clip to ``[-clip, clip]``; multiply by ``scale``.
    calico then stores float16 and clips the whole data set at its 99.99999th percentile; neither is per
    window, so neither is done here.

    Args:
        coverage: (..., bp, tracks) finite per-bp coverage, ``bp`` a multiple of ``pool_width``.
        table: one row per track with ``clip``, ``clip_soft``, ``scale`` and ``sum_stat`` (sum, mean,
            sum_sqrt or mean_sqrt), as :func:`read_borzoi_targets` returns.
    Returns:
        (..., bp / pool_width, tracks) float32 array.
    """
    from .bigwig import bin_coverage

    coverage = np.asarray(coverage, dtype=np.float64)
    if coverage.ndim < 2 or coverage.shape[-1] != len(table):
        raise UserError(f"coverage with {coverage.shape[-1] if coverage.ndim else 0} tracks cannot use a track "
                        f"table of {len(table)} rows")
    if pool_width < 1 or coverage.shape[-2] % pool_width:
        raise UserError(f"{coverage.shape[-2]} bp of coverage do not divide into bins of {pool_width} bp")
    if not np.isfinite(coverage).all():
        raise UserError("coverage has NaN or infinite values; fill them before squashing (calico sets them to "
                        "a baseline)")
    stats = [str(stat) for stat in table["sum_stat"]]
    unknown = sorted(set(stats) - {"sum", "mean", "sum_sqrt", "mean_sqrt"})
    if unknown:
        raise UserError(f"sum_stat {', '.join(unknown)} is not one of sum, mean, sum_sqrt, mean_sqrt")
    root = np.array(["_sqrt" in stat for stat in stats])
    if (coverage[..., root] < 0).any():
        raise UserError("coverage of a *_sqrt track is negative; its power 3/4 is undefined")
    return np.stack([
        bin_coverage(coverage[..., track], pool_width, row.sum_stat, row.clip, row.scale, row.clip_soft, "borzoi")
        for track, row in enumerate(table.itertuples())
    ], axis=-1)


def write_borzoi_resource(targets_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Rebuild a shipped table from calico's ``targets_*.txt`` (without its ``file`` column)."""
    from ..io import atomic_write_bytes

    table = read_borzoi_targets(targets_path)
    text = table[list(BORZOI_TARGET_COLUMNS)].to_csv(sep="\t", index=False)
    atomic_write_bytes(out_path, gzip.compress(text.encode("utf-8"), 9, mtime=0))
