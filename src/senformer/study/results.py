"""The accuracy study: why the S-Enformer report's sparse model lost accuracy.

The report fine-tuned freshly initialised BigBird layers (no relative positions, key size 192) with the
rest of Enformer frozen and never reached Enformer's accuracy. Two causes are confounded there: the layer
lacks relative positions, and it starts untrained. On synthetic data where attention demonstrably matters
(:data:`senformer.data.synthetic.SIZES` ``"study"``), with every seed on the same dataset, the rows are:

    1 full            full attention from scratch (the teacher and the reference row)
    2 control         row 1 with attention removed (each attention output projection at its fresh value, 0)
    3 zero-shot       row 1's weights run with our ``bigbird`` (relative positions), no training
    4 finetune        row 3 fine-tuned attention-only; ``finetune-distill`` adds distillation from row 1
    5 fresh-ours      row 1's trunk and heads loaded and frozen, fresh ``bigbird`` attention, attention-only
    6 fresh-report    as 5 with the report's layer (no relative positions, key size = dim / heads)
    7 report-all      as 6 with every weight trained

Rows 5-7 train ``fresh_multiple`` x row 4's steps at a constant learning rate after warm-up and are also
reported at row 4's step count from the same run (the run stops there, its weights are kept, and it resumes).
For the first seed, rows 5 and 6 also run at each of ``lr_factors`` x the learning rate for row 4's steps.

Every row trains through ``senformer train`` (a subprocess with one thread) with public settings only;
evaluation uses :func:`senformer.evaluate.evaluate` and :mod:`senformer.analysis`. Layout of ``OUT``::

    study-settings.json   the settings (a rerun with other settings stops unless fresh)
    data/                 the synthetic dataset          model.json   row 1's model
    runs/<run>/           one `senformer train` output (+ train.out, .done; rows 5-7 weights-step-<N>/)
    evaluation/seed-<S>.json, seed-<S>.npz   per seed: metrics and per-example sums for the bootstrap
    results/              study.json, table.csv, summary.md, curves.png, per_example.png, receptive_field.png

A finished run (``.done``) is skipped on a rerun; a killed one continues with ``senformer train --resume``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import UserError
from ..io import atomic_write_text, write_npz

HEAD = "human"
ROW_1 = "full"
# Model rows in table order: key -> (row number, description).
ROWS: dict[str, tuple[str, str]] = {
    "full": ("1", "full attention from scratch"),
    "control": ("2", "row 1, attention removed"),
    "zero-shot": ("3", "bigbird (relative positions), row 1's weights, zero-shot"),
    "finetune": ("4", "row 3 fine-tuned attention-only"),
    "finetune-distill": ("4", "row 3 fine-tuned attention-only + distillation from row 1"),
    "fresh-ours": ("5", "fresh bigbird (relative positions) on frozen row 1, attention-only"),
    "fresh-report": ("6", "fresh report layer (no relative positions, key = dim/heads), attention-only"),
    "report-all": ("7", "fresh report layer, every weight trained"),
}
FRESH_ROWS = ("fresh-ours", "fresh-report", "report-all")
LR_ROWS = ("fresh-ours", "fresh-report")


@dataclass(frozen=True)
class StudySettings:
    """Everything the study does; saved as ``study-settings.json``. :meth:`quick` is 1 seed, 1/4 the steps."""

    seeds: tuple[int, ...] = (0, 1, 2)
    data_size: str = "study"  # senformer.data.synthetic.SIZES
    data_seed: int = 0  # one dataset for every seed
    data_overrides: Mapping[str, Any] = field(default_factory=dict)  # SyntheticSettings fields
    # Row 1's model: the small training model with BigBird blocks of 2 positions (32 blocks of 8,192 bp);
    # each query block attends 3 window + 2 global + 3 random = 8 of them, a quarter.
    model: Mapping[str, Any] = field(default_factory=lambda: {
        "dim": 96, "depth": 2, "heads": 4, "key_size": 16, "conv_tower_divisible_by": 16,
        "block_size": 2, "num_window_blocks": 3, "num_global_blocks": 2, "num_random_blocks": 3,
        "dropout_rate": 0.1, "attention_dropout_rate": 0.05, "positional_dropout_rate": 0.01,
        "final_dropout_rate": 0.01,
    })
    batch_size: int = 8
    # Tuning run (seed 0, validation): after 1,000 steps at 1e-3 removing attention cost 0.153 pooled Pearson
    # on the long-range tracks (0.560 -> 0.407); after 600 steps the long-range tracks were still climbing.
    full_steps: int = 1000
    full_learning_rate: float = 1e-3
    full_warmup_steps: int = 50
    finetune_steps: int = 200  # row 4; rows 5-7 are also reported at this step
    finetune_learning_rate: float = 1e-3
    finetune_warmup_steps: int = 20
    fresh_multiple: int = 4  # rows 5-7 run this many times row 4's steps
    lr_factors: tuple[float, ...] = (1 / 3, 3.0)  # rows 5 and 6, first seed, row 4's steps
    distill_weight: float = 0.5
    eval_every: int = 100  # validation curves (Figure 5)
    eval_examples: int | None = 128  # validation examples per curve point (None: the whole split)
    test_batch_size: int = 16
    bootstrap: int = 2000  # resamples of the test examples for the 95% intervals
    receptive_field_sequences: int = 4  # test sequences; Figure 8 for rows 1, 3 and 6
    receptive_field_positions: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "lr_factors", tuple(float(f) for f in self.lr_factors))
        object.__setattr__(self, "data_overrides", dict(self.data_overrides))
        object.__setattr__(self, "model", dict(self.model))
        problems = []
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds {list(self.seeds)} must be distinct and at least one")
        for name in ("batch_size", "full_steps", "finetune_steps", "fresh_multiple", "bootstrap",
                     "receptive_field_sequences", "receptive_field_positions", "test_batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if problems:
            raise UserError("invalid study settings: " + "; ".join(problems))

    @property
    def fresh_steps(self) -> int:
        return self.fresh_multiple * self.finetune_steps

    def quick(self) -> "StudySettings":
        """One seed and a quarter of the steps (curves every quarter of the old interval)."""
        return dataclasses.replace(
            self, seeds=self.seeds[:1], full_steps=max(1, self.full_steps // 4),
            finetune_steps=max(1, self.finetune_steps // 4), eval_every=max(1, self.eval_every // 4),
            full_warmup_steps=self.full_warmup_steps // 4, finetune_warmup_steps=self.finetune_warmup_steps // 4,
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["seeds"], values["lr_factors"] = list(self.seeds), list(self.lr_factors)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "study settings") -> "StudySettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown study setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


# The runs ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One ``senformer train`` run: ``arguments`` (without ``--out``), trained to each of ``phases`` in turn
    (the weights at every earlier phase kept as ``weights-step-<N>``), after the runs in ``depends``."""

    name: str
    key: str
    seed: int
    arguments: tuple[str, ...]
    phases: tuple[int, ...]
    depends: tuple[str, ...] = ()


def run_name(key: str, seed: int, lr_factor: float | None = None) -> str:
    suffix = "" if lr_factor is None else f"-lr{lr_factor:.3g}"
    return f"{key}{suffix}-seed{seed}"


def study_runs(out: Path, settings: StudySettings) -> list[Run]:
    """Every training run of the study, rows 1 first, then the long rows 5-7 (the critical path)."""
    data = str(out / "data")
    report_key_size = int(settings.model["dim"]) // int(settings.model["heads"])

    def common(seed: int, steps_per_eval: int) -> list[str]:
        arguments = ["--data", data, "--batch-size", str(settings.batch_size), "--seed", str(seed),
                     "--threads", "1", "--no-progress", "--decay", "none", "--log-every", "10",
                     "--eval-every", str(steps_per_eval), "--keep-checkpoints", "2"]
        if settings.eval_examples is not None:
            arguments += ["--eval-examples", str(settings.eval_examples)]
        return arguments

    def row1(seed: int) -> str:
        return str(out / "runs" / run_name(ROW_1, seed) / "weights")

    def fine_tuning(seed: int, learning_rate: float) -> list[str]:
        return [*common(seed, settings.eval_every), "--init", row1(seed), "--lr", repr(learning_rate),
                "--warmup-steps", str(settings.finetune_warmup_steps),
                "--checkpoint-every", str(settings.finetune_steps)]

    layers = {
        # Ours: the weights' own bigbird pattern and relative positions, all attention tensors fresh.
        "fresh-ours": ["--init-skip", "attention", "--attention", "bigbird", "--train", "attention"],
        # The report's: BigBird without relative positions, key size = dim / heads (192 = 1,536 / 8).
        "fresh-report": ["--init-skip", "attention", "--preset", "s-enformer-report", "--set",
                         f"key_size={report_key_size}", "--train", "attention"],
        "report-all": ["--init-skip", "attention", "--preset", "s-enformer-report", "--set",
                       f"key_size={report_key_size}", "--train", "all"],
    }
    runs: list[Run] = []
    for seed in settings.seeds:
        # The seed sets initialisation, data order, augmentation and dropout (--seed) and the random blocks
        # (attention_seed, stored in row 1's config and so inherited by every row built on its weights).
        runs.append(Run(run_name(ROW_1, seed), ROW_1, seed, (
            *common(seed, settings.eval_every), "--model-config", str(out / "model.json"),
            "--set", f"attention_seed={seed}", "--lr", repr(settings.full_learning_rate),
            "--warmup-steps", str(settings.full_warmup_steps), "--checkpoint-every", str(settings.eval_every * 2),
        ), (settings.full_steps,)))
    for seed in settings.seeds:
        for key in FRESH_ROWS:
            runs.append(Run(run_name(key, seed), key, seed, (*fine_tuning(seed, settings.finetune_learning_rate),
                                                             *layers[key]),
                            (settings.finetune_steps, settings.fresh_steps), (run_name(ROW_1, seed),)))
    for seed in settings.seeds:
        pretrained = ["--attention", "bigbird", "--train", "attention"]
        runs.append(Run(run_name("finetune", seed), "finetune", seed,
                        (*fine_tuning(seed, settings.finetune_learning_rate), *pretrained),
                        (settings.finetune_steps,), (run_name(ROW_1, seed),)))
        runs.append(Run(run_name("finetune-distill", seed), "finetune-distill", seed,
                        (*fine_tuning(seed, settings.finetune_learning_rate), *pretrained, "--teacher", row1(seed),
                         "--distill-weight", repr(settings.distill_weight)),
                        (settings.finetune_steps,), (run_name(ROW_1, seed),)))
    seed = settings.seeds[0]
    for factor in settings.lr_factors:
        for key in LR_ROWS:
            runs.append(Run(run_name(key, seed, factor), key, seed,
                            (*fine_tuning(seed, settings.finetune_learning_rate * factor), *layers[key]),
                            (settings.finetune_steps,), (run_name(ROW_1, seed),)))
    return runs


def _train_command(arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "senformer", "train", *arguments]


def _one_thread_environment() -> dict[str, str]:
    environment = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environment[name] = "1"
    return environment


def snapshot_path(directory: Path, step: int) -> Path:
    return directory / f"weights-step-{step}"


def execute_run(run: Run, out: Path, log: Callable[[str], None]) -> str:
    """Train ``run`` to its last phase, resuming whatever a killed attempt left; returns what was done."""
    from ..train.checkpoint import latest_checkpoint

    directory = out / "runs" / run.name
    if (directory / ".done").is_file():
        return "skipped (done)"
    # Phases whose weights were kept are finished; without a checkpoint to continue from, start over.
    first = 0
    while first < len(run.phases) - 1 and (snapshot_path(directory, run.phases[first]) / "model.safetensors").is_file():
        first += 1
    if latest_checkpoint(directory / "checkpoints") is None:
        shutil.rmtree(directory, ignore_errors=True)  # a start that wrote no checkpoint leaves nothing to keep
        first = 0
    done = []
    for index in range(first, len(run.phases)):
        steps = run.phases[index]
        if latest_checkpoint(directory / "checkpoints") is not None:
            # A killed run, or an earlier phase finished: continue the same run exactly to this phase.
            arguments = ["--config", str(directory / "settings.json"), "--resume", "--steps", str(steps)]
            done.append(f"resumed to step {steps}")
        else:
            arguments = [*run.arguments, "--steps", str(steps)]
            done.append(f"trained to step {steps}")
        directory.mkdir(parents=True, exist_ok=True)
        command = _train_command([*arguments, "--out", str(directory)])
        with open(directory / "train.out", "a", encoding="utf-8") as output:
            output.write("$ " + " ".join(command) + "\n")
            output.flush()
            status = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT,
                                    env=_one_thread_environment()).returncode
        if status != 0:
            raise UserError(f"run {run.name} failed (exit {status}); see {directory / 'train.out'}")
        if index < len(run.phases) - 1:
            snapshot = snapshot_path(directory, steps)
            temporary = snapshot.with_name(snapshot.name + ".partial")
            shutil.rmtree(temporary, ignore_errors=True)
            shutil.copytree(directory / "weights", temporary)
            temporary.rename(snapshot)
    atomic_write_text(directory / ".done", json.dumps({"phases": list(run.phases)}) + "\n")
    log(f"{run.name}: {', '.join(done)}")
    return ", ".join(done)


# Scheduling ----------------------------------------------------------------------------------------------
@dataclass
class Job:
    name: str
    action: Callable[[], str]
    depends: tuple[str, ...] = ()


def run_jobs(jobs: Sequence[Job], parallel: int, log: Callable[[str], None]) -> dict[str, float]:
    """Run ``jobs`` (each after its ``depends``), ``parallel`` at a time; returns seconds per job. The first
    failure stops new starts, waits for the running ones and is raised."""
    pending = list(jobs)
    finished: set[str] = set()
    seconds: dict[str, float] = {}
    running: dict[Future, tuple[str, float]] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while pending or running:
            if failure is None:
                for job in [j for j in pending if set(j.depends) <= finished]:
                    if len(running) >= parallel:
                        break
                    pending.remove(job)
                    running[pool.submit(job.action)] = (job.name, time.perf_counter())
            if not running:
                if pending and failure is None:
                    missing = sorted({d for j in pending for d in j.depends} - finished - {j.name for j in pending})
                    raise UserError(f"jobs wait for unknown jobs: {', '.join(missing)}")
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                name, started = running.pop(future)
                seconds[name] = time.perf_counter() - started
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    log(f"{name}: failed: {error}")
                else:
                    finished.add(name)
    if failure is not None:
        raise failure
    return seconds


# The whole study -----------------------------------------------------------------------------------------
def prepare(out: Path, settings: StudySettings, fresh: bool = False, record: bool = True) -> None:
    """Record the settings (refusing a different earlier study in ``out``), write the data and row 1's model."""
    from ..data.basenji import read_statistics
    from ..data.synthetic import make_synthetic

    out.mkdir(parents=True, exist_ok=True)
    recorded = out / "study-settings.json"
    if fresh:
        for name in ("data", "runs", "evaluation", "model.json", "study-settings.json", "sessions.json"):
            path = out / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    elif record and recorded.is_file():
        previous = json.loads(recorded.read_text(encoding="utf-8"))
        if previous != json.loads(json.dumps(settings.to_dict())):
            changed = sorted(k for k in set(previous) | set(settings.to_dict())
                             if previous.get(k) != json.loads(json.dumps(settings.to_dict())).get(k))
            raise UserError(f"{out} holds a study with other settings ({', '.join(changed)} differ, {recorded}); "
                            "pass --fresh to replace it or choose another --out")
    if record:
        atomic_write_text(recorded, json.dumps(settings.to_dict(), indent=2) + "\n")
    data = out / "data"
    if not (data / ".done").is_file():
        make_synthetic(data, settings.data_size, seed=settings.data_seed, **settings.data_overrides)
        atomic_write_text(data / ".done", "\n")
    statistics = read_statistics(data)
    model = {**settings.model, "attention": "full", "output_heads": {HEAD: int(statistics["num_targets"])},
             "target_length": int(statistics["target_length"])}
    atomic_write_text(out / "model.json", json.dumps(model, indent=2) + "\n")


def run_study(out: str | os.PathLike, settings: StudySettings, parallel: int = 2, fresh: bool = False,
              results: str | os.PathLike | None = None, docs: str | os.PathLike | None = None,
              command: str = "senformer study accuracy", extra: Mapping[str, Any] | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Run (or resume) the whole study into ``out``; write ``study.json``, ``table.csv`` and the figures into
    ``results`` (default ``out/results``) and, with ``docs``, the write-up. Returns the ``study.json`` path."""
    out = Path(out)
    started = time.perf_counter()
    prepare(out, settings, fresh)
    lock = threading.Lock()

    def locked_log(message: str) -> None:
        with lock:
            log(message)

    runs = study_runs(out, settings)
    jobs = [Job(run.name, (lambda run=run: execute_run(run, out, locked_log)), run.depends) for run in runs]
    for seed in settings.seeds:
        needed = tuple(run.name for run in runs if run.seed == seed)
        jobs.append(Job(f"evaluate-seed{seed}", (lambda seed=seed: _evaluate_in_subprocess(out, seed, locked_log)), needed))
    seconds = run_jobs(jobs, parallel, locked_log)
    # Every invocation's wall time, so a resumed study reports the time it took in total, not its last part.
    sessions_path = out / "sessions.json"
    sessions = json.loads(sessions_path.read_text(encoding="utf-8")) if sessions_path.is_file() else []
    sessions.append({"command": command, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "seconds": time.perf_counter() - started, "job_seconds": seconds})
    atomic_write_text(sessions_path, json.dumps(sessions, indent=1) + "\n")
    record = summarise(out, settings)
    record["run"] = {"command": command, "parallel": parallel, "seconds": sum(s["seconds"] for s in sessions),
                     "sessions": len(sessions), "commit": _commit(), **(extra or {})}
    results_dir = Path(results) if results is not None else out / "results"
    path = write_results(record, results_dir)
    if docs is not None:
        write_docs(record, Path(docs), results_dir)
    return path


def _commit() -> str | None:
    try:
        source = Path(__file__).resolve().parents[3]
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return result.stdout.strip() or None
    except OSError:
        return None


def _evaluate_in_subprocess(out: Path, seed: int, log: Callable[[str], None]) -> str:
    """Evaluate one seed in its own one-thread process (skipped when newer than every run of the seed)."""
    target = out / "evaluation" / f"seed-{seed}.json"
    runs = [out / "runs" / run.name / ".done" for run in study_runs(out, StudySettings.from_dict(
        json.loads((out / "study-settings.json").read_text(encoding="utf-8")))) if run.seed == seed]
    if target.is_file() and all(target.stat().st_mtime >= done.stat().st_mtime for done in runs):
        return "skipped (done)"
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "senformer.study", "evaluate", str(out), str(seed)]
    with open(out / "evaluation" / f"seed-{seed}.out", "w", encoding="utf-8") as output:
        status = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=_one_thread_environment()).returncode
    if status != 0:
        raise UserError(f"evaluation of seed {seed} failed (exit {status}); see {out / 'evaluation' / f'seed-{seed}.out'}")
    log(f"evaluate-seed{seed}: done")
    return "evaluated"


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
    short, long = settings.finetune_steps, settings.fresh_steps
    entries = [
        ModelEntry(f"full@{settings.full_steps}", "full", settings.full_steps, None, row1),
        ModelEntry("control", "control", None, None, row1, skip=ATTENTION_REMOVED_SKIP),
        ModelEntry("zero-shot", "zero-shot", None, None, row1, overrides={"attention": "bigbird"}),
        ModelEntry(f"finetune@{short}", "finetune", short, None, str(runs / run_name("finetune", seed) / "weights")),
        ModelEntry(f"finetune-distill@{short}", "finetune-distill", short, None,
                   str(runs / run_name("finetune-distill", seed) / "weights")),
    ]
    for key in FRESH_ROWS:
        directory = runs / run_name(key, seed)
        entries.append(ModelEntry(f"{key}@{short}", key, short, None, str(snapshot_path(directory, short))))
        entries.append(ModelEntry(f"{key}@{long}", key, long, None, str(directory / "weights")))
    if seed == settings.seeds[0]:
        for factor in settings.lr_factors:
            for key in LR_ROWS:
                entries.append(ModelEntry(f"{key}@{short} lr x{factor:.3g}", key, short, factor,
                                          str(runs / run_name(key, seed, factor) / "weights")))
    return entries


def _load(entry: ModelEntry):
    from ..weights import load_model

    return load_model(entry.weights, overrides=entry.overrides, skip=entry.skip).eval()


def long_range_tracks(data: Path) -> list[int]:
    return [int(i) for i in json.loads((data / "synthetic.json").read_text(encoding="utf-8"))["long_range_tracks"]]


def evaluate_seed(out: str | os.PathLike, seed: int) -> Path:
    """Score every model of ``seed`` on the test split; write ``evaluation/seed-<S>.json`` (metrics) and
    ``.npz`` (per-example sums for the bootstrap)."""
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

    def keep_sums(predictions: Mapping[str, torch.Tensor], target: torch.Tensor) -> None:
        target = target.double().numpy()
        bins[0] = target.shape[1]
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
    target = out / "evaluation" / f"seed-{seed}.json"
    write_npz(target.with_suffix(".npz"), names=np.array([e.name for e in entries]), model_sums=model_sums,
               target_sums=target_sums, bins=np.array(bins), example_index=result.models[reference].example_index)
    atomic_write_text(target, json.dumps(_jsonable(record), indent=1) + "\n")
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
    chosen = {"full": entries[0].name, "zero-shot": "zero-shot",
              "fresh-report": max((e for e in entries if e.key == "fresh-report" and e.lr_factor is None),
                                  key=lambda e: e.steps).name}
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value


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


def _track_mean(pooled: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(pooled)
        return np.where(finite, pooled, 0).sum(-1) / np.maximum(finite.sum(-1), 1)


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
            values[label] = _track_mean(a[:, chosen]) - _track_mean(b[:, chosen])
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


def summarise(out: str | os.PathLike, settings: StudySettings) -> dict[str, Any]:
    """``study.json``'s content from every seed's evaluation: per model the mean +- SD over seeds (with the
    values), bootstrap intervals of the differences, the attention-matters check, the contrasts and curves."""
    out = Path(out)
    evaluations = {seed: json.loads((out / "evaluation" / f"seed-{seed}.json").read_text(encoding="utf-8"))
                   for seed in settings.seeds}
    sums = {}
    for seed in settings.seeds:
        with np.load(out / "evaluation" / f"seed-{seed}.npz") as arrays:
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
    for label, (a, b) in {
        "fresh layer, ours (row 5 - row 4)": (f"fresh-ours@{short}", f"finetune@{short}"),
        "no relative positions (row 6 - row 5)": (f"fresh-report@{short}", f"fresh-ours@{short}"),
        "no relative positions, longer training (row 6 - row 5)": (f"fresh-report@{long}", f"fresh-ours@{long}"),
        "training every weight (row 7 - row 6)": (f"report-all@{short}", f"fresh-report@{short}"),
        "sparsity alone, zero-shot (row 3 - row 1)": ("zero-shot", reference),
    }.items():
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
    return {
        "settings": settings.to_dict(), "data": {"size": data["size"], "seed": data["seed"], "settings": data["settings"],
                                                 "long_range_tracks": long_range, "test_examples": first["examples"]},
        "model": json.loads((out / "model.json").read_text(encoding="utf-8")),
        "reference": reference, "models": models, "contrasts": contrasts, "attention_matters": check,
        "receptive_field": {seed: evaluations[seed]["receptive_field"] for seed in settings.seeds},
        "curves": curves, "machine": _machine(), "estimate": _estimate_summary(out / "estimate.json"),
    }


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


def _machine() -> dict[str, Any]:
    from ..record import machine_info

    info = {key: value for key, value in machine_info().items() if key != "hostname"}
    info["threads"] = 1  # every job: one torch thread, OMP_NUM_THREADS=1
    return info


# Results: study.json, table.csv, figures, the write-up ---------------------------------------------------
def write_results(record: Mapping[str, Any], directory: str | os.PathLike) -> Path:
    """``study.json``, ``table.csv``, ``summary.md`` (for the README) and the figures (``curves.png``,
    ``per_example.png``, ``receptive_field.png``) into ``directory``; returns the ``study.json`` path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "table.csv", table_frame(record).to_csv(index=False, float_format="%.4f"))
    plot_curves(record, directory / "curves.png")
    plot_per_example(record, directory / "per_example.png")
    plot_receptive_field(record, directory / "receptive_field.png")
    atomic_write_text(directory / "summary.md", summary_markdown(record))
    path = directory / "study.json"
    atomic_write_text(path, json.dumps(_jsonable(dict(record)), indent=1) + "\n")
    return path


def summary_markdown(record: Mapping[str, Any]) -> str:
    """A short table for the README (``summary.md``): pooled Pearson overall and on the long-range tracks,
    mean ± SD over seeds, and the difference from row 1 with its interval; commit and seeds named."""
    run = record.get("run", {})
    seeds = ", ".join(map(str, record["settings"]["seeds"]))
    lines = [f"Accuracy study (`{run.get('command', '')}`, commit `{run.get('commit')}`, seeds {seeds}"
             + ("; **quick run**" if run.get("quick") else "") + "; test split, pooled Pearson):", "",
             "| row | model | all tracks | long-range | long-range minus row 1 [95%] |", "|---|---|---|---|---|"]
    for model in record["models"]:
        metrics = model["metrics"]
        lines.append(f"| {model['row']} | `{model['name']}` | {_format(metrics.get('pooled'))} | "
                     f"{_format(metrics.get('pooled/long-range'))} | {_interval(model['minus_row1'].get('pooled/long-range'))} |")
    return "\n".join(lines) + "\n"


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


def _save(plt, figure, path: Path) -> None:
    from ..io import atomic_path

    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


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
    _save(plt, figure, path)
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
    _save(plt, figure, path)
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
    _save(plt, figure, path)
    return path


def _format(value: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not value or value.get("mean") is None:
        return "-"
    text = f"{value['mean']:.{digits}f}"
    if value.get("sd") is not None:
        text += f" ± {value['sd']:.{digits}f}"
    values = [v for v in value.get("values", [])]
    if len(values) > 1:
        text += " (" + ", ".join("nan" if v is None else f"{v:.{digits}f}" for v in values) + ")"
    return text


def _interval(difference: Mapping[str, Any] | None) -> str:
    if not difference or difference.get("difference") is None:
        return "-"
    return f"{difference['difference']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"


def write_docs(record: Mapping[str, Any], path: Path, results: Path) -> Path:
    """The write-up (markdown) generated from ``record`` (study.json): every number in it is one the
    study wrote; figures are linked relative to ``path``."""
    settings = record["settings"]
    run = record.get("run", {})
    quick = run.get("quick", False)
    link = Path(os.path.relpath(Path(results).resolve(), Path(path).resolve().parent))
    seeds = settings["seeds"]
    short, long = settings["finetune_steps"], settings["finetune_steps"] * settings["fresh_multiple"]
    model = record["model"]
    data = record["data"]["settings"]
    lines = [
        "# Why the S-Enformer report lost accuracy: a controlled study",
        "",
        "<!-- generated by `senformer study accuracy` from study.json; do not edit by hand -->",
        "",
    ]
    if quick:
        lines += ["> **Quick run** (`--quick`: one seed, a quarter of the steps): a smoke test of the study, not its",
                  "> result; its row 1 is far from trained. The full study (3 seeds, all steps) is the same command",
                  "> without `--quick`: `" + run.get("full_command", "senformer study accuracy") + "`, which regenerates "
                  "this page.", ""]
    lines += [
        f"Command: `{run.get('command', '')}` at commit `{run.get('commit')}`; seeds {', '.join(map(str, seeds))}; "
        f"{run.get('parallel')} jobs of one thread each; measured time {run.get('seconds', 0) / 60:.1f} min "
        f"({run.get('sessions', 1)} invocation(s), resumed ones included) on "
        f"{record['machine'].get('cpu')} ({record['machine'].get('usable_cpus', record['machine'].get('cpu_count'))} "
        f"cores, torch {record['machine'].get('torch')}).",
        "",
        *_estimate_lines(record.get("estimate"), settings),
        "## Set-up",
        "",
        f"- Data: `senformer data synthetic --size {record['data']['size']} --seed {record['data']['seed']}` "
        f"({data['sequence_length']:,} bp records, {data['num_tracks']} tracks, {data['train']}/{data['valid']}/{data['test']} "
        f"train/valid/test; enhancers {data['long_range_bp'][0]:,}-{data['long_range_bp'][1]:,} bp from promoters, "
        f"enhancer motifs at {data.get('enhancer_rate') or data['motif_rate']} per kb each, CAGE baseline "
        f"{data.get('long_range_baseline', 0.2)}, {data.get('cage_kernel', 'sharp')} CAGE peaks); "
        f"long-range tracks {record['data']['long_range_tracks']}. Every seed uses this one dataset.",
        f"- Model: dim {model['dim']}, {model['depth']} layers, {model['heads']} heads, key size {model['key_size']}; "
        f"BigBird blocks of {model['block_size']} positions: {data['sequence_length'] // 128 // model['block_size']} blocks, each "
        f"query block attending {model['num_window_blocks']} window + {model['num_global_blocks']} global + "
        f"{model['num_random_blocks']} random.",
        f"- Steps: row 1 {settings['full_steps']} (lr {settings['full_learning_rate']}); row 4 {short}; rows 5-7 {long} "
        f"(lr {settings['finetune_learning_rate']}, constant after {settings['finetune_warmup_steps']} warm-up steps), "
        f"reported at {short} and {long}; learning-rate runs x{', x'.join(f'{f:.3g}' for f in settings['lr_factors'])} "
        f"for rows 5 and 6, seed {seeds[0]}, {short} steps. Batch {settings['batch_size']}.",
        "- A seed sets initialisation, data order, augmentation, dropout and `attention_seed`.",
        "- Metrics on the test split: pooled Pearson per track (mean over tracks), per-example Pearson; "
        "\"r with row 1\": pooled correlation of the predictions with row 1's; \"beats row 1\": share of test "
        "examples whose per-example Pearson (mean over the tracks) exceeds row 1's. Mean ± SD over seeds (the "
        f"seed values in brackets); differences from row 1 with a bootstrap 95% interval ({settings['bootstrap']} "
        "resamples of the test examples, the same draw for every seed).",
        "",
        "## Results",
        "",
        "| row | model | pooled, all | long-range | DNase/ATAC | ChIP-Histone | ChIP-TF | CAGE | per-example | r with row 1 (long-range) | beats row 1 (long-range) | minus row 1, all [95%] | minus row 1, long-range [95%] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_record in record["models"]:
        m = model_record["metrics"]
        lines.append("| " + " | ".join([
            model_record["row"], f"`{model_record['name']}`", _format(m.get("pooled")), _format(m.get("pooled/long-range")),
            _format(m.get("pooled/DNase/ATAC")), _format(m.get("pooled/ChIP-Histone")), _format(m.get("pooled/ChIP-TF")),
            _format(m.get("pooled/CAGE")), _format(m.get("per_example")),
            _format(m.get("r_with_row1/long-range")), _format(m.get("beats_row1/long-range")),
            _interval(model_record["minus_row1"].get("pooled")), _interval(model_record["minus_row1"].get("pooled/long-range")),
        ]) + " |")
    check = record["attention_matters"]
    lines += [
        "",
        f"Rows: {'; '.join(f'{row} {key}: {description}' for key, (row, description) in ROWS.items())}. "
        f"`NAME@STEPS` is a model after that many steps of its run.",
        "",
        "**Does attention matter on this data?** Removing it (row 2) costs "
        + (f"{check['loss_on_long_range']:.3f}" if check["loss_on_long_range"] is not None else "-")
        + " pooled Pearson on the long-range tracks (required: at least "
        f"{check['required_loss']:.2f} and more than {check['required_seed_sds']:.0f} seed SDs of row 1, "
        + (f"SD {check['full_model_seed_sd']:.4f}" if check["full_model_seed_sd"] is not None else "SD not measured with one seed")
        + f"): **{'met' if check['met'] else 'not met'}**.",
        "",
        "**The two causes, separated** (mean over seeds of the difference, bootstrap 95% interval):",
        "",
        "| contrast | pooled, all | pooled, long-range |",
        "|---|---|---|",
    ]
    for label, contrast in record["contrasts"].items():
        lines.append(f"| {label}: `{contrast['first']}` - `{contrast['second']}` | {_interval(contrast['pooled'])} | "
                     f"{_interval(contrast['pooled/long-range'])} |")
    starts = {key: [c["points"][0]["pearson/long-range"] for c in record["curves"].values()
                    if c["key"] == key and c["lr_factor"] is None and c["points"] and c["points"][0]["step"] == 0]
              for key in FRESH_ROWS}
    if all(starts.values()):
        lines += ["", "Fresh attention layers start with a zero output projection, so at step 0 rows 5-7 are row 2: "
                  "their validation long-range Pearson at step 0 is " + ", ".join(
                      f"{key} {np.mean([v for v in values if v is not None]):.3f}" for key, values in starts.items())
                  + " (mean over seeds; the curves start there)."]
    lines += ["", answer(record), "",
              f"![training curves]({link / 'curves.png'})", "",
              f"![per-example comparison with row 1]({link / 'per_example.png'})", "",
              f"![receptive field]({link / 'receptive_field.png'})", "",
              f"Numbers: `{link / 'study.json'}` and `{link / 'table.csv'}` (every seed's value). Rerun and regenerate "
              f"this page: `{run.get('full_command', run.get('command', ''))}`.", ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def _estimate_lines(estimate: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> list[str]:
    if not estimate:
        return []
    rates = ", ".join(f"{key} {value:.1f}" for key, value in estimate["examples_per_second"].items())
    return [f"Measured first (`--estimate`: {estimate['steps_measured']} steps of each kind of run, one at a time, "
            f"training examples per second: {rates}; inference {estimate['inference_examples_per_second']:.1f}): "
            f"{estimate.get('for', 'the study')} was projected at {estimate['total_job_minutes']:.0f} job-minutes, "
            f"{estimate['projected_minutes']:.0f} min with {estimate['parallel']} jobs.", ""]


def answer(record: Mapping[str, Any]) -> str:
    """The conclusion, worded from the numbers: each contrast's size and whether its interval excludes 0."""
    contrasts = record["contrasts"]

    def find(prefix: str) -> Mapping[str, Any] | None:
        return next((c["pooled/long-range"] for label, c in contrasts.items() if label.startswith(prefix)), None)

    def clear_loss(difference: Mapping[str, Any] | None) -> bool:
        return bool(difference and difference.get("high") is not None and difference["high"] < 0)

    def describe(difference: Mapping[str, Any] | None) -> str:
        if not difference or difference.get("difference") is None:
            return "not measured"
        text = f"{difference['difference']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"
        if difference["low"] > 0:
            return text + " (a gain)"
        return text + ("" if clear_loss(difference) else " (the interval includes 0)")

    fresh = find("fresh layer")
    positions = find("no relative positions (row 6")
    positions_long = find("no relative positions, longer")
    zero_shot = find("sparsity alone")
    steps = record["settings"]["finetune_steps"]
    parts = [
        "**Answer (long-range tracks, pooled Pearson, mean over seeds, 95% interval).** Sparsity alone, with our "
        f"relative positions and row 1's weights (row 3 - row 1): {describe(zero_shot)}. Fresh instead of trained "
        f"attention layers (row 5 - row 4, the same layer and {steps} steps): {describe(fresh)}. No relative "
        f"positions and the report's key size (row 6 - row 5, both fresh): {describe(positions)} after {steps} "
        f"steps, {describe(positions_long)} after {record['settings']['fresh_multiple']}x as many."
    ]
    causes = {"fresh, untrained attention layers": fresh, "the missing relative positions": positions}
    losses = {name: value["difference"] for name, value in causes.items() if clear_loss(value)}
    if not losses:
        parts.append("Neither cause costs accuracy beyond the test-set and seed noise at this scale.")
    elif len(losses) == 1:
        (name, size), = losses.items()
        parts.append(f"Only {name} cost accuracy beyond the noise ({size:+.3f}).")
    else:
        larger = min(losses, key=losses.get)  # the more negative difference is the larger loss
        other = next(name for name in losses if name != larger)
        parts.append(f"Both cost accuracy; {larger} more ({losses[larger]:+.3f}) than {other} ({losses[other]:+.3f}).")
    check = record["attention_matters"]
    if not check["met"]:
        loss = check["loss_on_long_range"]
        parts.append("But removing attention cost only " + ("an unmeasured amount" if loss is None else f"{loss:.3f}")
                     + " here, below the study's bar: on this run attention barely matters, so these contrasts "
                     "cannot say what the report's gap comes from.")
        return " ".join(parts)
    sparsity_harmless = bool(zero_shot and zero_shot.get("low") is not None and zero_shot["low"] <= 0 <= zero_shot["high"])
    if sparsity_harmless and losses:
        parts.append("Block sparsity itself cost nothing measurable here, so for the real model the report's gap "
                     "points at how its layers were made, not at BigBird: converted Enformer attention weights run "
                     "with BigBird and relative positions (row 3), fine-tuned (row 4), are the ones to try.")
    return " ".join(parts)


# Measuring before running --------------------------------------------------------------------------------
def estimate(out: str | os.PathLike, settings: StudySettings, steps: int = 20, parallel: int = 2,
             label: str = "the study", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time ``steps`` training steps of each kind of run (one at a time, one thread each) and project the
    study's total time with ``parallel`` jobs; written to ``OUT/estimate.json``."""
    import torch

    from ..data.basenji import BasenjiDataset
    from ..evaluate import evaluate
    from ..weights import load_model

    out = Path(out)
    prepare(out, settings, record=False)
    work = out / "estimate"
    shutil.rmtree(work, ignore_errors=True)
    probe = dataclasses.replace(settings, seeds=settings.seeds[:1], lr_factors=(), eval_every=0,
                                full_warmup_steps=1, finetune_warmup_steps=1)
    runs = {run.key: run for run in study_runs(work, probe)}
    (work / "runs").mkdir(parents=True)
    os.symlink((out / "data").resolve(), work / "data")
    shutil.copy(out / "model.json", work / "model.json")
    rates: dict[str, float] = {}
    for key in (ROW_1, "finetune", "finetune-distill", "fresh-ours", "fresh-report", "report-all"):
        run = dataclasses.replace(runs[key], phases=(steps,))
        started = time.perf_counter()
        execute_run(run, work, log)
        log_path = work / "runs" / run.name / "log.jsonl"
        windows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if '"train"' in line]
        # The first window includes start-up; later windows are steady state.
        rates[key] = float(np.median([w["examples_per_s"] for w in windows[1:] or windows]))
        log(f"{key}: {rates[key]:.1f} examples/s ({time.perf_counter() - started:.0f} s for {steps} steps with start-up)")
    torch.set_num_threads(1)
    model = load_model(work / "runs" / run_name(ROW_1, settings.seeds[0]) / "weights")
    dataset = BasenjiDataset(out / "data", "test", max_examples=64)
    started = time.perf_counter()
    evaluate({"probe": model}, dataset, HEAD, batch_size=settings.test_batch_size, progress=False)
    forward = 64 / (time.perf_counter() - started)  # examples per second, inference
    full = study_runs(out, settings)
    seconds: dict[str, float] = {}
    for run in full:
        train = run.phases[-1] * settings.batch_size / rates[run.key]
        evaluations = (run.phases[-1] // max(settings.eval_every, 1) + 1) * (settings.eval_examples or 256) / forward
        seconds[run.name] = train + evaluations + 10  # + start-up of each phase's process
    test_examples = int(json.loads((out / "data" / "statistics.json").read_text())["test_seqs"])
    receptive = 3 * settings.receptive_field_sequences * (settings.receptive_field_positions + 1)
    for seed in settings.seeds:
        models = len(model_entries(out, settings, seed))
        seconds[f"evaluate-seed{seed}"] = (2 * models * test_examples + receptive) / forward + 20
    # Two jobs at a time: the busiest slot sets the time (rows 5-7 are long and start early).
    slots = [0.0] * parallel
    for value in sorted(seconds.values(), reverse=True):
        slots[slots.index(min(slots))] += value
    projection = {"for": label, "steps_measured": steps, "examples_per_second": rates,
                  "inference_examples_per_second": forward,
                  "job_seconds": seconds, "total_job_minutes": sum(seconds.values()) / 60,
                  "projected_minutes": max(slots) / 60, "parallel": parallel, "machine": _machine(),
                  "note": "measured one job at a time; two jobs at once on 2 free cores run at about the same rate each"}
    atomic_write_text(out / "estimate.json", json.dumps(_jsonable(projection), indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return projection


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m senformer.study evaluate OUT SEED``: the study's own evaluation job (a subprocess)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 3 or arguments[0] != "evaluate":
        print("usage: python -m senformer.study evaluate OUT SEED", file=sys.stderr)
        return 2
    print(evaluate_seed(arguments[1], int(arguments[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
