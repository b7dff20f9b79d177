"""Validation during training: pooled Pearson per track over this rank's share, summed across ranks.

The statistic is the official ``PearsonR(reduce_axis=(0, 1))``: per track, float64 sums over every
(example, bin) pair, correlation from the sums, then means over all tracks and over each assay group.
Sums add across ranks, so a sharded evaluation equals the single-process one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..metrics import StreamingPearson
from .distributed import all_reduce_sum_


def all_reduce_pearson(metric: StreamingPearson) -> StreamingPearson:
    """Sum the pooled-Pearson sums of every rank into ``metric`` (a no-op in one process)."""
    state = torch.from_numpy(metric.state)
    metric.sums[:] = all_reduce_sum_(state).numpy()
    return metric


def summarise(correlations: np.ndarray, groups: Mapping[str, Sequence[int]] | None = None, prefix: str = "pearson") -> dict[str, float]:
    """``{prefix: mean over tracks, prefix/<group>: mean over each group's tracks}``, ignoring NaN tracks."""
    summary = {prefix: _nanmean(correlations)}
    for group, indices in (groups or {}).items():
        summary[f"{prefix}/{group}"] = _nanmean(correlations[np.asarray(indices, dtype=int)])
    return summary


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def track_groups(directory: str | os.PathLike | None, num_tracks: int, head: str | None = None) -> dict[str, list[int]]:
    """Track indices per assay group from a dataset's ``targets.txt`` (in the order of
    ``GROUP_ORDER``), plus ``long-range`` when the directory is a synthetic dataset that names them.
    Empty when the directory has no ``targets.txt`` of ``num_tracks`` rows for ``head`` (which picks its
    rows of a barnyard file; see :func:`senformer.data.tracks.head_track_table`)."""
    if directory is None or not (Path(directory) / "targets.txt").is_file():
        return {}
    from ..data.tracks import GROUP_ORDER, head_track_table

    table = head_track_table(head or "", num_tracks, directory)
    if table.attrs["source"] != "targets":
        return {}  # the shipped or a generated table says nothing about this dataset's groups
    labels = list(table["assay_group"])
    order = [g for g in GROUP_ORDER if g in labels] + sorted(set(labels) - set(GROUP_ORDER))
    groups = {group: [i for i, label in enumerate(labels) if label == group] for group in order}
    synthetic = Path(directory) / "synthetic.json"
    if synthetic.is_file():
        long_range = json.loads(synthetic.read_text(encoding="utf-8")).get("long_range_tracks")
        if long_range:
            groups["long-range"] = [int(i) for i in long_range]
    return groups
