"""The training loop: ``run_training(settings, out_dir)``.

One step trains every head in turn (human then mouse, as the official colab), each with its own batch and
its own optimizer update; ``grad_accumulation`` micro-batches make one update. Under ``torchrun`` the model
is wrapped in DDP (gloo on CPU, NCCL on GPU), each rank reads its own shard, and BatchNorm statistics in
training mode span all ranks (:class:`CrossRankBatchNorm`). Output directory::

    settings.json  config.json      resolved settings and model configuration
    inputs.json                     digests of the datasets, genomes, init and teacher weights (resume checks them)
    run.json                        the run record (command line, versions, commit, machine)
    log.jsonl      train_log.csv    eval_log.csv   curves.png
    checkpoints/step-XXXXXXXX.pt    the last ``keep_checkpoints`` (resume with ``resume=True``)
    weights/       config.json + model.safetensors (native format) of the final model

While it runs, rank 0 holds ``OUT.lock`` beside the folder (:class:`senformer.outputs.Output`): a second
run into the same folder is refused naming the holder.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import EnformerConfig
from ..device import use_bf16
from ..errors import UserError
from ..inference import predict_batch
from ..io import atomic_write_text, json_text, write_json
from ..model.enformer import Enformer
from ..outputs import DIRECTORY, Output
from ..weights import load_model, save_model
from . import checkpoint as ckpt
from .data import BasenjiSource, BatchStream, ExampleSource, eval_batches
from .distributed import (
    DistributedContext,
    all_reduce_mean_,
    all_reduce_sum_,
    barrier,
    convert_batchnorm,
    setup_distributed,
    teardown_distributed,
)
from .freeze import count_parameters, freeze, set_training_mode
from .losses import distillation_loss, training_loss
from .schedule import build_scheduler
from .settings import TrainSettings
from ..metrics import StreamingPearson
from .validation import all_reduce_pearson, summarise, track_groups


@dataclass
class HeadData:
    """Training and evaluation examples of one head; ``directory`` (optional) gives targets.txt groups."""

    train: ExampleSource
    eval: ExampleSource | None = None
    directory: str | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint of the last finished step was written first."""


# Building the pieces ------------------------------------------------------------------------------
def open_data(settings: TrainSettings) -> dict[str, HeadData]:
    """The Basenji2-layout datasets named in ``settings.data`` (train and evaluation splits)."""
    heads = {}
    for head, directory in settings.data.items():
        genome = settings.genome.get(head)
        common = dict(genome=genome, sequence_length=settings.sequence_length, seed=settings.seed)
        train = BasenjiSource(directory, settings.train_split, shuffle_buffer=settings.shuffle_buffer, **common)
        evaluation = BasenjiSource(directory, settings.eval_split, **common) if settings.eval_every else None
        heads[head] = HeadData(train, evaluation, directory)
    return heads


def build_model(settings: TrainSettings) -> tuple[Enformer, list[str]]:
    """The model to train and the names of its new heads' parameters (freshly initialised, always trained).

    From ``init_weights``, the weights decide the architecture and the settings change only what they name;
    ``init_skip`` tensors keep their fresh initialisation (they follow ``train`` like any other).
    """
    new_heads = dict(settings.new_heads)
    new_head_parameters = [f"heads.{name}.{part}" for name in new_heads for part in ("weight", "bias")]
    if settings.init_weights is None:
        values = settings.model_config_dict()
        values["output_heads"] = {**values["output_heads"], **new_heads}
        return Enformer(EnformerConfig.from_dict(values)), new_head_parameters
    model = load_model(
        settings.init_weights, settings.config_overrides(), new_heads=new_heads, skip=settings.init_skip
    )
    return model, new_head_parameters


def head_mismatch_message(head: str, tracks: int, have: int, directory: Any, from_weights: bool) -> str:
    """One line for a head whose track count differs from its dataset's, with the two ways out: a new head
    for the dataset, or (from scratch) a head of the dataset's size."""
    resize = ("or load the weights with --init-skip 'heads\\.' and --set output_heads=... of that size" if from_weights
              else f"or give the head {have} tracks: --set output_heads='{{\"{head}\": {have}}}'")
    where = f" ({directory})" if directory else ""
    return (f"head {head!r} predicts {tracks} tracks but its data{where} has {have}: train a new head for them "
            f"(--new-head NAME={have} --data NAME={directory or 'DIR'}) {resize}")


def load_teacher(settings: TrainSettings, heads: Mapping[str, int], device: torch.device) -> Enformer | None:
    if settings.teacher is None:
        return None
    teacher = load_model(settings.teacher)
    for head, tracks in heads.items():
        have = teacher.config.output_heads.get(head)
        if have != tracks:
            raise UserError(f"teacher {settings.teacher} has {have} tracks for head {head!r}, the student {tracks}")
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


# The run ------------------------------------------------------------------------------------------
def run_training(
    settings: TrainSettings,
    out_dir: str | os.PathLike,
    resume: bool = False,
    data: Mapping[str, HeadData] | None = None,
) -> Path:
    """Train as ``settings`` say; write logs, checkpoints and the final native weights under ``out_dir``.

    Args:
        settings: the resolved :class:`TrainSettings`.
        out_dir: output directory (created). It must not hold checkpoints unless ``resume``.
        resume: continue from the latest checkpoint in ``out_dir/checkpoints`` exactly.
        data: head -> :class:`HeadData` to use instead of ``settings.data`` (in-memory examples).
    Returns:
        the directory of the final weights (``out_dir/weights``).
    """
    owns_group = not (dist.is_available() and dist.is_initialized())
    context = setup_distributed(settings.device)
    finished = False
    try:
        with _run_folder_lock(Path(out_dir), context):
            # The inputs are proven before the model is built: a resume on other data, genome or weights
            # would continue a different run (the checkpoint can only compare its settings).
            inputs = ckpt.training_inputs(settings.to_dict(), data_given=data is not None)
            if resume:
                ckpt.check_inputs(Path(out_dir), inputs)
            trainer = Trainer(settings, Path(out_dir), context, data, inputs)
            try:
                path = trainer.run(resume)
                finished = True
                return path
            finally:
                # DDP's reducer holds the process group and sits in reference cycles: freed at interpreter
                # exit, gloo's threads are torn down with the interpreter half gone (an occasional abort).
                del trainer
                gc.collect()
    finally:
        if owns_group:
            teardown_distributed(synchronise=finished)


@contextlib.contextmanager
def _run_folder_lock(out_dir: Path, context: DistributedContext):
    """Rank 0 holds ``OUT.lock`` for the whole run (before the model is built); every rank learns if it failed.

    Under the lock no other run can be writing the folder, so the temporary files of killed checkpoint
    saves are removed.
    """
    with contextlib.ExitStack() as stack:
        refusal = None
        if context.is_main:
            try:
                stack.enter_context(Output(out_dir, DIRECTORY, command="train", grown=True))
            except UserError as error:
                refusal = error
            else:
                ckpt.remove_stale_partials(out_dir / "checkpoints")
        failed = torch.tensor([0.0 if refusal is None else 1.0], device=context.device)
        all_reduce_sum_(failed)
        if refusal is not None:
            raise refusal
        if failed.item():
            raise UserError(f"{out_dir} is being written by another run (rank 0 could not lock it)")
        yield


class Trainer:
    def __init__(self, settings: TrainSettings, out_dir: Path, context: DistributedContext,
                 data: Mapping[str, HeadData] | None, inputs: Mapping[str, Any] | None = None):
        self.settings, self.out_dir, self.context = settings, out_dir, context
        self.inputs = dict(inputs or {})
        if settings.threads:
            torch.set_num_threads(settings.threads)
        if settings.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        # The same seed on every rank for the model's initialisation; dropout differs per rank below.
        torch.manual_seed(settings.seed)
        np.random.seed(settings.seed % 2**32)
        self.data = dict(data) if data is not None else open_data(settings)
        if not self.data:
            raise UserError("no training data")
        model, fresh = build_model(settings)
        self.head_names = list(self.data)
        self.objective = training_loss(settings.loss, settings.total_weight)
        missing = [head for head in self.head_names if head not in model.heads]
        if missing:
            raise UserError(
                f"the model has no head {', '.join(map(repr, missing))} (heads: {', '.join(model.heads)}); "
                "add one with --new-head NAME=TRACKS"
            )
        for head in self.head_names:
            tracks, have = model.config.output_heads[head], self.data[head].train.num_tracks
            if have != tracks:
                raise UserError(head_mismatch_message(head, tracks, have, self.data[head].directory,
                                                      from_weights=settings.init_weights is not None))
        self.trainable = freeze(model, settings.train, extra=fresh)
        # A head without data never gets a gradient: freeze it, so DDP and Adam never see it.
        for name, parameter in model.named_parameters():
            if name.startswith("heads.") and name.split(".")[1] not in self.data:
                parameter.requires_grad_(False)
        self.trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        if not self.trainable:
            raise UserError(f"train={settings.train!r} leaves no trainable parameter for heads {', '.join(self.head_names)}")
        if context.enabled and settings.batchnorm == "cross-rank":
            convert_batchnorm(model)
        self.model = model.to(context.device)
        self.config = model.config
        self.teacher = load_teacher(settings, {h: model.config.output_heads[h] for h in self.head_names}, context.device)
        self.network: nn.Module = self.model
        if context.enabled:
            self.network = DistributedDataParallel(
                self.model,
                device_ids=[context.device.index] if context.device.type == "cuda" else None,
                # Heads alternate: a trainable head is unused in the other head's updates.
                find_unused_parameters=len(self.head_names) > 1
                and any(p.requires_grad for p in self.model.heads.parameters()),
            )
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            parameters, lr=settings.learning_rate, betas=settings.adam_betas, eps=settings.adam_eps,
            weight_decay=settings.weight_decay,
        )
        self.scheduler = build_scheduler(self.optimizer, settings.warmup_steps, settings.steps, settings.decay, settings.final_lr_factor)
        self.head_parameters = {
            head: [p for p in self.model.heads[head].parameters()] for head in self.head_names
        }
        self.streams = {
            head: BatchStream(
                self.data[head].train, settings.batch_size, context.rank, context.world_size, seed=settings.seed,
                max_shift=settings.shift, reverse=settings.reverse_complement, limit=settings.max_train_examples,
            )
            for head in self.head_names
        }
        self.groups = {
            head: track_groups(self.data[head].directory, model.config.output_heads[head]) for head in self.head_names
        }
        self.step = 0
        self.stop_requested = False
        # Where the CPU (or GPU) only emulates bf16 it is far slower than fp32: warn once and run fp32.
        self.bf16 = use_bf16(settings.bf16, context.device)
        # Dropout differs per rank (as on TPU replicas) but is reproducible.
        torch.manual_seed(settings.seed + 1000003 * context.rank)

    # Output helpers ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def log(self, record: dict[str, Any]) -> None:
        if not self.context.is_main:
            return
        with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json_text(record, indent=None) + "\n")

    def print(self, message: str) -> None:
        if self.context.is_main:
            print(message, file=sys.stderr, flush=True)

    # Checkpoints ------------------------------------------------------------------------------
    def _gather_rng(self) -> list[dict]:
        state = ckpt.rng_state()
        if not self.context.enabled:
            return [state]
        gathered: list[Any] = [None] * self.context.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def save(self) -> Path | None:
        rng = self._gather_rng()
        path = None
        if self.context.is_main:
            payload = {
                "config": self.config.to_dict(),
                "settings": self.settings.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "streams": {head: stream.state_dict() for head, stream in self.streams.items()},
                "rng": rng,
                "world_size": self.context.world_size,
            }
            path = ckpt.save_checkpoint(self.checkpoint_dir, self.step, payload, self.settings.keep_checkpoints)
        barrier()
        return path

    def restore(self, path: Path) -> None:
        payload = ckpt.load_checkpoint(path)
        ckpt.check_compatible(path, payload, self.config.to_dict(), self.settings.to_dict())
        if sorted(payload["streams"]) != sorted(self.streams):
            raise UserError(f"{path} trained heads {', '.join(payload['streams'])}, this run {', '.join(self.streams)}")
        if payload["step"] > self.settings.steps:
            raise UserError(f"{path} is at step {payload['step']}, beyond steps={self.settings.steps}")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        for head, state in payload["streams"].items():
            self.streams[head].load_state_dict(state)
        self.step = int(payload["step"])
        if payload["world_size"] == self.context.world_size:
            ckpt.set_rng_state(payload["rng"][self.context.rank])
        else:
            self.print(f"resuming {payload['world_size']} ranks' run on {self.context.world_size}: "
                       "data order and dropout continue, but not bit for bit")
            torch.manual_seed(self.settings.seed + 1000003 * self.context.rank + self.step)
        self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint (a crashed run's last steps are redone)."""
        log = self.out_dir / "log.jsonl"
        if not self.context.is_main or not log.is_file():
            return
        kept = [line for line in log.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write_text(log, "".join(line + "\n" for line in kept))

    # Steps ------------------------------------------------------------------------------------
    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.context.device.type, dtype=torch.bfloat16)

    def train_head(self, head: str) -> float:
        """One optimizer update of ``head``: ``grad_accumulation`` micro-batches; returns the mean loss."""
        settings, device = self.settings, self.context.device
        total = 0.0
        for micro in range(settings.grad_accumulation):
            batch = self.streams[head].next_batch()
            sequence = batch["sequence"].to(device, non_blocking=True)
            target = batch["target"].to(device, non_blocking=True)
            last = micro == settings.grad_accumulation - 1
            sync = contextlib.nullcontext() if last or not self.context.enabled else self.network.no_sync()
            with sync:
                teacher_prediction = None
                if self.teacher is not None and settings.distill_weight > 0:
                    with torch.no_grad(), self._autocast():
                        teacher_prediction = self.teacher(sequence, heads=[head])[head].float()
                with self._autocast():
                    prediction = self.network(sequence, heads=[head])[head]
                loss = distillation_loss(prediction, target, teacher_prediction, settings.distill_weight,
                                         self.objective)
                (loss / settings.grad_accumulation).backward()
            total += float(loss.detach())
        # The other heads took no part; drop any gradient DDP may have filled in so Adam leaves them alone.
        for other, parameters in self.head_parameters.items():
            if other != head:
                for parameter in parameters:
                    parameter.grad = None
        if settings.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], settings.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / settings.grad_accumulation

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Pooled Pearson per head (overall and per assay group), Poisson loss, and with a teacher the
        correlation with its predictions, over ``eval_examples`` of the evaluation split."""
        settings, device = self.settings, self.context.device
        self.model.eval()
        results: dict[str, Any] = {}
        try:
            for head in self.head_names:
                source = self.data[head].eval
                if source is None:
                    continue
                tracks = self.config.output_heads[head]
                sums = StreamingPearson(tracks)
                teacher_sums = StreamingPearson(tracks) if self.teacher is not None else None
                loss_sum = torch.zeros(2, dtype=torch.float64)
                batch_size = settings.eval_batch_size or settings.batch_size
                for batch in eval_batches(source, batch_size, self.context.rank, self.context.world_size, settings.eval_examples):
                    sequence, target = batch["sequence"], batch["target"]  # predictions come back on the CPU
                    prediction = predict_batch(self.model, sequence, heads=[head], bf16=self.bf16, device=device)[head]
                    sums.update(prediction, target)
                    loss_sum += torch.tensor([float(self.objective(prediction, target)) * len(target), len(target)], dtype=torch.float64)
                    if teacher_sums is not None:
                        teacher_prediction = predict_batch(self.teacher, sequence, heads=[head], bf16=self.bf16,
                                                           device=device)[head]
                        teacher_sums.update(prediction, teacher_prediction)
                all_reduce_pearson(sums)
                all_reduce_sum_(loss_sum)
                metrics = {"loss": float(loss_sum[0] / loss_sum[1]) if loss_sum[1] else float("nan")}
                metrics.update(summarise(sums.compute(), self.groups[head]))
                if teacher_sums is not None:
                    metrics.update(summarise(all_reduce_pearson(teacher_sums).compute(), self.groups[head], prefix="teacher_pearson"))
                results[head] = metrics
        finally:
            set_training_mode(self.model)
        return results

    # The loop ---------------------------------------------------------------------------------
    def run(self, resume: bool) -> Path:
        settings, context = self.settings, self.context
        existing = ckpt.latest_checkpoint(self.checkpoint_dir)
        if resume:
            if existing is None:
                raise UserError(f"--resume: {self.checkpoint_dir} holds no checkpoint")
            self.restore(existing)
            self.print(f"resumed from {existing} at step {self.step}")
        elif existing is not None:
            raise UserError(f"{self.out_dir} already holds checkpoints (latest {existing.name}); pass --resume to continue or choose a new --out")
        if context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "settings.json", settings.to_json() + "\n")
            if not resume:
                write_json(self.out_dir / ckpt.INPUTS_NAME, self.inputs)
            atomic_write_text(self.out_dir / "config.json", self.config.to_json() + "\n")
            Output(self.out_dir, DIRECTORY, command="train", settings=settings, inputs=self.inputs,
                   device=context.device, grown=True).write_record()
        trainable, total = count_parameters(self.model)
        self.print(
            f"training {trainable:,} of {total:,} parameters ({settings.train}); heads {', '.join(self.head_names)}; "
            f"{context.world_size} process(es) on {context.device}; batch {settings.batch_size} x "
            f"{settings.grad_accumulation} accumulation x {context.world_size} ranks"
        )
        if settings.warmup_steps > settings.steps:
            self.print(f"senformer train: warning: the warm-up ({settings.warmup_steps} steps) is longer than the run "
                       f"({settings.steps} steps): the learning rate reaches only {settings.steps / settings.warmup_steps:.0%} "
                       f"of {settings.learning_rate:g}; lower --warmup-steps or raise --steps")
        set_training_mode(self.model)
        with _stop_on_signals(self):
            self._loop()
        path = self.out_dir / "weights"
        if context.is_main:
            save_model(self.model, path)  # CrossRankBatchNorm keeps BatchNorm's names
            self.write_tables()
        barrier()
        return path

    def _loop(self) -> None:
        settings, context = self.settings, self.context
        from tqdm import tqdm

        progress = tqdm(total=settings.steps, initial=self.step, disable=not (settings.progress and context.is_main),
                        desc="train", unit="step", dynamic_ncols=True)
        window_loss = {head: [] for head in self.head_names}
        window_start, window_examples = time.perf_counter(), 0
        if self.step == 0 and settings.eval_every:
            self._evaluate_and_log()
        while self.step < settings.steps:
            learning_rate = self.scheduler.get_last_lr()[0]
            for head in self.head_names:
                window_loss[head].append(self.train_head(head))
            self.scheduler.step()
            self.step += 1
            window_examples += settings.batch_size * settings.grad_accumulation * context.world_size * len(self.head_names)
            progress.update(1)
            if self.step % settings.log_every == 0 or self.step == settings.steps:
                elapsed = time.perf_counter() - window_start
                losses = torch.tensor([np.mean(window_loss[h]) for h in self.head_names], dtype=torch.float64)
                all_reduce_mean_(losses)
                record = {"kind": "train", "step": self.step, "lr": learning_rate,
                          "examples_per_s": window_examples / max(elapsed, 1e-9), "memory_mb": _memory_mb(context.device)}
                record.update({f"loss/{h}": float(v) for h, v in zip(self.head_names, losses, strict=True)})
                self.log(record)
                progress.set_postfix({h: f"{float(v):.4f}" for h, v in zip(self.head_names, losses, strict=True)})
                window_loss = {head: [] for head in self.head_names}
                window_start, window_examples = time.perf_counter(), 0
            if settings.eval_every and (self.step % settings.eval_every == 0 or self.step == settings.steps):
                self._evaluate_and_log()
            at_interval = bool(settings.checkpoint_every) and self.step % settings.checkpoint_every == 0
            if at_interval or self.step == settings.steps:
                self.save()
            if self._should_stop():
                progress.close()
                if not (at_interval or self.step == settings.steps):
                    self.save()
                message = f"stopped at step {self.step}; checkpoint written, continue with --resume"
                self.print(message)
                raise TrainingInterrupted(message)
        progress.close()

    def _evaluate_and_log(self) -> None:
        metrics = self.evaluate()
        for head, values in metrics.items():
            self.log({"kind": "eval", "step": self.step, "head": head, "split": self.settings.eval_split, **values})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if "/" not in k)
            self.print(f"step {self.step} {head} {self.settings.eval_split}: {shown}")
        if self.context.is_main and metrics:
            self.write_tables()

    def _should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_requested else 0.0])
        if self.context.enabled:
            flag = flag.to(self.context.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def write_tables(self) -> None:
        """CSV views of log.jsonl and the curves PNG (rewritten whole, atomically)."""
        from .curves import write_curves, write_tables

        records = read_log(self.out_dir / "log.jsonl")
        write_tables(records, self.out_dir)
        write_curves(records, self.out_dir / "curves.png", title=f"{self.config.attention} attention, train={self.settings.train}")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM finish the current step, write a checkpoint and stop (a second signal aborts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def request_stop(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        trainer.print(f"signal {signal.Signals(signum).name}: stopping after this step")

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, request_stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

