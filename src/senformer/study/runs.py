"""The study's settings and its training runs: :class:`StudySettings`, the rows (:data:`ROWS`), every
(row, seed) ``senformer train`` run (:func:`study_runs`, :func:`execute_run`, resumable), the scheduler that
runs jobs two at a time after their dependencies (:func:`run_jobs`), and :func:`prepare`, which records the
settings and writes the dataset and row 1's model into ``OUT``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import UserError
from ..io import write_json
from ..outputs import move_into_place

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
# Issue 23's rows (design "issue-23"), each on row 1's frozen weights, steps, learning rate and data order
# unless said otherwise; row numbers extend the recorded study's.
DESIGN_ROWS: dict[str, tuple[str, str]] = {
    "no-attention": ("2b", "retrained from scratch without attention (attention frozen at its zero output)"),
    "fresh-report-built": ("6a", "the report's layer as built: std-0.02 output projection, q/k/v biases, "
                                 "re-initialised trainable pre-attention LayerNorm, random blocks from blocks "
                                 "1..round(0.375 x blocks)"),
    "fresh-nopos": ("6b", "fresh bigbird without positions at our key size (separates key size from positions)"),
    "fresh-rotary": ("6c", "fresh bigbird with rotary positions instead of relative ones"),
    "fresh-absolute": ("6d", "fresh bigbird with absolute (sinusoidal) positions instead of relative ones"),
    "full-continued": ("7c", "row 1 continued, every weight, for row 7's steps (row 7's control)"),
    "full-deep": ("1D", "row 1 with a deeper transformer, from scratch"),
    "fresh-ours-deep": ("5D", "row 5 on the deeper row 1"),
    "full-plateau": ("1p", "row 1 trained to a plateau of validation long-range Pearson (stopping rule recorded)"),
}
ROWS.update(DESIGN_ROWS)
DESIGNS = ("issue-14", "issue-23")
# Rows trained fresh_steps on row 1's weights (reported at row 4's steps and at fresh_steps), per design.
DESIGN_FRESH = ("fresh-report-built", "fresh-nopos", "fresh-rotary", "fresh-absolute", "full-continued")
# Tensors the report's layer re-initialises and trains: the attention and the LayerNorm before it.
ATTENTION_AND_NORM = r"^transformer\.\d+\.(attention|attention_norm)\."
# Every parameter except the attention modules': a model trained with attention at its zero output.
NOT_ATTENTION = r"^(?!transformer\.\d+\.attention\.)"
# The report's plan: Google BigBird at 1,536 positions in blocks of 64 draws random blocks from 1-9 of 24.
REPORT_RANDOM_FRACTION = 9 / 24


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
    # Issue 23 (benchmarks/study/settings.json): "issue-14" is the recorded study's rows, "issue-23" adds
    # DESIGN_ROWS. Rows outside ``conclusion_rows`` run on the first ``other_seeds`` seeds (None: all).
    design: str = "issue-14"
    conclusion_rows: tuple[str, ...] = ()
    other_seeds: int | None = None
    deep_depth: int = 0  # layers of the deeper model's rows (0: none)
    # Row 1 to a plateau: validation every ``every`` steps (a multiple of eval_every); stop once the best of
    # the last ``patience`` points beats the best before them by less than ``min_gain``, or at ``max_steps``.
    plateau: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "lr_factors", tuple(float(f) for f in self.lr_factors))
        object.__setattr__(self, "data_overrides", dict(self.data_overrides))
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "conclusion_rows", tuple(str(r) for r in self.conclusion_rows))
        object.__setattr__(self, "plateau", dict(self.plateau))
        problems = []
        if self.design not in DESIGNS:
            problems.append(f"design {self.design!r} must be one of {', '.join(DESIGNS)}")
        unknown_rows = sorted(set(self.conclusion_rows) - set(ROWS))
        if unknown_rows:
            problems.append(f"conclusion_rows names unknown rows {', '.join(unknown_rows)}")
        if self.other_seeds is not None and not 1 <= self.other_seeds <= len(self.seeds):
            problems.append(f"other_seeds={self.other_seeds} must be between 1 and the {len(self.seeds)} seeds")
        if self.plateau:
            missing = sorted({"every", "patience", "min_gain", "max_steps"} - set(self.plateau))
            if missing:
                problems.append(f"plateau lacks {', '.join(missing)}")
            elif int(self.plateau["every"]) % max(self.eval_every, 1) or int(self.plateau["every"]) < 1:
                problems.append(f"plateau every={self.plateau['every']} must be a positive multiple of eval_every={self.eval_every}")
            elif int(self.plateau["max_steps"]) < self.full_steps + int(self.plateau["every"]):
                problems.append(f"plateau max_steps={self.plateau['max_steps']} must reach at least one validation "
                                f"point past row 1's full_steps={self.full_steps}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds {list(self.seeds)} must be distinct and at least one")
        # A factor names its runs and models (``lr3``, ``lr x3``): two that print alike would share a run.
        if any(not factor > 0 for factor in self.lr_factors) or \
                len({f"{factor:.3g}" for factor in self.lr_factors}) != len(self.lr_factors):
            problems.append(f"lr_factors {list(self.lr_factors)} must be positive and distinct to 3 significant digits")
        for name in ("batch_size", "full_steps", "finetune_steps", "fresh_multiple", "bootstrap",
                     "receptive_field_sequences", "receptive_field_positions", "test_batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if problems:
            raise UserError("invalid study settings: " + "; ".join(problems))

    @property
    def fresh_steps(self) -> int:
        return self.fresh_multiple * self.finetune_steps

    @property
    def fresh_reported_steps(self) -> tuple[int, ...]:
        """The steps rows 5-7 are reported at: row 4's and ``fresh_steps`` (one step count when the multiple is 1)."""
        return tuple(dict.fromkeys((self.finetune_steps, self.fresh_steps)))

    def quick(self) -> "StudySettings":
        """One seed and a quarter of the steps (curves every quarter of the old interval)."""
        eval_every = max(1, self.eval_every // 4)
        plateau = {**self.plateau, "every": eval_every * max(1, int(self.plateau["every"]) // max(self.eval_every, 1)),
                   "max_steps": max(1, int(self.plateau["max_steps"]) // 4)} if self.plateau else {}
        return dataclasses.replace(
            self, seeds=self.seeds[:1], full_steps=max(1, self.full_steps // 4),
            finetune_steps=max(1, self.finetune_steps // 4), eval_every=eval_every,
            full_warmup_steps=self.full_warmup_steps // 4, finetune_warmup_steps=self.finetune_warmup_steps // 4,
            other_seeds=None if self.other_seeds is None else 1, plateau=plateau,
        )

    def seeds_of(self, key: str) -> tuple[int, ...]:
        """The seeds row ``key`` runs on: all of them for a conclusion row (or without ``other_seeds``)."""
        if self.other_seeds is None or key in self.conclusion_rows:
            return self.seeds
        return self.seeds[: self.other_seeds]

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["seeds"], values["lr_factors"] = list(self.seeds), list(self.lr_factors)
        values["conclusion_rows"] = list(self.conclusion_rows)
        # The recorded study's settings file predates issue 23's fields: written only when set.
        defaults = {"design": "issue-14", "conclusion_rows": [], "other_seeds": None, "deep_depth": 0, "plateau": {}}
        for name, default in defaults.items():
            if values[name] == default:
                del values[name]
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
    stop: Mapping[str, Any] | None = None  # a plateau rule: phases end early once it holds (no snapshots)
    # The run this one goes on from (its settings, logs and last checkpoint, optimiser state included), and
    # that run's steps: a continuation trains the same run further, exactly as if it had not stopped.
    continues: str | None = None
    first_step: int = 0


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
        for key in (key for key in FRESH_ROWS if seed in settings.seeds_of(key)):
            runs.append(Run(run_name(key, seed), key, seed, (*fine_tuning(seed, settings.finetune_learning_rate),
                                                             *layers[key]),
                            settings.fresh_reported_steps, (run_name(ROW_1, seed),)))
    for seed in settings.seeds:
        pretrained = ["--attention", "bigbird", "--train", "attention"]
        if seed in settings.seeds_of("finetune"):
            runs.append(Run(run_name("finetune", seed), "finetune", seed,
                            (*fine_tuning(seed, settings.finetune_learning_rate), *pretrained),
                            (settings.finetune_steps,), (run_name(ROW_1, seed),)))
        if seed not in settings.seeds_of("finetune-distill"):
            continue
        runs.append(Run(run_name("finetune-distill", seed), "finetune-distill", seed,
                        (*fine_tuning(seed, settings.finetune_learning_rate), *pretrained, "--teacher", row1(seed),
                         "--distill-weight", repr(settings.distill_weight)),
                        (settings.finetune_steps,), (run_name(ROW_1, seed),)))
    if settings.design == "issue-23":
        runs += _design_runs(out, settings, common, fine_tuning, row1, layers)
    seed = settings.seeds[0]
    for factor in settings.lr_factors:
        for key in LR_ROWS:
            runs.append(Run(run_name(key, seed, factor), key, seed,
                            (*fine_tuning(seed, settings.finetune_learning_rate * factor), *layers[key]),
                            (settings.finetune_steps,), (run_name(ROW_1, seed),)))
    return runs


def _design_runs(out: Path, settings: StudySettings, common, fine_tuning, row1, layers) -> list[Run]:
    """Issue 23's runs (:data:`DESIGN_ROWS`), each on the seeds :meth:`StudySettings.seeds_of` gives it. Their
    rules read them at rows 5-7's steps only: no snapshot at row 4's (a start-up and an evaluation each)."""
    no_positions = ["--init-skip", "attention", "--attention", "bigbird", "--set", "relative_positions=false",
                    "--train", "attention"]
    on_row1 = {
        "fresh-report-built": [*layers["fresh-report"][:-2], "--set", "attention_bias=true", "--set",
                               "attention_output_init=normal", "--set", f"random_block_fraction={REPORT_RANDOM_FRACTION!r}",
                               "--train", ATTENTION_AND_NORM],
        "fresh-nopos": no_positions,
        "fresh-rotary": [*no_positions[:-2], "--set", "added_positions=rotary", "--train", "attention"],
        "fresh-absolute": [*no_positions[:-2], "--set", "added_positions=absolute", "--train", "attention"],
        "full-continued": ["--train", "all"],
    }
    on_row1["fresh-report-built"][1] = ATTENTION_AND_NORM  # --init-skip: the LayerNorm starts afresh too
    runs: list[Run] = []

    def from_scratch(key: str, seed: int, extra: Sequence[str], phases: tuple[int, ...], stop=None) -> Run:
        return Run(run_name(key, seed), key, seed, (
            *common(seed, settings.eval_every), "--model-config", str(out / "model.json"),
            "--set", f"attention_seed={seed}", "--lr", repr(settings.full_learning_rate),
            "--warmup-steps", str(settings.full_warmup_steps), "--checkpoint-every", str(settings.eval_every * 2),
            *extra), phases, stop=stop)

    for key in ("no-attention", *DESIGN_FRESH):
        for seed in settings.seeds_of(key):
            if key == "no-attention":
                runs.append(from_scratch(key, seed, ["--train", NOT_ATTENTION], (settings.full_steps,)))
            else:
                runs.append(Run(run_name(key, seed), key, seed,
                                (*fine_tuning(seed, settings.finetune_learning_rate), *on_row1[key]),
                                (settings.fresh_steps,), (run_name(ROW_1, seed),)))
    if settings.deep_depth:
        for seed in settings.seeds_of("full-deep"):
            deep = run_name("full-deep", seed)
            runs.append(from_scratch("full-deep", seed, ["--set", f"depth={settings.deep_depth}"], (settings.full_steps,)))
            # Fresh layers of ours on the deeper trunk: the fresh-versus-trained contrast at depth.
            arguments = list(fine_tuning(seed, settings.finetune_learning_rate))
            arguments[arguments.index("--init") + 1] = str(out / "runs" / deep / "weights")
            runs.append(Run(run_name("fresh-ours-deep", seed), "fresh-ours-deep", seed,
                            (*arguments, *layers["fresh-ours"]), (settings.fresh_steps,), (deep,)))
    if settings.plateau:
        # Row 1 itself trained on (its checkpoint and optimiser state), not a new model from scratch.
        every, most = int(settings.plateau["every"]), int(settings.plateau["max_steps"])
        start = settings.full_steps
        for seed in settings.seeds_of("full-plateau"):
            row = run_name(ROW_1, seed)
            runs.append(Run(run_name("full-plateau", seed), "full-plateau", seed, (),
                            (*range(start + every, most, every), most), (row,), stop=dict(settings.plateau),
                            continues=row, first_step=start))
    return runs


def plateau_reached(directory: Path, rule: Mapping[str, Any]) -> bool:
    """The stopping rule on a run's validation points (``pearson/long-range``): at least ``patience`` points
    after the first, and the best of the last ``patience`` beats the best before them by < ``min_gain``."""
    points = []
    log = directory / "log.jsonl"
    for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
        record = json.loads(line) if line.strip() else {}
        if record.get("kind") == "eval" and record.get("pearson/long-range") is not None:
            points.append(float(record["pearson/long-range"]))
    patience = int(rule["patience"])
    if len(points) <= patience:
        return False
    return max(points[-patience:]) - max(points[:-patience]) < float(rule["min_gain"])


def _train_command(arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "senformer", "train", *arguments]


def _one_thread_environment() -> dict[str, str]:
    environment = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environment[name] = "1"
    return environment


def snapshot_path(directory: Path, step: int) -> Path:
    return directory / f"weights-step-{step}"


# A finished piece of the study is its folder's run record, written by the study under one of these commands.
DATA, RUN, EVALUATION = "study data", "study run", "study evaluate"


def finished(folder: Path, command: str) -> dict | None:
    """The run record the study wrote into ``folder`` once it was complete (``command``: :data:`DATA`,
    :data:`RUN` or :data:`EVALUATION`), else None."""
    from ..outputs import DIRECTORY, Output

    record = Output(folder, DIRECTORY, command=command, grown=True).recorded()
    return record if record is not None and record.get("command") == command else None


def produced(folder: Path, command: str) -> str | None:
    """The digest of what a finished piece produced (a run: its final weights), None while unfinished."""
    return ((finished(folder, command) or {}).get("settings") or {}).get("produced")


def data_output(out: Path, settings: StudySettings):
    """The study's dataset as one Output: made once from its size, seed and overrides, into ``data.partial``."""
    from ..outputs import DIRECTORY, Output

    return Output(out / "data", DIRECTORY, command=DATA, settings={
        "size": settings.data_size, "seed": settings.data_seed, "overrides": dict(settings.data_overrides)})


def run_output(run: Run, out: Path, **record: Any):
    """A training run's folder as one Output, grown by ``senformer train`` phase by phase: its fingerprint is
    the run's arguments (paths inside ``out`` apart) and phases, the dataset's fingerprint and what the runs it
    starts from produced; ``record``: what its run record keeps besides."""
    from ..outputs import DIRECTORY, Output, fingerprint

    inputs = {"data": (finished(out / "data", DATA) or {}).get("fingerprint"),
              **{name: produced(out / "runs" / name, RUN) for name in run.depends}}
    inside = str(out)
    settings = {"arguments": ["OUT" + argument[len(inside):] if argument.startswith(inside) else argument
                              for argument in run.arguments], "phases": list(run.phases),
                **({"continues": run.continues, "first_step": run.first_step} if run.continues else {})}
    return Output(out / "runs" / run.name, DIRECTORY, command=RUN, settings={**settings, **record}, inputs=inputs,
                  fingerprint=fingerprint(RUN, settings, inputs), grown=True)


def execute_run(run: Run, out: Path, log: Callable[[str], None]) -> str:
    """Train ``run`` to its last phase, resuming whatever a killed attempt left; returns what was done. A run is
    done exactly when its run record (:func:`run_output`) carries this run's fingerprint."""
    from ..fingerprint import value_digest
    from ..outputs import weights_identity
    from ..train.checkpoint import latest_checkpoint
    from ..weights import load_model

    directory = out / "runs" / run.name
    output = run_output(run, out)
    recorded = finished(directory, RUN)
    if recorded is not None and recorded.get("fingerprint") == output.fingerprint:
        return "skipped (done)"
    if recorded is not None:
        shutil.rmtree(directory)  # finished from other inputs: train it again
    # Phases whose weights were kept are finished; without a checkpoint to continue from, start over.
    first = 0
    while first < len(run.phases) - 1 and (snapshot_path(directory, run.phases[first]) / "model.safetensors").is_file():
        first += 1
    if run.stop is not None:
        # No snapshots: resume from the checkpoint, at the first phase past the steps it holds.
        first = _phase_after_checkpoint(directory, run.phases)
    if latest_checkpoint(directory / "checkpoints") is None:
        shutil.rmtree(directory, ignore_errors=True)  # a start that wrote no checkpoint leaves nothing to keep
        first = 0
        if run.continues is not None:
            _seed_continuation(out / "runs" / run.continues, directory, run.first_step)
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
        with open(directory / "train.out", "a", encoding="utf-8") as transcript:
            transcript.write("$ " + " ".join(command) + "\n")
            transcript.flush()
            status = subprocess.run(command, stdout=transcript, stderr=subprocess.STDOUT,
                                    env=_one_thread_environment()).returncode
        if status != 0:
            raise UserError(f"run {run.name} failed (exit {status}); see {directory / 'train.out'}")
        if run.stop is not None and plateau_reached(directory, run.stop):
            done.append(f"plateau at step {steps}")
            break
        if index < len(run.phases) - 1 and run.stop is None:
            snapshot = snapshot_path(directory, steps)
            temporary = snapshot.with_name(snapshot.name + ".partial")
            shutil.rmtree(temporary, ignore_errors=True)
            shutil.copytree(directory / "weights", temporary)
            move_into_place(temporary, snapshot)
    ran = output.recorded()  # senformer train's own record, kept inside the run's
    # The weights by their tensors and configuration: a resumed run that saves the same weights again writes
    # other bytes (safetensors' metadata has no fixed order), and what reads them stays up to date.
    weights = value_digest(weights_identity(load_model(directory / "weights")))
    run_output(run, out, produced=weights, ran=ran).write_record()
    log(f"{run.name}: {', '.join(done)}")
    return ", ".join(done)


def _seed_continuation(source: Path, directory: Path, steps: int) -> None:
    """Start ``directory`` as ``source`` stood at its end: its settings, inputs, logs and the checkpoint of
    step ``steps`` (weights, optimiser, data position, random states), so ``--resume`` trains the same run on.
    Assembled in ``directory.partial`` and renamed: a killed copy leaves no half-seeded run."""
    from ..train.checkpoint import checkpoint_step, latest_checkpoint

    checkpoint = latest_checkpoint(source / "checkpoints")
    reached = None if checkpoint is None else checkpoint_step(checkpoint)
    if reached != steps:
        raise UserError(f"{source} should end with the checkpoint of step {steps} to continue from, "
                        f"but its latest is {checkpoint}")
    temporary = directory.with_name(directory.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    (temporary / "checkpoints").mkdir(parents=True)
    for name in ("settings.json", "config.json", "inputs.json", "log.jsonl", "train_log.csv", "eval_log.csv"):
        if (source / name).is_file():
            shutil.copy2(source / name, temporary / name)
    shutil.copy2(checkpoint, temporary / "checkpoints" / Path(checkpoint).name)
    move_into_place(temporary, directory)


def _phase_after_checkpoint(directory: Path, phases: Sequence[int]) -> int:
    from ..train.checkpoint import checkpoint_step, latest_checkpoint

    latest = latest_checkpoint(directory / "checkpoints")
    if latest is None:
        return 0
    reached = checkpoint_step(latest)
    return next((index for index, steps in enumerate(phases) if steps > reached), len(phases) - 1)


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


# The study folder: settings, data, row 1's model ---------------------------------------------------------
def prepare(out: Path, settings: StudySettings, fresh: bool = False, record: bool = True) -> None:
    """Record the settings (refusing a different earlier study in ``out``), write the data and row 1's model."""
    from ..data.basenji import read_statistics
    from ..data.synthetic import make_synthetic

    out.mkdir(parents=True, exist_ok=True)
    recorded = out / "study-settings.json"
    if fresh:
        for name in ("data", "data.partial", "runs", "evaluation", "model.json", "study-settings.json",
                     "sessions.json"):
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
        write_json(recorded, settings.to_dict())
    with data_output(out, settings) as output:
        if not output.up_to_date:
            make_synthetic(output.start(), settings.data_size, seed=settings.data_seed, **settings.data_overrides)
            output.finish()
    statistics = read_statistics(out / "data")
    model = {**settings.model, "attention": "full", "output_heads": {HEAD: int(statistics["num_targets"])},
             "target_length": int(statistics["target_length"])}
    write_json(out / "model.json", model)



def _machine() -> dict[str, Any]:
    from ..record import machine_info

    info = {key: value for key, value in machine_info().items() if key != "hostname"}
    info["threads"] = 1  # every job: one torch thread, OMP_NUM_THREADS=1
    return info
