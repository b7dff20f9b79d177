"""Evaluation of one or more models on a Basenji2 split: the official pooled Pearson per track, per assay
group (Enformer Figure 4 / the S-Enformer report), and the per-example Pearson.

Two metrics, both reported and clearly named everywhere:

- ``pooled``: the official metric (DeepMind training colab): per track, Pearson over ALL (example, bin)
  pairs of the split with float64 running sums; averaged over tracks (overall and per assay group).
- ``per_example``: Pearson along the bins of each example and track, averaged over tracks, then over
  examples (the S-Enformer report compares models this way). Constant (example, track) pairs are NaN,
  skipped in the means and counted.

The models see every batch once each, so several models cost one pass over the data.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from .data.tracks import GROUP_ORDER, head_track_table
from .errors import UserError
from .data.batch import stack_examples
from .inference import head_strand_pairs, predict_batch
from .io import jsonable, save_figure, write_csv, write_json, write_npz
from .metrics import StreamingPearson, nan_summary, per_example_pearson, per_example_summary


@dataclass
class ModelResult:
    """Results of one model: ``pooled`` (tracks,), ``per_example`` (examples, tracks), ``example_index`` (examples,)."""

    name: str
    pooled: np.ndarray
    per_example: np.ndarray
    example_index: np.ndarray
    seconds: float


@dataclass
class EvaluationResult:
    """All models' results on one split, with the track table and how the inputs were built."""

    models: dict[str, ModelResult]
    tracks: pd.DataFrame
    examples: int
    settings: dict[str, Any] = field(default_factory=dict)

    # Tables ----------------------------------------------------------------------------------------
    def per_track(self) -> pd.DataFrame:
        """One row per track: index, identifier, description, assay_group, and per model the pooled Pearson
        (``pooled_<name>``) and the per-example Pearson averaged over examples (``per_example_<name>``)."""
        table = self.tracks[["index", "identifier", "description", "assay_group"]].copy()
        for name, result in self.models.items():
            table[f"pooled_{name}"] = result.pooled
            with np.errstate(invalid="ignore"), _quiet_nan_mean():
                table[f"per_example_{name}"] = np.nanmean(result.per_example, axis=0) if len(result.per_example) else np.nan
        return table

    def per_assay(self) -> pd.DataFrame:
        """One row per assay group (and ``all``): tracks, and per model both metrics plus, from the second
        model on, the difference to the first (``<metric>_<name>_minus_<first>``)."""
        groups = [g for g in GROUP_ORDER if (self.tracks["assay_group"] == g).any()]
        rows = []
        names = list(self.models)
        for group in [*groups, "all"]:
            mask = np.ones(len(self.tracks), bool) if group == "all" else (self.tracks["assay_group"] == group).to_numpy()
            row: dict[str, Any] = {"assay_group": group, "tracks": int(mask.sum())}
            for name in names:
                result = self.models[name]
                pooled = nan_summary(result.pooled[mask])
                row[f"pooled_{name}"] = pooled["mean"]
                row[f"constant_tracks_{name}"] = pooled["nan"]
                row[f"per_example_{name}"] = per_example_summary(result.per_example[:, mask])["mean"] if len(result.per_example) else np.nan
            for name in names[1:]:
                for metric in ("pooled", "per_example"):
                    row[f"{metric}_{name}_minus_{names[0]}"] = row[f"{metric}_{name}"] - row[f"{metric}_{names[0]}"]
            rows.append(row)
        return pd.DataFrame(rows)

    def metrics(self) -> dict[str, Any]:
        """Everything in ``metrics.json``: settings, and per model and assay group both metrics and counts."""
        per_assay = self.per_assay().set_index("assay_group")
        models = {}
        for name, result in self.models.items():
            pooled = nan_summary(result.pooled)
            example = per_example_summary(result.per_example) if len(result.per_example) else {}
            models[name] = {
                "pooled_pearson": {
                    "definition": "per track over all examples and bins (float64 sums), then mean over tracks",
                    "mean": pooled["mean"],
                    "per_assay": {g: _number(per_assay.loc[g, f"pooled_{name}"]) for g in per_assay.index if g != "all"},
                    "constant_tracks": pooled["nan"],
                },
                "per_example_pearson": {
                    "definition": "per example and track along the bins, mean over tracks, then over examples",
                    "mean": example.get("mean", float("nan")),
                    "per_assay": {g: _number(per_assay.loc[g, f"per_example_{name}"]) for g in per_assay.index if g != "all"},
                    "constant_pairs": example.get("constant_pairs", 0),
                    "empty_examples": example.get("empty_examples", 0),
                },
                "seconds": round(result.seconds, 3),
                **self.settings.get("model_settings", {}).get(name, {}),
            }
        names = list(self.models)
        differences = {}
        for name in names[1:]:
            differences[f"{name} - {names[0]}"] = {
                metric: {g: _number(per_assay.loc[g, f"{metric}_{name}_minus_{names[0]}"]) for g in per_assay.index}
                for metric in ("pooled", "per_example")
            }
        settings = {k: v for k, v in self.settings.items() if k != "model_settings"}
        return {"examples": self.examples, **settings, "tracks": _group_sizes(self.tracks), "models": models,
                "differences": differences}

    # Files -----------------------------------------------------------------------------------------
    def write(self, out_dir: str | os.PathLike, plot: bool = True) -> Path:
        """Write ``metrics.json``, ``per_assay.csv``, ``per_track.csv``, ``per_example_<name>.npz`` (arrays
        ``pearson`` (examples, tracks) and ``example_index`` (examples,)) and, for 2+ models, ``comparison.png``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", self.metrics())
        write_csv(out / "per_assay.csv", self.per_assay())
        write_csv(out / "per_track.csv", self.per_track())
        for name, result in self.models.items():
            write_npz(out / f"per_example_{name}.npz", pearson=result.per_example, example_index=result.example_index)
        if plot and len(self.models) > 1:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            figure, axes = plt.subplots(1, 2, figsize=(11, 4))
            table = self.per_assay()
            plot_per_assay(table, list(self.models), "pooled", axes[0])
            plot_per_assay(table, list(self.models), "per_example", axes[1])
            subtitle = self.settings.get("input", "")
            figure.suptitle(f"{self.settings.get('split', '')}: {self.examples} examples; {subtitle}", fontsize=9)
            figure.tight_layout()
            save_figure(out / "comparison.png", figure, dpi=120)
        return out


def plot_per_assay(table: pd.DataFrame, names: list[str], metric: str, ax):
    """Grouped bars: mean Pearson (``metric`` = ``pooled`` or ``per_example``) per assay group, one bar per
    model. ``table`` is :meth:`EvaluationResult.per_assay`. Returns ``ax``."""
    groups = list(table["assay_group"])
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(groups))
    for offset, name in enumerate(names):
        values = table[f"{metric}_{name}"].to_numpy(dtype=float)
        bars = ax.bar(positions + (offset - (len(names) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(positions, groups, fontsize=8)
    ax.set_ylabel("mean Pearson r")
    ax.set_title("pooled over examples and bins (official)" if metric == "pooled" else "per example, then averaged")
    ax.legend(fontsize=8)
    return ax


# The loop ----------------------------------------------------------------------------------------------

def evaluate(
    models: Mapping[str, torch.nn.Module],
    dataset: Iterable[dict[str, Any]],
    head: str = "human",
    *,
    tracks: pd.DataFrame | None = None,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    rc_average: bool = False,
    max_examples: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
    on_predictions: Callable[[dict[str, torch.Tensor], torch.Tensor], None] | None = None,
) -> EvaluationResult:
    """Stream ``dataset`` once through every model and score ``head``.

    Args:
        models: ``{name: Enformer}``; each output ``(batch, bins, tracks)`` must match the targets.
        dataset: yields dicts with ``sequence`` ``(bp, 4)``, ``target`` ``(bins, tracks)``, ``index`` (e.g.
            :class:`senformer.data.basenji.BasenjiDataset`); wrapped in a DataLoader.
        head: output head to score.
        tracks: track table (``assay_group`` column); default :func:`senformer.data.tracks.head_track_table`
            of the data's tracks (the dataset's ``targets.txt``, else the shipped table, else generated).
        bf16: autocast to bfloat16 (metrics stay float64). ``rc_average``: average with the prediction for
            the reverse complement (bins flipped back, each stranded track read from its strand pair: the
            track table's ``strand_pair`` column where it has one, else the shipped table's).
        max_examples: stop after this many examples.
        on_predictions: called after each batch with ``{name: (batch, bins, tracks) prediction}`` and the
            target, as scored (``analyze compare`` correlates two models' predictions in the same pass).
    """
    if not models:
        raise ValueError("no models to evaluate")
    device = torch.device(device)
    for name, model in models.items():
        if head not in model.config.output_heads:
            raise UserError(f"model {name!r} has no head {head!r} (heads: {', '.join(model.config.output_heads)})")
    where = None  # the track table's file, named in errors
    if tracks is None:
        count = getattr(dataset, "num_targets", None)
        count = next(iter(models.values())).config.output_heads[head] if count is None else count
        directory = getattr(dataset, "directory", None)
        tracks = head_track_table(head, count, directory)
        if tracks.attrs["source"] == "targets":
            where = Path(directory) / "targets.txt" if Path(directory).is_dir() else directory
    num_tracks = len(tracks)
    strand_pairs = {name: head_strand_pairs(model, {head: tracks}, where) for name, model in models.items()
                    if model.config.output_heads[head] == num_tracks}  # else the shape check below refuses it
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=stack_examples)
    pooled = {name: StreamingPearson(num_tracks) for name in models}
    per_example: dict[str, list[np.ndarray]] = {name: [] for name in models}
    seconds = {name: 0.0 for name in models}
    indices: list[np.ndarray] = []
    seen = 0
    for model in models.values():
        model.eval().to(device)
    total = len(dataset) if hasattr(dataset, "__len__") else None
    if max_examples is not None and total is not None:
        total = min(total, max_examples)
    bar = _progress(total, progress)
    for batch in loader:
        sequence, target = batch["sequence"], batch["target"]
        if max_examples is not None:
            keep = max_examples - seen
            if keep <= 0:
                break
            sequence, target, batch["index"] = sequence[:keep], target[:keep], batch["index"][:keep]
        sequence = sequence.to(device)
        if target.shape[-1] != num_tracks:
            raise UserError(f"the data has {target.shape[-1]} tracks, the track table {num_tracks}")
        predictions = {}
        for name, model in models.items():
            start = time.perf_counter()
            prediction = predict_batch(model, sequence, heads=[head], reverse_complement=rc_average, bf16=bf16,
                                       device=device, strand_pairs=strand_pairs.get(name))[head]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] += time.perf_counter() - start
            if prediction.shape != target.shape:
                raise UserError(
                    f"model {name!r} predicts {tuple(prediction.shape)} for {tuple(sequence.shape)} inputs but the "
                    f"targets are {tuple(target.shape)}: set the model's target_length to {target.shape[1]} or the "
                    f"input length, and use the {head!r} head of {target.shape[2]} tracks"
                )
            if not torch.isfinite(prediction).all():
                # A NaN would silently drop out of the pooled sums' tracks as "constant"; it is a broken model.
                row = int(torch.nonzero(~torch.isfinite(prediction))[0, 0])
                raise UserError(f"model {name!r} predicts a non-finite value for example "
                                f"{int(batch['index'][row])} of the split: its weights or inputs are broken")
            pooled[name].update(prediction, target)
            per_example[name].append(per_example_pearson(prediction, target))
            predictions[name] = prediction
        if on_predictions is not None:
            on_predictions(predictions, target)
        indices.append(batch["index"].numpy())
        seen += len(sequence)
        bar.update(len(sequence))
    bar.close()
    example_index = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    results = {
        name: ModelResult(
            name, pooled[name].compute(),
            np.concatenate(per_example[name]) if per_example[name] else np.zeros((0, num_tracks)),
            example_index, seconds[name],
        )
        for name in models
    }
    recorded = {"head": head, "batch_size": batch_size, "device": str(device), "bf16": bf16,
                "rc_average": rc_average, "max_examples": max_examples, **(settings or {})}
    for key in ("input", "flanks", "split", "data", "sequence_length"):
        if key not in recorded and hasattr(dataset, _DATASET_ATTRIBUTES[key]):
            recorded[key] = getattr(dataset, _DATASET_ATTRIBUTES[key])
    return EvaluationResult(results, tracks.reset_index(drop=True), seen, jsonable(recorded))


_DATASET_ATTRIBUTES = {"input": "input_description", "flanks": "flanks", "split": "split", "data": "directory",
                       "sequence_length": "sequence_length"}


def _progress(total: int | None, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="example", desc="evaluate", disable=not enabled)


def _group_sizes(tracks: pd.DataFrame) -> dict[str, int]:
    counts = tracks["assay_group"].value_counts()
    return {group: int(counts[group]) for group in GROUP_ORDER if group in counts}


@contextlib.contextmanager
def _quiet_nan_mean():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _number(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value
