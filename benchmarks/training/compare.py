"""Compare the synthetic training runs: validation/test pooled Pearson per assay group and on the long-range
tracks, and each model's correlation with the full-attention model's predictions.

    python benchmarks/training/compare.py --data DATA --full RUN/full/weights \
        --model "bigbird fine-tuned=RUN/ft/weights" --model "... distilled=RUN/ftd/weights" --out DIR

The full model's weights also run unchanged with BigBird attention ("zero-shot"). Writes
``comparison.json`` and ``comparison.md`` into ``--out``; a benchmark script, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from senformer.io import atomic_write_text
from senformer.metrics import StreamingPearson
from senformer.record import machine_info
from senformer.train.data import BasenjiSource, eval_batches
from senformer.train.validation import summarise, track_groups
from senformer.weights import load_model


@torch.no_grad()
def evaluate_models(models: dict[str, torch.nn.Module], reference: str, source, groups, batch_size: int) -> dict[str, dict]:
    """Per model: pooled Pearson with the data and with ``reference``'s predictions (all tracks, per group)."""
    tracks = source.num_tracks
    with_data = {name: StreamingPearson(tracks) for name in models}
    with_reference = {name: StreamingPearson(tracks) for name in models}
    for batch in eval_batches(source, batch_size, 0, 1, None):
        predictions = {name: model(batch["sequence"], heads=["human"])["human"] for name, model in models.items()}
        for name, prediction in predictions.items():
            with_data[name].update(prediction, batch["target"])
            with_reference[name].update(prediction, predictions[reference])
    results = {}
    for name in models:
        results[name] = {
            **summarise(with_data[name].compute(), groups, prefix="pearson"),
            **summarise(with_reference[name].compute(), groups, prefix=f"pearson_vs_{reference}"),
        }
    return results


def markdown(results: dict[str, dict[str, dict]], reference: str, groups) -> str:
    lines = []
    for split, table in results.items():
        columns = ["pearson"] + [f"pearson/{g}" for g in groups] + [f"pearson_vs_{reference}", f"pearson_vs_{reference}/long-range"]
        header = ["model", "all tracks", *groups, f"r with {reference} model (all)", f"r with {reference} (long-range)"]
        lines += [f"**{split}** split (pooled Pearson per track, mean over tracks)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, values in table.items():
            lines.append("| " + " | ".join([name] + [f"{values[c]:.3f}" for c in columns]) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_runs(runs: dict[str, Path], full_pearson: dict[str, float], path: Path) -> None:
    """Figure 5's shape. Left: the first run (training from scratch), all and long-range tracks. Middle and
    right: the other runs (fine-tuning), zoomed, with the full-attention model's values as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from senformer.io import atomic_path
    from senformer.train.loop import read_log

    def curve(directory: Path, key: str):
        rows = [r for r in read_log(directory / "log.jsonl") if r["kind"] == "eval" and r.get(key) is not None]
        return [r["step"] for r in rows], [r[key] for r in rows]

    names = list(runs)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (("pearson", "all tracks"), ("pearson/long-range", "long-range tracks")):
        axes[0].plot(*curve(runs[names[0]], key), "o-", markersize=3, label=label)
    axes[0].set_title(names[0])
    for ax, key, title in zip(axes[1:], ("pearson", "pearson/long-range"), ("fine-tuning: all tracks", "fine-tuning: long-range tracks")):
        for name in names[1:]:
            ax.plot(*curve(runs[name], key), "o-", markersize=3, label=name)
        if key in full_pearson:
            ax.axhline(full_pearson[key], color="black", linestyle="--", linewidth=1, label="full attention")
        ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("validation Pearson r")
        ax.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--full", required=True, help="weights of the full-attention model")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=WEIGHTS")
    parser.add_argument("--splits", nargs="+", default=["valid", "test"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR", help="training run to plot")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference = "full"
    models = {
        reference: load_model(args.full).eval(),
        "bigbird zero-shot": load_model(args.full, overrides={"attention": "bigbird"}).eval(),
    }
    # Diagnostic: the full model with every attention output zeroed shows how much the tracks need attention.
    models["full, attention removed"] = load_model(args.full).eval()
    with torch.no_grad():
        for attention in models["full, attention removed"].attention_modules():
            attention.to_out.weight.zero_()
            attention.to_out.bias.zero_()
    for item in args.model:
        name, _, path = item.partition("=")
        models[name] = load_model(path).eval()
    started = time.perf_counter()
    results, groups = {}, {}
    for split in args.splits:
        source = BasenjiSource(args.data, split)
        groups = track_groups(args.data, source.num_tracks)
        results[split] = evaluate_models(models, reference, source, groups, args.batch_size)
    out = Path(args.out)
    record = {
        "results": results,
        "groups": {name: indices for name, indices in groups.items()},
        "models": {"full": args.full, "bigbird zero-shot": f"{args.full} with attention=bigbird",
                   "full, attention removed": f"{args.full} with every attention to_out set to 0",
                   **dict(item.split("=", 1) for item in args.model)},
        "attention": {name: model.config.attention for name, model in models.items()},
        "machine": {**machine_info(), "threads": args.threads},
        "seconds": time.perf_counter() - started,
    }
    atomic_write_text(out / "comparison.json", json.dumps(record, indent=2, default=float) + "\n")
    atomic_write_text(out / "comparison.md", markdown(results, reference, [g for g in groups]) + "\n")
    print(markdown(results, reference, [g for g in groups]))
    if args.run:
        first = args.splits[0]
        plot_runs({item.split("=", 1)[0]: Path(item.split("=", 1)[1]) for item in args.run},
                  results[first][reference], out / "curves.png")


if __name__ == "__main__":
    main()
