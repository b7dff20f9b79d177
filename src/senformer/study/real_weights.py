"""The accuracy study on real weights (issue 23 item 4): rows 3-6 on converted Enformer weights, scored by
distillation from the unmodified model on held-out chromosomes of a real genome.

What it measures, and nothing more: how closely each sparse variant reproduces the unmodified model's own
predictions (its *teacher correlation*: pooled Pearson over the test windows' bins, per track, mean over
the tracks), when only its attention layers are trained to match the teacher. It says nothing about accuracy
against experimental data, which the teacher's own error bounds.

- The teacher: the weights as converted, with full attention, unchanged.
- Data: windows of ``sequence_length`` bp tiled along the genome's chromosomes (a window with more than 1% N
  is skipped); ``test_chromosomes`` and ``valid_chromosomes`` are held out, every other chromosome trains.
  Targets are the teacher's outputs of every ``track_step``-th human track, written as a Basenji2 dataset
  (``OUT/data``), so the rows train and score through ``senformer train`` / :func:`senformer.evaluate.evaluate`.
- Rows (each attention-only, the rest frozen, the same steps, learning rate and data order per seed):
  3 zero-shot: the teacher's weights run with ``bigbird`` (relative positions), no training;
  4 finetune: row 3 fine-tuned; 5 fresh-ours: fresh ``bigbird`` layers with relative positions;
  6 fresh-report: fresh report layers (no relative positions, key size dim / heads = 192).
- Output: ``OUT/real-weights.json`` (per row and seed the teacher correlation overall and per assay group;
  row 6 - row 5 and row 5 - row 4 with a paired interval over seeds and a two-level bootstrap) and
  ``OUT/real-weights.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UserError
from ..io import atomic_write_text, write_json

HEAD = "human"
ROWS = {"zero-shot": "3", "finetune": "4", "fresh-ours": "5", "fresh-report": "6"}
TRAINED = ("finetune", "fresh-ours", "fresh-report")
CONTRASTS = {"no relative positions (row 6 - row 5)": ("fresh-report", "fresh-ours"),
             "fresh against trained layers (row 5 - row 4)": ("fresh-ours", "finetune")}


@dataclass(frozen=True)
class RealWeightsSettings:
    """The protocol's settings (defaults: the published geometry and a run of a few GPU-hours)."""

    sequence_length: int = 196_608
    test_chromosomes: tuple[str, ...] = ("chr8",)
    valid_chromosomes: tuple[str, ...] = ("chr9",)
    records: dict[str, int] = field(default_factory=lambda: {"train": 2048, "valid": 64, "test": 256})
    track_step: int = 19  # every 19th human track: 280 of 5,313, all assay groups
    steps: int = 2000
    learning_rate: float = 1e-4
    warmup_steps: int = 100
    batch_size: int = 1
    seeds: tuple[int, ...] = (0, 1, 2)
    resamples: int = 2000
    device: str = "auto"
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. a shorter target_length for tests

    def __post_init__(self) -> None:
        object.__setattr__(self, "test_chromosomes", tuple(self.test_chromosomes))
        object.__setattr__(self, "valid_chromosomes", tuple(self.valid_chromosomes))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        problems = []
        if set(self.test_chromosomes) & set(self.valid_chromosomes):
            problems.append("a chromosome cannot be both test and valid")
        for name in ("steps", "track_step", "batch_size", "resamples", "sequence_length"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if any(int(self.records.get(split, 0)) < 1 for split in ("train", "valid", "test")):
            problems.append(f"records {self.records} needs at least 1 train, valid and test window")
        if not self.seeds:
            problems.append("at least one seed")
        if problems:
            raise UserError("invalid real-weights settings: " + "; ".join(problems))


def _windows(genome, settings: RealWeightsSettings) -> dict[str, list[tuple[str, int, int]]]:
    """Split -> windows (chrom, start, end), evenly spread along the split's chromosomes, at most 1% N."""
    from ..data.genome import Interval

    chromosomes = {"test": [c for c in settings.test_chromosomes], "valid": [c for c in settings.valid_chromosomes]}
    held_out = set(chromosomes["test"]) | set(chromosomes["valid"])
    chromosomes["train"] = [name for name in genome.sizes if name not in held_out]
    length = settings.sequence_length
    chosen: dict[str, list[tuple[str, int, int]]] = {}
    for split, names_ in chromosomes.items():
        missing = [name for name in names_ if name not in genome]
        if missing:
            raise UserError(f"{split} chromosome(s) {', '.join(missing)} are not in the FASTA")
        candidates = [(name, start, start + length) for name in names_
                      for start in range(0, genome.sizes[genome.resolve(name)] - length + 1, length)]
        wanted = int(settings.records[split])
        picks = []
        # Evenly spaced over the candidates, then the next ones, until enough pass the N filter.
        for index in sorted(range(len(candidates)), key=lambda i: (i * wanted) % max(len(candidates), 1)):
            chrom, start, end = candidates[index]
            text = genome.fetch(Interval(genome.resolve(chrom), start, end))
            if text.upper().count("N") <= 0.01 * length:
                picks.append(candidates[index])
            if len(picks) == wanted:
                break
        if not picks:
            raise UserError(f"no {length:,}-bp window of the {split} chromosomes {', '.join(names_)} has at most 1% N")
        chosen[split] = sorted(picks, key=lambda window: candidates.index(window))
    return chosen


def _student_init(weights: str, settings: RealWeightsSettings, out: Path):
    """The teacher (as converted, full attention) with its human head cut to every ``track_step``-th track:
    the starting weights of every row and the model whose outputs are the targets. Returns (model, tracks)."""
    from ..model.enformer import Enformer
    from ..weights import load_model, save_model

    teacher = load_model(weights, overrides={"attention": "full", **settings.model_overrides}).eval()
    if HEAD not in teacher.heads:
        raise UserError(f"{weights} has no {HEAD!r} head (heads: {', '.join(teacher.heads)})")
    tracks = list(range(0, teacher.heads[HEAD].out_features, settings.track_step))
    config = teacher.config.replace(output_heads={HEAD: len(tracks)})
    student = Enformer(config)
    state = {name: value for name, value in teacher.state_dict().items() if not name.startswith("heads.")}
    head = teacher.heads[HEAD]
    state[f"heads.{HEAD}.weight"] = head.weight.detach()[tracks].clone()
    state[f"heads.{HEAD}.bias"] = head.bias.detach()[tracks].clone()
    student.load_state_dict(state)
    save_model(student.eval(), out / "teacher")
    return student.eval(), tracks


def _write_data(genome, student, windows, settings: RealWeightsSettings, folder: Path, tracks: Sequence[int]) -> None:
    """The teacher's outputs on every window, as a Basenji2 dataset (float16 targets, like Basenji2)."""
    import pandas as pd
    import torch

    from ..data.basenji import BasenjiWriter
    from ..data.genome import Interval
    from ..data.tracks import head_track_table
    from ..sequence import one_hot_array

    from ..device import resolve_device
    from ..inference import predict_batch

    device = resolve_device(settings.device)
    student = student.to(device)  # the teacher runs where the rows train: hg38's windows need the GPU
    config = student.config
    bins = config.output_length(settings.sequence_length)
    crop = (settings.sequence_length - bins * config.bin_size) // 2
    table = head_track_table(HEAD, max(tracks) + 1) if max(tracks) >= 0 else None
    described = [str(table["description"].iloc[i]) if table is not None and i < len(table) else f"track {i}"
                 for i in tracks]
    targets = pd.DataFrame({"identifier": [f"TEACHER{i:04d}" for i in tracks],
                            "file": [f"teacher://{HEAD}/{i}" for i in tracks], "clip": 1e6, "scale": 1.0,
                            "sum_stat": "mean", "description": described})
    with BasenjiWriter(folder, targets, settings.sequence_length, crop, config.bin_size, records_per_file=256) as writer:
        for split in ("train", "valid", "test"):
            for chrom, start, end in windows[split]:
                one_hot = one_hot_array(genome.fetch(Interval(genome.resolve(chrom), start, end)))
                output = predict_batch(student, torch.from_numpy(one_hot.astype(np.float32))[None], heads=[HEAD],
                                       device=device)[HEAD]
                writer.add(split, (chrom, start, end), one_hot, output[0].numpy())


def _train_settings(row: str, seed: int, settings: RealWeightsSettings, out: Path, steps: int):
    from ..train import TrainSettings

    common = dict(data={HEAD: str(out / "data")}, init_weights=str(out / "teacher"), steps=steps,
                  batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                  warmup_steps=min(settings.warmup_steps, max(steps - 1, 0)), seed=seed, device=settings.device,
                  eval_every=0, progress=False, log_every=10, checkpoint_every=max(steps, 1), keep_checkpoints=1,
                  train="attention", model_overrides=dict(settings.model_overrides))
    if row == "finetune":
        return TrainSettings(**common, attention="bigbird")
    if row == "fresh-ours":
        return TrainSettings(**common, attention="bigbird", init_skip="attention")
    from ..weights import load_model

    config = load_model(out / "teacher").config
    return TrainSettings(**{**common, "model_overrides": {**common["model_overrides"], "relative_positions": False,
                                                          "key_size": config.dim // config.heads}},
                         attention="bigbird", init_skip="attention")


def run_real_weights(weights: str, fasta: str, out: str | os.PathLike, settings: RealWeightsSettings,
                     log: Callable[[str], None] = print) -> Path:
    """The whole protocol into ``out`` (see the module); returns ``real-weights.json``'s path."""
    import torch

    from ..data.basenji import BasenjiDataset
    from ..data.genome import Genome
    from ..evaluate import evaluate
    from ..device import resolve_device
    from ..train.loop import run_training
    from ..weights import load_model
    from .statistics import contrast, record_sums

    out = Path(out)
    genome = Genome(fasta)
    started = time.perf_counter()
    windows = _windows(genome, settings)  # a chromosome the FASTA lacks is refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    student, tracks = _student_init(weights, settings, out)
    shutil.rmtree(out / "data", ignore_errors=True)
    _write_data(genome, student, windows, settings, out / "data", tracks)
    log(f"teacher outputs for {sum(map(len, windows.values()))} windows ({time.perf_counter() - started:.0f} s)")
    per_seed: dict[int, dict[str, Any]] = {}
    scores: dict[str, dict[str, float]] = {row: {} for row in ROWS}
    test = BasenjiDataset(out / "data", "test")
    for seed in settings.seeds:
        models = {"zero-shot": load_model(out / "teacher", overrides={"attention": "bigbird"}).eval()}
        for row in TRAINED:
            folder = out / "runs" / f"{row}-seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            models[row] = load_model(run_training(_train_settings(row, seed, settings, out, settings.steps), folder)).eval()
            log(f"{row} seed {seed}: trained {settings.steps} steps")
        sums: dict[str, list[np.ndarray]] = {row: [] for row in models}
        shift: dict[str, np.ndarray] = {}

        def keep(predictions, target) -> None:
            target = target.double().numpy()
            shift.setdefault("target", target.mean((0, 1)))
            for row in models:
                prediction = predictions[row].double().numpy()
                shift.setdefault(row, prediction.mean((0, 1)))
                sums[row].append(record_sums(prediction, target, shift[row], shift["target"]))

        torch.manual_seed(seed)
        result = evaluate(models, test, HEAD, batch_size=settings.batch_size, progress=False, on_predictions=keep,
                          device=resolve_device(settings.device))
        for row in models:
            pooled = result.models[row].pooled
            scores[row][str(seed)] = float(np.nanmean(pooled))
        per_seed[seed] = {"bins": test_bins(out), "sums": {row: np.concatenate(parts) for row, parts in sums.items()}}
    record = {
        "weights": str(weights), "fasta": str(fasta), "settings": {**dataclasses.asdict(settings),
                                                                    "test_chromosomes": list(settings.test_chromosomes),
                                                                    "valid_chromosomes": list(settings.valid_chromosomes),
                                                                    "seeds": list(settings.seeds)},
        "windows": {split: len(items) for split, items in windows.items()}, "tracks": len(tracks),
        "measures": "teacher correlation: pooled Pearson with the unmodified model's outputs on the test windows",
        "rows": {row: {"row": ROWS[row], "teacher_correlation": values,
                       "mean": float(np.mean(list(values.values())))} for row, values in scores.items()},
        "contrasts": {label: contrast(per_seed, first, second, None, settings.resamples)
                      for label, (first, second) in CONTRASTS.items()},
        "seconds": time.perf_counter() - started,
    }
    path = write_json(out / "real-weights.json", record, indent=1)
    atomic_write_text(out / "real-weights.md", _markdown(record))
    return Path(path)


def test_bins(out: Path) -> int:
    return int(json.loads((out / "data" / "statistics.json").read_text(encoding="utf-8"))["target_length"])


def _markdown(record: dict[str, Any]) -> str:
    lines = ["# The accuracy study on real weights", "",
             f"Weights `{record['weights']}`, genome `{record['fasta']}`; {record['measures']} "
             f"({record['tracks']} tracks, {record['windows']['test']} test windows on "
             f"{', '.join(record['settings']['test_chromosomes'])}).", "",
             "| row | model | teacher correlation (mean over seeds) | per seed |", "|---|---|---|---|"]
    for name, row in record["rows"].items():
        values = ", ".join(f"{value:.4f}" for value in row["teacher_correlation"].values())
        lines.append(f"| {row['row']} | {name} | {row['mean']:.4f} | {values} |")
    lines += ["", "| contrast | difference | paired t over seeds [95%] | two-level bootstrap [95%] |", "|---|---|---|---|"]
    for label, values in record["contrasts"].items():
        paired, boot = values["paired"], values["bootstrap"]
        bounds = "-" if paired["low"] is None else f"[{paired['low']:+.4f}, {paired['high']:+.4f}]"
        lines.append(f"| {label} | {paired['difference']:+.4f} | {bounds} | [{boot['low']:+.4f}, {boot['high']:+.4f}] |")
    return "\n".join(lines) + "\n"


def estimate_real_weights(weights: str, fasta: str, settings: RealWeightsSettings, steps: int = 3,
                          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time the teacher on one window and ``steps`` training steps of row 6 on the current device, and project
    the whole protocol: teacher outputs for every window, every row's training and the evaluation."""
    import tempfile

    from ..data.genome import Genome
    from ..train.loop import run_training

    genome = Genome(fasta)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        steps = min(steps, settings.steps)
        probe = dataclasses.replace(settings, records={"train": 2, "valid": 1, "test": 1}, steps=steps, seeds=(0,))
        student, tracks = _student_init(weights, probe, work)
        windows = _windows(genome, probe)
        started = time.perf_counter()
        _write_data(genome, student, windows, probe, work / "data", tracks)
        per_window = (time.perf_counter() - started) / 4
        started = time.perf_counter()
        run_training(_train_settings("fresh-report", 0, probe, work, steps), work / "run")
        per_step = (time.perf_counter() - started) / steps  # start-up included: an upper bound
    windows_total = sum(int(v) for v in settings.records.values())
    seconds = (windows_total * per_window
               + len(settings.seeds) * len(TRAINED) * settings.steps * per_step
               + len(settings.seeds) * (len(TRAINED) + 1) * int(settings.records["test"]) * per_window)
    projection = {"seconds_per_window": per_window, "seconds_per_step": per_step, "projected_minutes": seconds / 60,
                  "windows": windows_total, "steps_per_row": settings.steps, "rows": len(TRAINED),
                  "seeds": len(settings.seeds), "tracks": len(tracks)}
    log(f"projected: {seconds / 60:.0f} min ({per_window:.2f} s per window of teacher inference, "
        f"{per_step:.2f} s per training step)")
    return projection
