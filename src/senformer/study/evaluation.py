"""Evaluating one seed's trained models: the models of a seed in table order (:func:`model_entries`, row 2
being row 1 with every attention output projection at its fresh zero), :func:`evaluate_seed`, which scores
them all on the test split with :func:`senformer.evaluate.evaluate` and keeps per-example sums for the
bootstrap and the receptive-field profiles (Figure 8), and the job that runs it in its own one-thread process
(``python -m senformer.study evaluate OUT SEED``, :func:`main`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import UserError
from ..io import write_json, write_npz
from .statistics import record_sums, write_per_seed
from .runs import (DESIGN_FRESH, EVALUATION, FRESH_ROWS, HEAD, LR_ROWS, ROW_1, ROWS, RUN, StudySettings, _one_thread_environment,
                   finished, produced, run_name, snapshot_path, study_runs)

METRICS, SUMS = "metrics.json", "sums.npz"  # one seed's evaluation: the metrics, the per-example sums
PER_SEED = "per_seed.npz"  # the compact per-record sums every interval recomputes from (statistics.py)


# Evaluation of one seed ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """One evaluated model: ``key`` (its row in :data:`ROWS`), ``steps`` trained (None: no training of its
    own), ``lr_factor`` (None: the row's learning rate), and how to load it."""

    name: str
    key: str
    steps: int | None
    lr_factor: float | None
    weights: str
    overrides: Mapping[str, Any] | None = None
    skip: str | None = None


# Row 2, "attention removed", as the README's control row: every attention output projection (to_out) at
# the model's own initialisation, zero, so each block adds nothing from attention. It is also what a fresh
# attention layer (rows 5-7) contributes at step 0.
ATTENTION_REMOVED_SKIP = r"^transformer\.\d+\.attention\.to_out\."


def model_entries(out: Path, settings: StudySettings, seed: int) -> list[ModelEntry]:
    """The models evaluated for ``seed``, in table order."""
    runs = out / "runs"
    row1 = str(runs / run_name(ROW_1, seed) / "weights")
    short = settings.finetune_steps
    entries = [
        ModelEntry(f"full@{settings.full_steps}", "full", settings.full_steps, None, row1),
        ModelEntry("control", "control", None, None, row1, skip=ATTENTION_REMOVED_SKIP),
        ModelEntry("zero-shot", "zero-shot", None, None, row1, overrides={"attention": "bigbird"}),
        ModelEntry(f"finetune@{short}", "finetune", short, None, str(runs / run_name("finetune", seed) / "weights")),
        ModelEntry(f"finetune-distill@{short}", "finetune-distill", short, None,
                   str(runs / run_name("finetune-distill", seed) / "weights")),
    ]
    # Rows 2 and 3 train nothing: every seed's row 1 gets them (the attention-matters rule needs every seed).
    entries = [entry for entry in entries if entry.key in ("control", "zero-shot") or seed in settings.seeds_of(entry.key)]
    # Each key's own run (the learning-rate runs of rows 5 and 6 are named apart and read below).
    ran = {run.key: run for run in study_runs(out, settings) if run.name == run_name(run.key, seed)}
    for key in (*FRESH_ROWS, *DESIGN_FRESH, "fresh-ours-deep"):
        if key not in ran:
            continue
        run = ran[key]
        directory = runs / run.name
        # Each phase its run trains to is reported (issue 14's rows 5-7 at row 4's steps too).
        for steps in run.phases:
            # The run's last phase is its final weights; each earlier one was kept as a snapshot.
            weights = directory / "weights" if steps == run.phases[-1] else snapshot_path(directory, steps)
            entries.append(ModelEntry(f"{key}@{steps}", key, steps, None, str(weights)))
    for key in ("no-attention", "full-deep"):
        if key in ran:
            entries.append(ModelEntry(f"{key}@{settings.full_steps}", key, settings.full_steps, None,
                                      str(runs / run_name(key, seed) / "weights")))
    if "full-plateau" in ran:
        entries.append(ModelEntry("full-plateau", "full-plateau", None, None,
                                  str(runs / run_name("full-plateau", seed) / "weights")))
    if seed == settings.seeds[0]:
        for factor in settings.lr_factors:
            for key in LR_ROWS:
                entries.append(ModelEntry(f"{key}@{short} lr x{factor:.3g}", key, short, factor,
                                          str(runs / run_name(key, seed, factor) / "weights")))
    # Each model's per-example sums are stored under its name (evaluation/seed-<S>/sums.npz): names are keys.
    assert len({entry.name for entry in entries}) == len(entries), [entry.name for entry in entries]
    return entries


def _load(entry: ModelEntry):
    from ..weights import load_model

    return load_model(entry.weights, overrides=entry.overrides, skip=entry.skip).eval()


def long_range_tracks(data: Path) -> list[int]:
    return [int(i) for i in json.loads((data / "synthetic.json").read_text(encoding="utf-8"))["long_range_tracks"]]


def evaluate_seed(out: str | os.PathLike, seed: int, into: str | os.PathLike) -> Path:
    """Score every model of ``seed`` on the test split; write ``metrics.json`` and ``sums.npz`` (per-example
    sums for the bootstrap) into ``into`` (``evaluation/seed-<S>.partial``: see :func:`evaluation_output`)."""
    import torch

    from ..analysis.compare import compare_scores, group_scores
    from ..data.basenji import BasenjiDataset
    from ..evaluate import evaluate
    from ..metrics import StreamingPearson, pearson_from_sums

    torch.set_num_threads(1)
    out = Path(out)
    settings = StudySettings.from_dict(json.loads((out / "study-settings.json").read_text(encoding="utf-8")))
    data = out / "data"
    entries = model_entries(out, settings, seed)
    models = {entry.name: _load(entry) for entry in entries}
    reference = entries[0].name
    dataset = BasenjiDataset(data, "test")
    num_tracks = int(json.loads((data / "statistics.json").read_text(encoding="utf-8"))["num_targets"])

    # What evaluate() does not keep, gathered from its own predictions as it scores them: each example's
    # sums (pooled Pearson over any resample of the examples, for the bootstrap) and the correlation of every
    # model's predictions with row 1's.
    model_parts: list[np.ndarray] = []  # (models, batch, tracks, 3): sum p, sum p^2, sum p*y per example
    target_parts: list[np.ndarray] = []  # (batch, tracks, 2): sum y, sum y^2
    with_reference = {name: StreamingPearson(num_tracks) for name in models}
    bins = [0]
    # The compact per-seed form (statistics.write_per_seed): each record's sums of values shifted by the
    # first batch's track means (any fixed shift leaves Pearson unchanged and keeps float32 precise).
    shifts: dict[str, np.ndarray] = {}
    record_parts: dict[str, list[np.ndarray]] = {name: [] for name in models}

    def keep_sums(predictions: Mapping[str, torch.Tensor], target: torch.Tensor) -> None:
        target = target.double().numpy()
        bins[0] = target.shape[1]
        shifts.setdefault("target", target.mean((0, 1)))
        for name in models:
            prediction = predictions[name].double().numpy()
            shifts.setdefault(name, prediction.mean((0, 1)))
            record_parts[name].append(record_sums(prediction, target, shifts[name], shifts["target"]))
        target_parts.append(np.stack([target.sum(1), (target * target).sum(1)], axis=-1))
        reference_prediction = predictions[reference].double().numpy()
        batch_sums = []
        for name in models:
            prediction = predictions[name].double().numpy()
            batch_sums.append(np.stack([prediction.sum(1), (prediction * prediction).sum(1),
                                        (prediction * target).sum(1)], axis=-1))
            with_reference[name].update(prediction, reference_prediction)
        model_parts.append(np.stack(batch_sums))

    result = evaluate(models, dataset, HEAD, batch_size=settings.test_batch_size, progress=False,
                      on_predictions=keep_sums)
    tracks = result.tracks
    groups = [str(g) for g in tracks["assay_group"]]
    long_range = long_range_tracks(data)
    reach = ["long-range" if i in long_range else "local" for i in range(len(groups))]
    examples, bins = result.examples, bins[0]
    model_sums = np.concatenate(model_parts, axis=1)
    target_sums = np.concatenate(target_parts, axis=0)
    for index, name in enumerate(models):
        summed = model_sums[index].sum(0)
        pooled = pearson_from_sums(examples * bins, summed[:, 0], target_sums[..., 0].sum(0), summed[:, 1],
                                   target_sums[..., 1].sum(0), summed[:, 2])
        if not np.allclose(pooled, result.models[name].pooled, atol=1e-6, equal_nan=True):
            raise RuntimeError(f"{name}: the per-example sums disagree with evaluate()'s pooled Pearson")

    reference_scores = result.models[reference].per_example
    metrics: dict[str, Any] = {}
    for entry in entries:
        model_result = result.models[entry.name]
        pooled = model_result.pooled
        per_example = model_result.per_example
        scores = group_scores(per_example, groups)
        reach_scores = group_scores(per_example, reach)
        values = {
            "pooled": _nanmean(pooled),
            "pooled/long-range": _nanmean(pooled[long_range]),
            **{f"pooled/{group}": _nanmean(pooled[[g == group for g in groups]]) for group in dict.fromkeys(groups)},
            "per_example": _nanmean(scores["all"]),
            "per_example/long-range": _nanmean(reach_scores["long-range"]),
            **{f"per_example/{group}": _nanmean(scores[group]) for group in dict.fromkeys(groups)},
        }
        if entry.name != reference:
            between = with_reference[entry.name].compute()
            for grouping, labels in (("group", groups), ("reach", reach)):
                table = compare_scores(reference_scores, per_example, labels, names=("row1", "model"),
                                       prediction_correlation=between)
                for row in table.to_dict("records"):
                    suffix = "" if row["group"] == "all" else f"/{row['group']}"
                    if grouping == "reach" and row["group"] == "all":
                        continue
                    values[f"r_with_row1{suffix}"] = _finite(row["prediction_correlation"])
                    values[f"score_r_with_row1{suffix}"] = _finite(row["correlation"])
                    values[f"beats_row1{suffix}"] = _finite(row["model_win_share"])
        metrics[entry.name] = values

    record = {
        "seed": seed, "examples": examples, "bins": bins, "tracks": num_tracks, "groups": groups,
        "long_range_tracks": long_range,
        "models": [{**dataclasses.asdict(entry), "row": ROWS[entry.key][0], "metrics": metrics[entry.name]}
                   for entry in entries],
        "receptive_field": _receptive_fields(models, entries, dataset, settings),
    }
    target = Path(into) / METRICS
    write_npz(target.with_name(SUMS), names=np.array([e.name for e in entries]), model_sums=model_sums,
              target_sums=target_sums, bins=np.array(bins), example_index=result.models[reference].example_index)
    write_per_seed(target.with_name(PER_SEED), {name: np.concatenate(parts) for name, parts in record_parts.items()},
                   bins, seed)
    write_json(target, record, indent=1)
    return target


def _receptive_fields(models: Mapping[str, Any], entries: Sequence[ModelEntry], dataset, settings: StudySettings) -> dict:
    """Figure 8 for rows 1, 3 and 6 (the longest-trained): mean |change| of the prediction against the
    distance (in 128-bp bins) between a mutated base and the output bin, on real test sequences, and the
    share of the change outside the conv tower's reach (only attention can carry it there)."""
    import torch

    from ..analysis.receptive_field import conv_reach_mask, receptive_field
    from ..sequence import one_hot_to_tokens

    examples = []
    for example in dataset:
        if len(examples) == settings.receptive_field_sequences:
            break
        examples.append(example["sequence"])
    tokens = one_hot_to_tokens(torch.stack(examples))  # (sequences, bp); N where the one-hot is all zeros
    reports = [e for e in entries if e.key == "fresh-report" and e.lr_factor is None]
    chosen = {"full": entries[0].name, "zero-shot": "zero-shot",
              "fresh-report": max(reports, key=lambda e: e.steps).name if reports else None}
    # A seed that runs only the conclusion rows (issue 23's other_seeds) has no zero-shot model.
    chosen = {key: name for key, name in chosen.items() if name in models}
    profiles = {}
    for key, name in chosen.items():
        model = models[name]
        field_ = receptive_field(model, tokens, num_positions=settings.receptive_field_positions,
                                 alternatives="random", head=HEAD, batch_size=settings.test_batch_size, progress=False)
        bin_size = model.config.bin_size
        distance = np.rint(np.abs(field_.bin_centers[None, :] - field_.positions[:, None]) / bin_size).astype(int)
        change = field_.change
        reach = conv_reach_mask(model, field_.sequence_length, field_.positions)
        present = np.unique(distance)
        profile = [float(change[distance == d].mean()) for d in present]
        profiles[key] = {"model": name, "distance_bins": present.tolist(), "mean_change": profile,
                         "beyond_conv_reach_share": float(change[~reach].sum() / max(change.sum(), 1e-300))}
    return profiles


def _nanmean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# The evaluation job, in its own one-thread process -------------------------------------------------------
def evaluation_output(out: Path, settings: StudySettings, seed: int):
    """One seed's evaluation (``evaluation/seed-<S>/``: :data:`METRICS`, :data:`SUMS`) as one Output: its
    fingerprint is the study's settings, the seed's models by name and what each of the seed's runs produced,
    so an evaluation of other models or of other weights is never reused."""
    from ..outputs import DIRECTORY, Output

    inputs = {run.name: produced(out / "runs" / run.name, RUN) for run in study_runs(out, settings) if run.seed == seed}
    return Output(evaluation_folder(out, seed), DIRECTORY, command=EVALUATION, inputs=inputs, settings={
        "seed": seed, "models": [entry.name for entry in model_entries(out, settings, seed)],
        "study": settings.to_dict(), "files": [METRICS, SUMS, PER_SEED]})


def evaluation_folder(out: Path, seed: int) -> Path:
    return out / "evaluation" / f"seed-{seed}"


def _evaluate_in_subprocess(out: Path, seed: int, log: Callable[[str], None]) -> str:
    """Evaluate one seed in its own one-thread process into its Output's partial folder (skipped when up to
    date; an evaluation of other runs is replaced)."""
    settings = StudySettings.from_dict(json.loads((out / "study-settings.json").read_text(encoding="utf-8")))
    output = evaluation_output(out, settings, seed)
    if (finished(output.path, EVALUATION) or {}).get("fingerprint") not in (None, output.fingerprint):
        shutil.rmtree(output.path)
    with output:
        if output.up_to_date:
            return "skipped (done)"
        folder = output.start()
        transcript = output.path.with_name(f"seed-{seed}.out")
        command = [sys.executable, "-m", "senformer.study", "evaluate", str(out), str(seed), str(folder)]
        with open(transcript, "w", encoding="utf-8") as stream:
            status = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT,
                                    env=_one_thread_environment()).returncode
        if status != 0:
            raise UserError(f"evaluation of seed {seed} failed (exit {status}); see {transcript}")
        output.finish()
    log(f"evaluate-seed{seed}: done")
    return "evaluated"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m senformer.study evaluate OUT SEED INTO``: the study's own evaluation job (a subprocess)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 4 or arguments[0] != "evaluate":
        print("usage: python -m senformer.study evaluate OUT SEED INTO", file=sys.stderr)
        return 2
    print(evaluate_seed(arguments[1], int(arguments[2]), arguments[3]))
    return 0
