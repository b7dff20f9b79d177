"""``senformer train``: train or fine-tune from a YAML/JSON settings file and/or flags.

Flags override the file; the resolved settings are written to ``OUT/settings.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..config import PRESETS
from ..errors import UserError
from .common import parse_set_options
from ..constants import MAX_SHIFT
from .options import MAX_THREADS, SEED, add_attention_argument, add_progress_argument, add_set_argument, real, whole


def _default(name: str) -> str:
    """``(default: X)`` for a TrainSettings field: an absent flag leaves the settings file's value, else this."""
    from ..train.settings import TrainSettings

    fields = {f.name: f for f in dataclasses.fields(TrainSettings)}
    value = fields[name].default
    if value is None:
        return "(default: none)"
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f"(default: {value})"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train or fine-tune (full, attention-only, heads; distillation; resumable; torchrun)",
        description="Train on Basenji2-layout datasets. Settings come from --config (YAML or JSON) with flags on "
        "top; every setting is a field of senformer.train.TrainSettings, and the defaults below are its own "
        "(a flag left out keeps the settings file's value). Run under torchrun for many processes.",
    )
    parser.add_argument("--config", help="settings file (YAML or JSON mapping of TrainSettings fields)")
    parser.add_argument("--out", required=True, help="output directory (logs, checkpoints, weights/)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from the latest checkpoint in --out")
    data = parser.add_argument_group("data")
    data.add_argument("--data", action="append", default=[], metavar="[HEAD=]DIR",
                      help="dataset directory of a head (default head: human); repeat for mouse or new heads")
    data.add_argument("--genome", action="append", default=[], metavar="[HEAD=]FASTA",
                      help="genome to extend each record's sequence to --sequence-length")
    data.add_argument("--sequence-length", type=whole(1), help="input length in bp (default: the records' length)")
    data.add_argument("--max-train-examples", type=whole(1),
                      help="train on the first N examples only (default: the whole split)")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=sorted(PRESETS),
                       help="named configuration when training from scratch; with --init, its fields "
                       "(e.g. s-enformer-report: bigbird, no relative positions, key size 192) go on top of the "
                       f"weights' config {_default('preset')}")
    model.add_argument("--model-config", help="EnformerConfig JSON when training from scratch (replaces --preset)")
    add_attention_argument(model, help="attention kind (default: the preset's, or the --init weights')")
    add_set_argument(model, help="override one EnformerConfig field (JSON value), e.g. --set depth=2 or "
                     "--set output_heads='{\"human\": 8}'")
    model.add_argument("--init", dest="init_weights",
                       help="initial weights (any format senformer loads) (default: none, train from scratch)")
    model.add_argument("--init-skip", dest="init_skip", metavar="attention|REGEX",
                       help="tensors that keep their fresh initialisation instead of loading from --init (they may "
                       "differ in shape or be absent there): 'attention' (every attention module) or a regular "
                       "expression on tensor names; everything else must load exactly")
    model.add_argument("--new-head", action="append", default=[], metavar="NAME=TRACKS",
                       help="add a freshly initialised head for your own tracks (train it with --data NAME=DIR)")
    what = parser.add_argument_group("what trains and how")
    what.add_argument("--train", help=f"all | attention | heads | a regular expression on parameter names {_default('train')}")
    what.add_argument("--steps", type=whole(1), help=f"optimizer steps per head {_default('steps')}")
    what.add_argument("--batch-size", type=whole(1), help=f"examples per process and update {_default('batch_size')}")
    what.add_argument("--grad-accumulation", type=whole(1),
                      help=f"micro-batches per update {_default('grad_accumulation')}")
    what.add_argument("--lr", dest="learning_rate", type=real(above=0), help=f"peak learning rate {_default('learning_rate')}")
    what.add_argument("--warmup-steps", type=whole(0),
                      help=f"steps of linear learning-rate warm-up {_default('warmup_steps')}")
    what.add_argument("--decay", choices=["none", "cosine"], help=f"learning-rate decay after warm-up {_default('decay')}")
    what.add_argument("--clip-grad-norm", type=real(above=0), help=f"clip the gradient norm at this {_default('clip_grad_norm')}")
    what.add_argument("--shift", type=whole(0, MAX_SHIFT), help=f"random shift of up to +-N bp (0: off) {_default('shift')}")
    what.add_argument("--no-reverse-complement", dest="reverse_complement", action="store_false", default=None,
                      help="no reverse-complement augmentation (default: augment)")
    what.add_argument("--teacher", help="full-attention teacher weights for distillation (default: none)")
    what.add_argument("--distill-weight", type=real(0, at_most=1),
                      help=f"0: data loss only, 1: teacher only {_default('distill_weight')}")
    from ..train.settings import LOSSES  # no torch: --help stays fast

    what.add_argument("--loss", choices=LOSSES,
                      help=f"poisson (Enformer's) or poisson_mn (Borzoi's: total + shape) {_default('loss')}")
    what.add_argument("--total-weight", type=real(0), help=f"poisson_mn's weight of the total term {_default('total_weight')}")
    what.add_argument("--batchnorm", choices=["cross-rank", "local"],
                      help=f"BatchNorm statistics across processes or per process {_default('batchnorm')}")
    what.add_argument("--bf16", action="store_true", default=None,
                      help="bfloat16 autocast where the device computes it natively (else fp32, with a warning)")
    what.add_argument("--checkpoint-activations", action="store_true", default=None,
                      help="recompute transformer activations in backward")
    what.add_argument("--checkpoint-conv-tower", action="store_true", default=None,
                      help="activation checkpointing of the stem and conv tower (the full-resolution activations)")
    run = parser.add_argument_group("evaluation, checkpoints, hardware")
    run.add_argument("--eval-every", type=whole(0), help=f"steps between validations (0: never) {_default('eval_every')}")
    run.add_argument("--eval-examples", type=whole(1),
                     help=f"validation examples per evaluation {_default('eval_examples')}; none: the whole split")
    run.add_argument("--eval-split", help=f"split to validate on {_default('eval_split')}")
    run.add_argument("--checkpoint-every", type=whole(0), help=f"steps between checkpoints {_default('checkpoint_every')}")
    run.add_argument("--keep-checkpoints", type=whole(1), help=f"checkpoints kept {_default('keep_checkpoints')}")
    run.add_argument("--log-every", type=whole(1), help=f"steps between log lines {_default('log_every')}")
    run.add_argument("--seed", type=SEED, help=f"random seed {_default('seed')}")
    run.add_argument("--deterministic", action="store_true", default=None,
                     help="torch.use_deterministic_algorithms (slower)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"],
                     help=f"auto (CUDA when available, else CPU), cpu or cuda (under torchrun, each process "
                     f"its local rank's GPU) {_default('device')}")
    run.add_argument("--threads", type=whole(1, MAX_THREADS), help="torch threads per process (default: torch's choice)")
    add_progress_argument(run, default=None)
    parser.set_defaults(run=run_command)


_SCALAR_FLAGS = (
    "sequence_length", "max_train_examples", "preset", "model_config", "attention", "init_weights", "init_skip", "train",
    "steps", "batch_size", "grad_accumulation", "learning_rate", "warmup_steps", "decay", "clip_grad_norm", "shift",
    "reverse_complement", "teacher", "distill_weight", "loss", "total_weight", "batchnorm", "bf16", "checkpoint_activations",
    "checkpoint_conv_tower", "eval_every", "eval_examples", "eval_split", "checkpoint_every", "keep_checkpoints",
    "log_every", "seed", "deterministic", "device", "threads", "progress",
)


def _head_paths(items: list[str], flag: str) -> dict[str, str]:
    result = {}
    for item in items:
        head, sep, path = item.partition("=")
        if not sep:
            head, path = "human", item
        if not head.isidentifier():
            raise UserError(f"{flag} {item!r}: expected [HEAD=]PATH with an identifier head name")
        result[head] = path
    return result


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (absent flags are None and do not override the file)."""
    overrides: dict[str, Any] = {name: getattr(args, name) for name in _SCALAR_FLAGS if getattr(args, name) is not None}
    if args.data:
        overrides["data"] = _head_paths(args.data, "--data")
    if args.genome:
        overrides["genome"] = _head_paths(args.genome, "--genome")
    if args.set:
        overrides["model_overrides"] = parse_set_options(args.set)
    if args.new_head:
        heads = {}
        for item in args.new_head:
            name, sep, tracks = item.partition("=")  # NAME=TRACKS, as --data HEAD=DIR
            if not sep or not tracks.isdigit():
                raise UserError(f"--new-head expects NAME=TRACKS, got {item!r}")
            heads[name] = int(tracks)
        overrides["new_heads"] = heads
    return overrides


def resolve_names(settings, progress: bool = True):
    """``settings`` with genome and weights names (``hg38``, ``enformer``; from flags or a settings file)
    resolved to their cached paths here, at the edge: training below opens paths only."""
    import dataclasses

    from .common import genome_path, weights_path

    return dataclasses.replace(
        settings, genome={head: genome_path(path, progress) for head, path in settings.genome.items()},
        init_weights=weights_path(settings.init_weights, progress), teacher=weights_path(settings.teacher, progress))


def run_command(args: argparse.Namespace) -> int:
    from ..train import TrainSettings, run_training
    from ..train.settings import merge_settings

    overrides = flag_overrides(args)
    if args.config:
        settings = TrainSettings.from_file(args.config, overrides)
    else:
        settings = TrainSettings.from_dict(merge_settings({}, overrides), source="command line")
    weights = run_training(resolve_names(settings, progress=settings.progress is not False), args.out,
                           resume=args.resume)
    print(weights)
    return 0
