"""``senformer convert SRC DST``: any supported weights format -> the native format."""

from __future__ import annotations

import argparse

from .options import add_attention_argument, add_set_argument
from .common import parse_set_options

_EPILOG = """\
examples:
  # DeepMind's Sonnet checkpoint (the prefix of its .index / .data-00000-of-00001 files)
  senformer convert enformer-fine-tuned-human-1 enformer-native
  # a TF-Hub SavedModel folder (its variables/ checkpoint)
  senformer convert enformer_1/ enformer-native
  # enformer-pytorch / Hugging Face folder (EleutherAI/enformer-official-rough)
  senformer convert enformer-official-rough/ enformer-native
  # start a BigBird model from the official weights
  senformer convert enformer-fine-tuned-human-1 senformer-bigbird --attention bigbird
  # calico's Borzoi in Keras (a folder of model0.h5 human + model1.h5 mouse, or one .h5 per head)
  senformer convert saved_models/f3c0/train/ borzoi-native
  # borzoi-pytorch / Hugging Face Borzoi or Flashzoi (johahi/borzoi-replicate-0, johahi/flashzoi-replicate-0)
  senformer convert borzoi-replicate-0/ borzoi-native --set target_length=null

The configuration is inferred from the tensor shapes; every tensor is checked for presence and shape.
DST follows the rule for existing outputs: converted from the same files with the same settings, it is
up to date (nothing is done); from anything else it is replaced only with --overwrite.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert Enformer or Borzoi weights (TF checkpoint, TF-Hub, enformer-pytorch/HF, Keras .h5, "
        "borzoi-pytorch/HF) to senformer's format",
        description="Read Enformer or Borzoi weights in any supported format, check every tensor's presence and shape, and "
        "write DST/config.json + DST/model.safetensors.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SRC", help="weights: TF checkpoint prefix, SavedModel folder, "
                        "enformer-pytorch or borzoi-pytorch/HF folder or state-dict file, Keras .h5 file or folder, "
                        "or a native folder")
    parser.add_argument("destination", metavar="DST", help="output folder (created; DST/run.json records the "
                        "source files' digests)")
    parser.add_argument("--format", choices=["native", "tf-checkpoint", "tf-savedmodel", "enformer-pytorch", "keras-h5",
                                             "borzoi-pytorch"],
                        help="source format (default: detected)")
    add_attention_argument(parser, help="attention kind stored in the config")
    add_set_argument(parser, help="override a config field (JSON value), e.g. --set positional_basis_length=1536 "
                     "--set target_length=null")
    parser.add_argument("--partial", action="store_true",
                        help="load the tensors that match the (overridden) config and list the rest, instead of failing")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing DST converted from other files or settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    import warnings
    from pathlib import Path

    from ..fingerprint import file_digest, value_digest
    from ..hub import WEIGHTS, resolve_weights
    from ..outputs import DIRECTORY, Output
    from ..weights import detect_format, load_model, save_model
    from ..weights.loading import weights_files

    overrides = parse_set_options(args.set, args.attention)
    source = Path(args.source)
    if os.fspath(source) in WEIGHTS and not source.exists():
        source = resolve_weights(args.source)
    files = weights_files(source)
    if not files:
        detect_format(source)  # names what is missing in one line
    destination = Path(args.destination)
    settings = {"source": str(source), "format": args.format, "overrides": overrides, "partial": args.partial}
    with Output(destination, DIRECTORY, command="convert", overwrite=args.overwrite) as output:
        # The source's bytes and the settings that change the result; not its path, so a moved copy of the
        # same files is the same conversion.
        inputs = {file.name: file_digest(file) for file in files}
        fingerprint = value_digest({"inputs": inputs, "format": args.format, "overrides": overrides,
                                    "partial": args.partial})
        output.decide(fingerprint, settings=settings, inputs=inputs)
        if output.up_to_date:
            print(f"{destination} is up to date")
            return 0
        folder = output.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the report's notes and problems are printed below instead
            model, report = load_model(source, overrides, strict=not args.partial, format=args.format, with_report=True)
        with output.writing("the converted weights"):
            save_model(model, folder)
        output.finish()
    config = model.config
    counts = model.parameter_counts()["total"]
    print(f"read {args.source} ({report.source_format}): dim {config.dim}, depth {config.depth}, heads {config.heads}, "
          f"key size {config.key_size}, output heads {config.output_heads}, attention {config.attention}, {counts:,} parameters")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if not report.complete:
        print(f"partial load, {len(report.loaded)} tensors loaded; not loaded: {report.problems(limit=None)}")
    print(f"wrote {destination}/config.json and model.safetensors")
    return 0
