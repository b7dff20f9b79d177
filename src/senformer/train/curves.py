"""Training curves (the shape of the report's Figure 5) and CSV views of ``log.jsonl``.

Plot functions take records and an ``ax`` and return it; the writers own the files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..io import atomic_path, save_figure


def plot_loss(records: Sequence[dict[str, Any]], ax):
    """Training Poisson loss per head against the step."""
    train = [r for r in records if r.get("kind") == "train"]
    heads = sorted({key.split("/", 1)[1] for r in train for key in r if key.startswith("loss/")})
    for head in heads:
        points = [(r["step"], r[f"loss/{head}"]) for r in train if f"loss/{head}" in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=f"train {head}")
    evaluation = [r for r in records if r.get("kind") == "eval"]
    for head in sorted({r["head"] for r in evaluation}):
        points = [(r["step"], r["loss"]) for r in evaluation if r["head"] == head and _finite(r.get("loss"))]
        ax.plot([p[0] for p in points], [p[1] for p in points], "o--", label=f"{_split(evaluation)} {head}")
    ax.set_xlabel("step")
    ax.set_ylabel("Poisson loss")
    if heads:
        ax.legend(fontsize="small")
    return ax


def plot_correlation(records: Sequence[dict[str, Any]], ax):
    """Validation pooled Pearson (mean over tracks and per assay group) against the step."""
    evaluation = [r for r in records if r.get("kind") == "eval"]
    for head in sorted({r["head"] for r in evaluation}):
        rows = [r for r in evaluation if r["head"] == head]
        keys = ["pearson"] + sorted({k for r in rows for k in r if k.startswith("pearson/")})
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if _finite(r.get(key))]
            style = "o-" if key == "pearson" else ".:"
            label = f"{head} all tracks" if key == "pearson" else f"{head} {key.split('/', 1)[1]}"
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{_split(evaluation)} Pearson r")
    if evaluation:
        ax.legend(fontsize="small")
    return ax


def write_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_ax, correlation_ax) = plt.subplots(1, 2, figsize=(11, 4))
    plot_loss(records, loss_ax)
    plot_correlation(records, correlation_ax)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(path, figure)


def write_tables(records: Sequence[dict[str, Any]], directory: str | Path) -> None:
    """``train_log.csv`` and ``eval_log.csv`` beside ``log.jsonl``."""
    directory = Path(directory)
    for kind in ("train", "eval"):
        rows = [{k: v for k, v in r.items() if k != "kind"} for r in records if r.get("kind") == kind]
        if rows:
            with atomic_path(directory / f"{kind}_log.csv") as temporary:
                pd.DataFrame(rows).to_csv(temporary, index=False)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _split(evaluation: Sequence[dict[str, Any]]) -> str:
    return evaluation[0].get("split", "validation") if evaluation else "validation"
