"""The study's results across seeds: :func:`summarise` (``study.json``'s content: mean ± SD over seeds, the
bootstrap intervals of each row's difference from row 1 and of the contrasts, the attention-matters check,
the training curves), and what is written from it: :func:`write_results` (``study.json``, ``table.csv``,
``summary.md``, the figures). The prose (``summary.md``, the write-up) is :mod:`.writeup`'s.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io import atomic_path, atomic_write_text, write_json
from .statistics import track_mean
from .evaluation import METRICS, PER_SEED, SUMS, evaluation_folder
from .runs import LR_ROWS, ROWS, StudySettings, _machine, study_runs
from .writeup import summary_markdown


# Across seeds --------------------------------------------------------------------------------------------
TABLE_METRICS = ("pooled", "pooled/long-range", "pooled/DNase/ATAC", "pooled/ChIP-Histone", "pooled/ChIP-TF",
                 "pooled/CAGE", "per_example", "per_example/long-range", "r_with_row1", "r_with_row1/long-range",
                 "beats_row1", "beats_row1/long-range")
ATTENTION_MATTERS = {"loss": 0.10, "seed_sds": 5.0}  # the study's premise: row 2 must lose this much on long-range tracks


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample SD (None for one value) and the values themselves."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return {"mean": float(np.mean(finite)) if finite else None,
            "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            "values": [None if v is None else float(v) for v in values]}


def bootstrap_pooled(weights: np.ndarray, model_sums: np.ndarray, target_sums: np.ndarray, bins: int) -> np.ndarray:
    """Pooled Pearson per track for every resample of the examples.

    Args:
        weights: (resamples, examples) how often each example is drawn.
        model_sums: (examples, tracks, 3) per example sum p, sum p^2, sum p*y; target_sums: (examples, tracks, 2).
    Returns:
        (resamples, tracks).
    """
    from ..metrics import pearson_from_sums

    model = np.einsum("be,etk->btk", weights, model_sums)
    target = np.einsum("be,etk->btk", weights, target_sums)
    count = weights.sum(1, keepdims=True) * bins
    return pearson_from_sums(count, model[..., 0], target[..., 0], model[..., 1], target[..., 1], model[..., 2])


def bootstrap_difference(per_seed: Mapping[int, Mapping[str, Any]], first: str, second: str,
                         tracks: Sequence[int] | None, resamples: int, seed: int = 0) -> dict[str, Any]:
    """Mean over seeds of ``first - second`` pooled Pearson (mean over ``tracks``, all when None) with a
    95% percentile interval from resampling the test examples (the same draw for every seed: one test set).

    ``per_seed[s]`` holds ``names``, ``model_sums`` (models, examples, tracks, 3), ``target_sums`` and ``bins``.
    """
    seeds = [s for s, sums in per_seed.items() if first in list(sums["names"]) and second in list(sums["names"])]
    if not seeds:
        return {"seeds": [], "difference": None, "low": None, "high": None}
    examples = per_seed[seeds[0]]["target_sums"].shape[0]
    generator = np.random.default_rng(seed)
    weights = generator.multinomial(examples, np.full(examples, 1.0 / examples), size=resamples).astype(np.float64)
    full = np.ones((1, examples))
    point, resampled = [], []
    for s in seeds:
        sums = per_seed[s]
        names = list(sums["names"])
        chosen = slice(None) if tracks is None else list(tracks)
        values = {}
        for draw, label in ((full, "point"), (weights, "resampled")):
            a = bootstrap_pooled(draw, sums["model_sums"][names.index(first)], sums["target_sums"], int(sums["bins"]))
            b = bootstrap_pooled(draw, sums["model_sums"][names.index(second)], sums["target_sums"], int(sums["bins"]))
            values[label] = track_mean(a[:, chosen]) - track_mean(b[:, chosen])
        point.append(values["point"][0])
        resampled.append(values["resampled"])
    average = np.mean(resampled, axis=0)
    low, high = np.percentile(average, [2.5, 97.5])
    return {"seeds": seeds, "difference": float(np.mean(point)), "low": float(low), "high": float(high)}


def read_curves(directory: Path) -> list[dict[str, Any]]:
    """Validation points of one run: step, pooled Pearson over all and over the long-range tracks."""
    log = directory / "log.jsonl"
    if not log.is_file():
        return []
    points = []
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("kind") == "eval":
            points.append({"step": record["step"], "pearson": record.get("pearson"),
                           "pearson/long-range": record.get("pearson/long-range")})
    return points


def track_sets(data: Mapping[str, Any]) -> dict[str, list[int] | None]:
    """The track sets rules may name, from synthetic.json: all, local, long-range and long-range/<signal>
    (a dataset without graded signals has the band only)."""
    long_range = [int(i) for i in data["long_range_tracks"]]
    signals = data.get("long_range_signals") or {"band": long_range}
    return {"all": None, "local": [i for i in range(len(data["tracks"])) if i not in long_range],
            "long-range": long_range, **{f"long-range/{signal}": list(tracks) for signal, tracks in signals.items()}}


def decisions(files: Sequence[Path], sets: Mapping[str, Any], settings: Mapping[str, Any],
              rules: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rule's verdict (:func:`.rules.decide`) from the compact per-seed ``files``; ``settings``: the
    study's settings as study.json keeps them (their steps fill the model names' fields)."""
    from .rules import decide
    from .statistics import read_per_seed

    names = {"full": settings["full_steps"], "short": settings["finetune_steps"],
             "long": settings["finetune_steps"] * settings["fresh_multiple"]}
    return decide(rules, read_per_seed(files), sets, names)


def recompute(results: str | os.PathLike, rules_file: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Every interval and verdict of a recorded study again, from its ``per_seed/`` files and the rules file;
    returns the decisions and the differences from what study.json recorded (empty: it reproduces)."""
    from .rules import read_rules_file, settings_digest

    results = Path(results)
    record = json.loads((results / "study.json").read_text(encoding="utf-8"))
    problems = []
    if record.get("rules", {}).get("sha256") != settings_digest(rules_file):
        problems.append(f"{rules_file} is not the rules file the run recorded (sha256 differs)")
    files = sorted((results / "per_seed").glob("seed-*.npz"))
    again = decisions(files, record["data"]["track_sets"], record["settings"], read_rules_file(rules_file))
    for old, new in zip(record.get("decisions", []), again):
        if old["verdict"] != new["verdict"] or old["statement"] != new["statement"]:
            problems.append(f"{old['name']}: recorded {old['verdict']!r}, recomputed {new['verdict']!r}")
        elif not np.allclose(_interval_numbers(old), _interval_numbers(new), atol=1e-9, equal_nan=True):
            problems.append(f"{old['name']}: the intervals differ")
    if len(record.get("decisions", [])) != len(again):
        problems.append(f"study.json has {len(record.get('decisions', []))} decisions, the rules give {len(again)}")
    return again, problems


def _interval_numbers(decision: Mapping[str, Any]) -> list[float]:
    numbers = decision["numbers"]
    parts = numbers["contrasts"] if decision["kind"] == "ordered" else [numbers]
    return [np.nan if part[kind][bound] is None else part[kind][bound]
            for part in parts for kind in ("paired", "bootstrap") for bound in ("difference", "low", "high")]


def summarise(out: str | os.PathLike, settings: StudySettings, rules: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``study.json``'s content from every seed's evaluation: per model the mean +- SD over seeds (with the
    values), bootstrap intervals of the differences, the attention-matters check, the contrasts and curves;
    with ``rules`` (the settings file's content) every rule's verdict too."""
    out = Path(out)
    evaluations = {seed: json.loads((evaluation_folder(out, seed) / METRICS).read_text(encoding="utf-8"))
                   for seed in settings.seeds}
    sums = {}
    for seed in settings.seeds:
        with np.load(evaluation_folder(out, seed) / SUMS) as arrays:
            sums[seed] = {key: arrays[key] for key in arrays.files}
    first = evaluations[settings.seeds[0]]
    long_range = first["long_range_tracks"]
    reference = first["models"][0]["name"]
    models = []
    for entry in first["models"]:
        name = entry["name"]
        by_seed = {seed: next((m for m in evaluations[seed]["models"] if m["name"] == name), None)
                   for seed in settings.seeds}
        present = [seed for seed, m in by_seed.items() if m is not None]
        keys = list(dict.fromkeys(k for seed in present for k in by_seed[seed]["metrics"]))
        summary = {key: spread([by_seed[seed]["metrics"].get(key) for seed in present]) for key in keys}
        differences = {}
        if name != reference:
            for label, tracks in (("pooled", None), ("pooled/long-range", long_range)):
                differences[label] = bootstrap_difference(sums, name, reference, tracks, settings.bootstrap)
        models.append({key: entry[key] for key in ("name", "key", "row", "steps", "lr_factor")}
                      | {"description": ROWS[entry["key"]][1], "seeds": present, "metrics": summary,
                         "minus_row1": differences})
    by_name = {m["name"]: m for m in models}
    short, long = settings.finetune_steps, settings.fresh_steps
    contrasts = {}
    compared = {
        "fresh layer, ours (row 5 - row 4)": (f"fresh-ours@{short}", f"finetune@{short}"),
        "no relative positions (row 6 - row 5)": (f"fresh-report@{short}", f"fresh-ours@{short}"),
        "no relative positions, longer training (row 6 - row 5)": (f"fresh-report@{long}", f"fresh-ours@{long}"),
        "training every weight (row 7 - row 6)": (f"report-all@{short}", f"fresh-report@{short}"),
        "sparsity alone, zero-shot (row 3 - row 1)": ("zero-shot", reference),
    }
    if long == short:  # rows 5-7 trained row 4's steps only: no longer training to compare
        del compared["no relative positions, longer training (row 6 - row 5)"]
    for label, (a, b) in compared.items():
        if a in by_name and b in by_name:
            contrasts[label] = {"first": a, "second": b, **{
                metric: bootstrap_difference(sums, a, b, tracks, settings.bootstrap)
                for metric, tracks in (("pooled", None), ("pooled/long-range", long_range))}}
    full_long = by_name[reference]["metrics"]["pooled/long-range"]
    control_long = by_name["control"]["metrics"]["pooled/long-range"]
    loss = None if full_long["mean"] is None or control_long["mean"] is None else full_long["mean"] - control_long["mean"]
    seed_sd = full_long["sd"]
    check = {"loss_on_long_range": loss, "full_model_seed_sd": seed_sd, "required_loss": ATTENTION_MATTERS["loss"],
             "required_seed_sds": ATTENTION_MATTERS["seed_sds"],
             "met": bool(loss is not None and loss >= ATTENTION_MATTERS["loss"]
                         and (seed_sd is None or loss > ATTENTION_MATTERS["seed_sds"] * seed_sd)),
             "note": None if seed_sd is not None else "one seed: the SD criterion needs the full study's 3 seeds"}
    curves = {run.name: {"key": run.key, "seed": run.seed, "points": read_curves(out / "runs" / run.name),
                         "lr_factor": _lr_factor(run.name)}
              for run in study_runs(out, settings)}
    data = json.loads((out / "data" / "synthetic.json").read_text(encoding="utf-8"))
    coverage = attended_blocks(json.loads((out / "model.json").read_text(encoding="utf-8")),
                               int(data["settings"]["sequence_length"]) // 128) if settings.design == "issue-23" else None
    plateau = {"rule": dict(settings.plateau), "stopped_at": {
        str(run.seed): max((p["step"] for p in curves[run.name]["points"]), default=None)
        for run in study_runs(out, settings) if run.stop is not None}} if settings.plateau else None
    return {
        "settings": settings.to_dict(), "data": {"size": data["size"], "seed": data["seed"], "settings": data["settings"],
                                                 "long_range_tracks": long_range, "test_examples": first["examples"],
                                                 **({"track_sets": track_sets(data)} if rules else {})},
        "model": json.loads((out / "model.json").read_text(encoding="utf-8")),
        "reference": reference, "models": models, "contrasts": contrasts, "attention_matters": check,
        "receptive_field": {seed: evaluations[seed]["receptive_field"] for seed in settings.seeds},
        "curves": curves, "machine": _machine(), "estimate": _estimate_summary(out / "estimate.json"),
        **({"plateau": plateau} if plateau else {}),
        **({"attended_blocks": coverage} if coverage else {}),
        **({"decisions": decisions([evaluation_folder(out, seed) / PER_SEED for seed in settings.seeds],
                                   track_sets(data), settings.to_dict(), rules)} if rules else {}),
    }


def attended_blocks(model: Mapping[str, Any], positions: int) -> dict[str, Any]:
    """How much of the input a sparse query block reaches in the first layer: per head and across all heads
    together (random blocks differ per head, so the heads jointly see more than any one does)."""
    from ..model.attention import make_block_pattern

    pattern = make_block_pattern(positions, int(model["heads"]), block_size=int(model["block_size"]),
                                 num_window_blocks=int(model["num_window_blocks"]),
                                 num_global_blocks=int(model["num_global_blocks"]),
                                 num_random_blocks=int(model["num_random_blocks"]),
                                 seed=int(model.get("attention_seed", 0)))
    mask = pattern.block_mask()[:, pattern.query_blocks]  # (heads, sparse query blocks, blocks)
    return {"blocks": pattern.num_blocks, "per_head": float(mask.sum(-1).float().mean()),
            "across_heads": float(mask.any(0).sum(-1).float().mean())}


def _estimate_summary(path: Path) -> dict[str, Any] | None:
    """The projection written by :func:`estimate` before the run, when there is one."""
    if not path.is_file():
        return None
    values = json.loads(path.read_text(encoding="utf-8"))
    return {key: values[key] for key in ("for", "steps_measured", "examples_per_second", "inference_examples_per_second",
                                         "total_job_minutes", "projected_minutes", "parallel") if key in values}


def _lr_factor(name: str) -> float | None:
    for part in name.split("-"):
        if part.startswith("lr"):
            return float(part[2:])
    return None


# Results: study.json, table.csv, figures -------------------------------------------------------------------
def write_results(record: Mapping[str, Any], directory: str | os.PathLike, per_seed_files: Sequence[Path] = ()) -> Path:
    """``study.json``, ``table.csv``, ``summary.md`` (for the README) and the figures (``curves.png``,
    ``per_example.png``, ``receptive_field.png``) into ``directory``; returns the ``study.json`` path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "table.csv", table_frame(record).to_csv(index=False, float_format="%.4f"))
    plot_curves(record, directory / "curves.png")
    plot_per_example(record, directory / "per_example.png")
    plot_receptive_field(record, directory / "receptive_field.png")
    atomic_write_text(directory / "summary.md", summary_markdown(record))
    for source in per_seed_files:
        # The per-seed files beside study.json: every interval recomputes from them (benchmarks/study/recompute.py).
        (directory / "per_seed").mkdir(exist_ok=True)
        target = directory / "per_seed" / f"{source.parent.name}.npz"
        with atomic_path(target) as temporary:
            shutil.copyfile(source, temporary)
    path = directory / "study.json"
    write_json(path, dict(record), indent=1)
    return path


def table_frame(record: Mapping[str, Any]):
    """One line per model: row, steps, seeds, per metric mean / SD / the seed values, and the difference
    from row 1 with its bootstrap interval."""
    import pandas as pd

    lines = []
    for model in record["models"]:
        line = {"model": model["name"], "row": model["row"], "description": model["description"],
                "steps": "" if model["steps"] is None else str(model["steps"]), "lr_factor": model["lr_factor"],
                "seeds": " ".join(map(str, model["seeds"]))}
        for metric in TABLE_METRICS:
            value = model["metrics"].get(metric)
            if value is None:
                continue
            line[f"{metric} mean"], line[f"{metric} sd"] = value["mean"], value["sd"]
            line[f"{metric} values"] = " ".join("nan" if v is None else f"{v:.4f}" for v in value["values"])
        for metric, difference in model["minus_row1"].items():
            line[f"{metric} minus row 1"] = difference["difference"]
            line[f"{metric} minus row 1 low"], line[f"{metric} minus row 1 high"] = difference["low"], difference["high"]
        lines.append(line)
    return pd.DataFrame(lines)


def _figure(columns: int, width: float = 5.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)


def _save(figure, path: Path) -> None:
    from ..io import save_figure

    figure.tight_layout()
    save_figure(path, figure)


def plot_curves(record: Mapping[str, Any], path: Path) -> Path:
    """Figure 5: validation Pearson on the long-range tracks against the step. Left: row 1 from scratch;
    middle: the fine-tuning rows (mean over seeds) against row 1's level; right: the learning-rate runs."""
    plt, figure, axes = _figure(3)
    curves = record["curves"]
    colours = {"full": "black", "finetune": "tab:blue", "finetune-distill": "tab:cyan", "fresh-ours": "tab:green",
               "fresh-report": "tab:red", "report-all": "tab:purple"}
    metric = "pearson/long-range"

    def mean_curve(key: str, lr_factor=None):
        runs = [c for c in curves.values() if c["key"] == key and c["lr_factor"] == lr_factor and c["points"]]
        if not runs:
            return None
        steps = sorted(set.intersection(*(set(p["step"] for p in c["points"]) for c in runs)))
        values = [np.mean([next(p[metric] for p in c["points"] if p["step"] == s) for c in runs]) for s in steps]
        return steps, values

    for name, curve in curves.items():
        if curve["key"] == "full" and curve["points"]:
            steps = [p["step"] for p in curve["points"]]
            axes[0, 0].plot(steps, [p[metric] for p in curve["points"]], "-", color="black", linewidth=1,
                            label=f"long-range, seed {curve['seed']}")
            axes[0, 0].plot(steps, [p["pearson"] for p in curve["points"]], ":", color="grey", linewidth=1,
                            label=f"all tracks, seed {curve['seed']}")
    axes[0, 0].set_title("row 1: full attention from scratch", fontsize=9)
    full = mean_curve("full")
    for key in ("finetune", "finetune-distill", "fresh-ours", "fresh-report", "report-all"):
        line = mean_curve(key)
        if line:
            axes[0, 1].plot(*line, "o-", markersize=3, color=colours[key], label=f"row {ROWS[key][0]} {key}")
    for key in LR_ROWS:
        seed = record["settings"]["seeds"][0]
        base = [c for c in curves.values() if c["key"] == key and c["seed"] == seed and c["lr_factor"] is None]
        if base and base[0]["points"]:
            points = [p for p in base[0]["points"] if p["step"] <= record["settings"]["finetune_steps"]]
            axes[0, 2].plot([p["step"] for p in points], [p[metric] for p in points], "o-", markersize=3,
                            color=colours[key], label=f"{key} lr x1")
        for factor, style in zip(record["settings"]["lr_factors"], ("--", ":")):
            line = mean_curve(key, float(f"{factor:.3g}"))
            if line:
                axes[0, 2].plot(*line, style, color=colours[key], label=f"{key} lr x{factor:.3g}")
    for ax in axes[0, 1:]:
        if full:
            ax.axhline(full[1][-1], color="black", linestyle="--", linewidth=1, label="row 1 (end)")
    axes[0, 1].set_title("fine-tuning rows (mean over seeds)", fontsize=9)
    axes[0, 2].set_title("learning rate, first seed, row 4's steps", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.set_ylabel("validation pooled Pearson, long-range tracks")
        ax.legend(fontsize=6)
    _save(figure, path)
    return path


def plot_per_example(record: Mapping[str, Any], path: Path) -> Path:
    """Figure 6 in summary: per row, the share of test examples where it beats row 1 (per-example Pearson)
    and the correlation of its predictions with row 1's, on all and on the long-range tracks."""
    plt, figure, axes = _figure(2, width=7.0)
    models = [m for m in record["models"] if m["name"] != record["reference"] and m["lr_factor"] is None]
    names = [m["name"] for m in models]
    positions = np.arange(len(names))
    for ax, prefix, title in ((axes[0, 0], "beats_row1", "share of test examples where the row beats row 1"),
                              (axes[0, 1], "r_with_row1", "correlation of predictions with row 1's")):
        for offset, (suffix, label) in enumerate((("", "all tracks"), ("/long-range", "long-range tracks"))):
            means = [m["metrics"].get(prefix + suffix, {}).get("mean") for m in models]
            sds = [m["metrics"].get(prefix + suffix, {}).get("sd") or 0.0 for m in models]
            ax.bar(positions + (offset - 0.5) * 0.4, [np.nan if v is None else v for v in means], 0.4, yerr=sds,
                   label=label, capsize=2)
        ax.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    axes[0, 0].axhline(0.5, color="black", linewidth=0.5)
    _save(figure, path)
    return path


def plot_receptive_field(record: Mapping[str, Any], path: Path) -> Path:
    """Figure 8 in profile: mean |change| of the prediction against the distance to the mutated base, for
    rows 1, 3 and 6 (first seed); the dotted line marks the conv tower's reach."""
    plt, figure, axes = _figure(1, width=6.0)
    ax = axes[0, 0]
    # The first seed's profiles (keys are strings once study.json has been read back).
    profiles = {str(seed): value for seed, value in record["receptive_field"].items()}
    first = profiles[str(record["settings"]["seeds"][0])]
    for key, colour in (("full", "black"), ("zero-shot", "tab:blue"), ("fresh-report", "tab:red")):
        if key in first:
            profile = first[key]
            ax.plot(profile["distance_bins"], profile["mean_change"], "o-", markersize=3, color=colour,
                    label=f"row {ROWS[key][0]} {profile['model']} (beyond conv reach: {profile['beyond_conv_reach_share']:.0%})")
    ax.set_yscale("log")
    ax.set_xlabel("distance from the mutated base (128-bp bins)")
    ax.set_ylabel("mean |change| of the prediction")
    ax.legend(fontsize=7)
    _save(figure, path)
    return path
