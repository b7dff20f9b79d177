"""Figure 7: predicted tracks of several models against the experiment, and the over-prediction summary.

One pass over a dataset keeps the chosen examples' predictions and targets for the chosen tracks, and
accumulates per track the sums behind the over-prediction summary: mean predicted over mean observed
(pooled over every example and bin) and the share of bins where the prediction exceeds the experiment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.batch import iterate_batches
from ..inference import predict_batch
from .common import default_tracks


@dataclass
class TrackExamples:
    """Chosen examples and tracks: ``target`` (examples, bins, tracks), ``predictions`` {model: same shape},
    ``example_index`` (examples,), ``intervals`` (examples,) strings, ``tracks`` (tracks,) positions."""

    tracks: list[int]
    example_index: list[int] = field(default_factory=list)
    intervals: list[str] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        result = {
            "tracks": np.asarray(self.tracks, dtype=np.int64),
            "example_index": np.asarray(self.example_index, dtype=np.int64),
            "target": np.stack(self.target) if self.target else np.zeros((0, 0, len(self.tracks))),
        }
        for name, values in self.predictions.items():
            result[f"prediction_{name}"] = np.stack(values) if values else np.zeros((0, 0, len(self.tracks)))
        return result


class OverPrediction:
    """Per-track float64 sums of prediction, target, bins and over-predicted bins, pooled over examples."""

    def __init__(self, num_tracks: int):
        self.predicted = np.zeros(num_tracks)
        self.observed = np.zeros(num_tracks)
        self.over = np.zeros(num_tracks)
        self.bins = np.zeros(num_tracks)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        """prediction, target: (batch, bins, tracks)."""
        prediction = np.asarray(prediction, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        self.predicted += prediction.sum(axis=(0, 1))
        self.observed += target.sum(axis=(0, 1))
        self.over += (prediction > target).sum(axis=(0, 1))
        self.bins += prediction.shape[0] * prediction.shape[1]

    def per_track(self) -> pd.DataFrame:
        with np.errstate(invalid="ignore", divide="ignore"):
            return pd.DataFrame({
                "mean_predicted": self.predicted / self.bins,
                "mean_observed": self.observed / self.bins,
                "ratio": self.predicted / self.observed,
                "share_over": self.over / self.bins,
            })

    def per_group(self, groups: Sequence[str]) -> pd.DataFrame:
        """One row per assay group (and ``all``): pooled mean predicted / mean observed, share over."""
        groups = np.asarray([str(group) for group in groups])
        rows = []
        selections = [(group, groups == group) for group in dict.fromkeys(groups)]
        if len(selections) > 1:
            selections.append(("all", np.ones(len(groups), dtype=bool)))
        for group, keep in selections:
            bins = self.bins[keep].sum()
            predicted, observed = self.predicted[keep].sum() / bins, self.observed[keep].sum() / bins
            rows.append({
                "group": group,
                "tracks": int(keep.sum()),
                "mean_predicted": predicted,
                "mean_observed": observed,
                "ratio": predicted / observed if observed > 0 else float("nan"),
                "share_over": self.over[keep].sum() / bins,
            })
        return pd.DataFrame(rows)


def collect_tracks(
    models: Mapping[str, torch.nn.Module],
    dataset: Iterable[dict],
    head: str,
    tracks: Sequence[int],
    examples: Sequence[int],
    batch_size: int = 2,
    max_examples: int | None = None,
    progress: bool = True,
) -> tuple[TrackExamples, dict[str, OverPrediction]]:
    """One pass: keep ``examples`` (positions in dataset order) for ``tracks``; sum over-prediction for all.

    Args:
        models: ``{name: model}``; each predicts ``head`` with the dataset's (bins, tracks).
        examples: which examples to keep, by position in the dataset's order (0 = first).
    Returns:
        (:class:`TrackExamples`, ``{model name: OverPrediction}``).
    """
    wanted = set(int(example) for example in examples)
    chosen = TrackExamples(tracks=list(tracks), predictions={name: [] for name in models})
    summaries: dict[str, OverPrediction] = {}
    track_index = torch.as_tensor(list(tracks), dtype=torch.long)
    position = 0
    for model in models.values():
        model.eval()
    for batch in tqdm(iterate_batches(dataset, batch_size, max_examples), desc="tracks", unit="batch",
                      disable=not progress):
        target = batch["target"].float()
        if track_index.numel() and int(track_index.max()) >= target.shape[-1]:
            raise ValueError(f"track {int(track_index.max())} is out of range: the data has {target.shape[-1]} tracks")
        keep = [row for row in range(len(target)) if position + row in wanted]
        for name, model in models.items():
            prediction = predict_batch(model, batch["sequence"], heads=[head])[head]
            if prediction.shape != target.shape:
                raise ValueError(
                    f"model {name!r} predicts {tuple(prediction.shape)} for head {head!r} but the targets are "
                    f"{tuple(target.shape)}"
                )
            summaries.setdefault(name, OverPrediction(target.shape[-1])).update(prediction.numpy(), target.numpy())
            chosen.predictions[name].extend(prediction[row][:, track_index].numpy() for row in keep)
        chosen.target.extend(target[row][:, track_index].numpy() for row in keep)
        indices = batch.get("index")
        intervals = batch.get("interval")
        for row in keep:
            chosen.example_index.append(int(indices[row]) if indices is not None else position + row)
            chosen.intervals.append(str(intervals[row]) if intervals is not None else "")
        position += len(target)
    missing = sorted(example for example in wanted if example >= position)
    if missing:
        raise ValueError(f"example(s) {missing} are beyond the {position} examples read")
    return chosen, summaries


@dataclass
class TracksAnalysis:
    """What :func:`run_tracks` wrote: the over-prediction summary per assay group (``per_group``, one row
    per model and group) and the chosen track positions (``tracks``) and examples."""

    per_group: pd.DataFrame
    tracks: list[int]
    examples: list[int]


def run_tracks(
    out: str | os.PathLike,
    models: Mapping[str, torch.nn.Module],
    dataset: Iterable[dict],
    head: str = "human",
    *,
    tracks=None,
    targets=None,
    examples: Sequence[int] = (0,),
    batch_size: int = 2,
    max_examples: int | None = None,
    progress: bool = True,
) -> TracksAnalysis:
    """``senformer analyze tracks``: Figure 7 and the over-prediction summary, written into ``out``.

    Files: ``overprediction.csv`` (per model and assay group), ``overprediction_tracks.csv`` (per model and
    track), ``tracks.npz`` (:meth:`TrackExamples.arrays`), ``tracks.json`` and ``tracks_example<N>.png``.

    Args:
        models: ``{name: model}`` predicting ``head`` with the dataset's (bins, tracks).
        tracks: ``--tracks`` values (:func:`senformer.data.tracks.select_tracks`); default the first track
            of each assay group.
        targets: names the tracks (:func:`senformer.data.tracks.head_track_table`), e.g. the data folder.
        examples: the examples drawn, by position in the dataset's order.
    """
    from ..data.tracks import head_track_table, select_tracks
    from ..errors import UserError
    from ..io import save_figure, write_csv, write_json, write_npz
    from ..plots import new_figure, track_panel

    out = Path(out)
    first = next(iter(models.values()))
    num_tracks = first.config.output_heads.get(head)
    if num_tracks is None:
        raise UserError(f"the models have no head {head!r}")
    table = head_track_table(head, num_tracks, targets)
    chosen = select_tracks(tracks, table, head).tolist() if tracks else default_tracks(table["assay_group"])
    examples_kept, summaries = collect_tracks(models, dataset, head, chosen, examples, batch_size, max_examples,
                                              progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    groups = list(table["assay_group"])
    per_group = pd.concat([summary.per_group(groups).assign(model=name) for name, summary in summaries.items()])
    per_track = pd.concat([pd.concat([table, summary.per_track()], axis=1).assign(model=name)
                           for name, summary in summaries.items()])
    write_csv(out / "overprediction.csv", per_group)
    write_csv(out / "overprediction_tracks.csv", per_track)
    write_npz(out / "tracks.npz", **examples_kept.arrays())
    write_json(out / "tracks.json", {
        "models": list(models), "head": head, "examples": examples_kept.example_index,
        "intervals": examples_kept.intervals,
        "tracks": [{"position": p, "identifier": str(table["identifier"][p]),
                    "description": str(table["description"][p]), "assay_group": str(table["assay_group"][p])}
                   for p in chosen],
        "overprediction": per_group.to_dict(orient="records"),
    })
    for number, example in enumerate(examples_kept.example_index):
        figure = new_figure(7.5, 1.9 * len(chosen))
        axes = figure.subplots(len(chosen), 1, squeeze=False)[:, 0]
        for axis, (column, position) in zip(axes, enumerate(chosen)):
            track_panel(axis, examples_kept.target[number][:, column],
                        {name: values[number][:, column] for name, values in examples_kept.predictions.items()},
                        title=f"{table['description'][position]} ({table['assay_group'][position]}), "
                              f"example {example} {examples_kept.intervals[number]}")
        axes[-1].set_xlabel("output bin")
        save_figure(out / f"tracks_example{example}.png", figure)
    return TracksAnalysis(per_group, chosen, list(examples_kept.example_index))
