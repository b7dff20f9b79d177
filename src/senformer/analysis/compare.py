"""Figure 6: two models' per-example accuracy against each other, per assay group.

For every test example and assay group, a model's score is the mean over the group's tracks of its
per-example Pearson with the experiment (over the example's bins). The comparison reports the correlation
between the two models' scores, the share of examples each model wins (ties, within ``tie_tolerance``,
counted apart) and, when predictions are available, the pooled correlation between the two models'
predictions (over every example and bin, per track, averaged over the group's tracks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

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
    batch_size: int = 1,
    max_examples: int | None = None,
    progress: bool = True,
    targets=None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Run two (or more) models over a dataset once, through :func:`senformer.evaluate.evaluate`: the
    per-example scores are those an evaluation with the same batch size writes.

    Args:
        targets: names the head's tracks (default: the dataset folder's ``targets.txt``).
    Returns:
        ``scores``: ``{name: (examples, tracks)}`` per-example Pearson with the target;
        ``prediction_correlation``: (tracks,) pooled Pearson between the first two models' predictions;
        ``example_index``: (examples,) the dataset's ``index`` of each example.
    """
    from ..data.tracks import head_track_table
    from ..evaluate import evaluate
    from ..metrics import StreamingPearson
    from .common import head_tracks

    names = list(models)
    if len(names) < 2:
        raise ValueError(f"compare needs at least two models, got {len(names)}")
    num_tracks = head_tracks(models[names[0]], head)
    table = head_track_table(head, num_tracks, targets if targets is not None else getattr(dataset, "directory", None))
    between = StreamingPearson(num_tracks)

    def correlate(predictions: dict[str, torch.Tensor], target: torch.Tensor) -> None:
        between.update(predictions[names[0]].numpy(), predictions[names[1]].numpy())

    device = next(models[names[0]].parameters()).device
    result = evaluate(models, dataset, head, tracks=table, batch_size=batch_size, device=device,
                      max_examples=max_examples, progress=progress, on_predictions=correlate)
    if result.examples == 0:
        raise ValueError("the dataset yielded no examples")
    scores = {name: model_result.per_example for name, model_result in result.models.items()}
    example_index = np.asarray(result.models[names[0]].example_index, dtype=np.int64)
    return scores, np.asarray(between.compute(), dtype=np.float64), example_index


def evaluation_scores(directory: str | os.PathLike, names: Sequence[str] | None = None
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``{name: (examples, tracks)}`` per-example Pearson and ``example_index`` (examples,) read from the
    ``per_example_<name>.npz`` files of a ``senformer evaluate --out DIR`` run (default: its two models)."""
    from ..errors import UserError

    directory = Path(directory)
    available = sorted(path.stem.removeprefix("per_example_") for path in directory.glob("per_example_*.npz"))
    if names is None:
        if len(available) != 2:
            raise UserError(f"{directory} holds per-example scores of {available or 'no models'}; "
                            "name two with --models A B")
        names = available
    scores, indices = {}, []
    for name in names:
        path = directory / f"per_example_{name}.npz"
        if not path.is_file():
            raise UserError(f"{path} is missing; {directory} has scores of {', '.join(available) or 'no models'}")
        with np.load(path) as arrays:
            scores[name] = arrays["pearson"]
            indices.append(arrays["example_index"])
    if not np.array_equal(indices[0], indices[1]):
        raise UserError(f"the two models in {directory} were scored on different examples")
    return scores, indices[0]


def run_compare(
    out: str | os.PathLike,
    scores: Mapping[str, np.ndarray],
    example_index: np.ndarray,
    table: pd.DataFrame,
    head: str = "human",
    tie_tolerance: float = TIE_TOLERANCE,
    prediction_correlation: np.ndarray | None = None,
) -> pd.DataFrame:
    """``senformer analyze compare``: Figure 6 from two models' per-example scores, written into ``out``.

    The scores come from :func:`score_models` (running the models) or :func:`evaluation_scores` (reading an
    evaluation). Files: ``compare.csv`` (the returned summary), ``per_example.csv``, ``scores.npz``,
    ``compare.json``, ``compare.png`` and, with ``prediction_correlation``, ``prediction_correlation.csv``.

    Args:
        scores: ``{name: (examples, tracks)}`` for exactly two models.
        example_index: (examples,) dataset index of each example.
        table: the head's track table (:func:`senformer.data.tracks.head_track_table`): its assay groups.
    """
    from ..io import save_figure, write_csv, write_json, write_npz
    from ..plots import compare_scatter, new_figure

    names = tuple(scores)
    if len(names) != 2:
        raise ValueError(f"compare needs exactly two models' scores, got {len(names)}")
    out = Path(out)
    groups = list(table["assay_group"])
    summary = compare_scores(scores[names[0]], scores[names[1]], groups, names, tie_tolerance, prediction_correlation)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", summary)
    by_group = {name: group_scores(scores[name], groups) for name in names}
    per_example = pd.concat([
        pd.DataFrame({"example_index": example_index, "group": group,
                      names[0]: by_group[names[0]][group], names[1]: by_group[names[1]][group]})
        for group in by_group[names[0]]
    ])
    write_csv(out / "per_example.csv", per_example)
    if prediction_correlation is not None:
        write_csv(out / "prediction_correlation.csv", table.assign(prediction_correlation=prediction_correlation))
    write_npz(out / "scores.npz", example_index=example_index, **{f"pearson_{n}": s for n, s in scores.items()})
    write_json(out / "compare.json", {"models": list(names), "head": head, "tie_tolerance": tie_tolerance,
                                      "groups": summary.to_dict(orient="records")})
    panels = list(by_group[names[0]])
    figure = new_figure(3.2 * len(panels), 3.4)
    for axis, group in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        row = summary[summary["group"] == group].iloc[0]
        compare_scatter(axis, by_group[names[0]][group], by_group[names[1]][group], names[0], names[1],
                        title=group, correlation=row["correlation"])
    save_figure(out / "compare.png", figure)
    return summary
