"""Figure 6: two models' per-example accuracy against each other, per assay group.

For every test example and assay group, a model's score is the mean over the group's tracks of its
per-example Pearson with the experiment (over the example's bins). The comparison reports the correlation
between the two models' scores, the share of examples each model wins (ties, within ``tie_tolerance``,
counted apart) and, when predictions are available, the pooled correlation between the two models'
predictions (over every example and bin, per track, averaged over the group's tracks).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .common import iterate_batches, predict

TIE_TOLERANCE = 1e-6
"""Scores within this distance are a tie: the same model run in two batch layouts differs by float noise."""


def group_scores(per_example: np.ndarray, groups: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean per-example score over each group's tracks.

    Args:
        per_example: (examples, tracks) per-example Pearson; NaN where a track is constant in an example.
        groups: (tracks,) assay group of each track.
    Returns:
        ``{group: (examples,)}`` in order of first appearance, plus ``"all"`` over every track; NaN where an
        example has no finite score in the group.
    """
    per_example = np.asarray(per_example, dtype=np.float64)
    groups = np.asarray([str(group) for group in groups])
    if per_example.ndim != 2 or per_example.shape[1] != len(groups):
        raise ValueError(
            f"per_example must be (examples, tracks) with {len(groups)} tracks; got shape {per_example.shape}"
        )
    result: dict[str, np.ndarray] = {}
    for group in dict.fromkeys(groups):
        result[group] = _nanmean_rows(per_example[:, groups == group])
    if len(result) > 1:
        result["all"] = _nanmean_rows(per_example)
    return result


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    sums = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays over the entries finite in both; NaN if either is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def compare_scores(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: Sequence[str],
    names: tuple[str, str] = ("A", "B"),
    tie_tolerance: float = TIE_TOLERANCE,
    prediction_correlation: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per assay group (and ``all``) comparing two models' per-example scores.

    Args:
        scores_a, scores_b: (examples, tracks) per-example Pearson of each model, the same examples in the
            same order (``senformer.metrics.per_example_pearson``).
        groups: (tracks,) assay group of each track.
        names: the two models' names, used in the column names.
        tie_tolerance: absolute difference at or below which an example is a tie.
        prediction_correlation: optional (tracks,) pooled Pearson between the two models' predictions.
    Returns:
        Columns ``group, examples, correlation, mean_<a>, mean_<b>, <a>_wins, <b>_wins, ties,
        <a>_win_share, <b>_win_share, tie_share`` and ``prediction_correlation`` when given.
    """
    scores_a, scores_b = np.asarray(scores_a), np.asarray(scores_b)
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"the two models' scores differ in shape: {scores_a.shape} vs {scores_b.shape}")
    name_a, name_b = names
    if name_a == name_b:
        raise ValueError(f"the two models need different names, got {name_a!r} twice")
    by_group_a, by_group_b = group_scores(scores_a, groups), group_scores(scores_b, groups)
    group_array = np.asarray([str(group) for group in groups])
    rows = []
    for group, a in by_group_a.items():
        b = by_group_b[group]
        valid = np.isfinite(a) & np.isfinite(b)
        difference = a[valid] - b[valid]
        ties = int((np.abs(difference) <= tie_tolerance).sum())
        a_wins = int((difference > tie_tolerance).sum())
        b_wins = int((difference < -tie_tolerance).sum())
        count = int(valid.sum())
        row = {
            "group": group,
            "examples": count,
            "correlation": pearson(a, b),
            f"mean_{name_a}": float(a[valid].mean()) if count else float("nan"),
            f"mean_{name_b}": float(b[valid].mean()) if count else float("nan"),
            f"{name_a}_wins": a_wins,
            f"{name_b}_wins": b_wins,
            "ties": ties,
            f"{name_a}_win_share": a_wins / count if count else float("nan"),
            f"{name_b}_win_share": b_wins / count if count else float("nan"),
            "tie_share": ties / count if count else float("nan"),
        }
        if prediction_correlation is not None:
            selected = prediction_correlation if group == "all" else prediction_correlation[group_array == group]
            row["prediction_correlation"] = float(np.nanmean(selected)) if np.isfinite(selected).any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def score_models(
    models: Mapping[str, torch.nn.Module],
    dataset: Iterable[dict],
    head: str,
    batch_size: int = 2,
    max_examples: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Run two (or more) models over a dataset once.

    Returns:
        ``scores``: ``{name: (examples, tracks)}`` per-example Pearson with the target;
        ``prediction_correlation``: (tracks,) pooled Pearson between the first two models' predictions;
        ``example_index``: (examples,) the dataset's ``index`` of each example.
    """
    from ..metrics import StreamingPearson, per_example_pearson

    names = list(models)
    if len(names) < 2:
        raise ValueError(f"compare needs at least two models, got {len(names)}")
    for model in models.values():
        model.eval()
    scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
    indices: list[int] = []
    between: StreamingPearson | None = None
    for batch in tqdm(iterate_batches(dataset, batch_size, max_examples), desc="compare", unit="batch",
                      disable=not progress):
        target = batch["target"].float()
        predictions = {name: predict(model, batch["sequence"], head) for name, model in models.items()}
        for name, prediction in predictions.items():
            if prediction.shape != target.shape:
                raise ValueError(
                    f"model {name!r} predicts {tuple(prediction.shape)} for head {head!r} but the targets are "
                    f"{tuple(target.shape)}: wrong head, sequence length or track count"
                )
            scores[name].append(np.asarray(per_example_pearson(prediction.numpy(), target.numpy())))
        if between is None:
            between = StreamingPearson(target.shape[-1])
        between.update(predictions[names[0]].numpy(), predictions[names[1]].numpy())
        index = batch.get("index", list(range(len(indices), len(indices) + len(target))))
        indices.extend(int(i) for i in (index.tolist() if isinstance(index, torch.Tensor) else index))
    if between is None:
        raise ValueError("the dataset yielded no examples")
    stacked = {name: np.concatenate(parts, axis=0) for name, parts in scores.items()}
    return stacked, np.asarray(between.compute(), dtype=np.float64), np.asarray(indices, dtype=np.int64)
