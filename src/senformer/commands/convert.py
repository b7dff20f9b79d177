"""``senformer convert SRC DST``: any supported weights format -> the native format."""

from __future__ import annotations

import argparse

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

The configuration is inferred from the tensor shapes; every tensor is checked for presence and shape.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert Enformer weights (TF checkpoint, TF-Hub, enformer-pytorch/HF) to senformer's format",
        description="Read Enformer weights in any supported format, check every tensor's presence and shape, and "
        "write DST/config.json + DST/model.safetensors.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SRC", help="weights: TF checkpoint prefix, SavedModel folder, "
                        "enformer-pytorch/HF folder or state-dict file, or a native folder")
    parser.add_argument("destination", metavar="DST", help="output folder (created)")
    parser.add_argument("--format", choices=["native", "tf-checkpoint", "tf-savedmodel", "enformer-pytorch"],
                        help="source format (default: detected)")
    parser.add_argument("--attention", choices=["full", "chunked", "bigbird"], help="attention kind stored in the config")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field (JSON value), e.g. --set positional_basis_length=1536 "
                        "--set target_length=null")
    parser.add_argument("--partial", action="store_true",
                        help="load the tensors that match the (overridden) config and list the rest, instead of failing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..weights import load_model, save_model

    overrides = parse_set_options(args.set, args.attention)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the partial-load report is printed below instead
        model, report = load_model(args.source, overrides, strict=not args.partial, format=args.format, with_report=True)
    save_model(model, args.destination)
    config = model.config
    counts = model.parameter_counts()["total"]
    print(f"read {args.source} ({report.source_format}): dim {config.dim}, depth {config.depth}, heads {config.heads}, "
          f"key size {config.key_size}, output heads {config.output_heads}, attention {config.attention}, {counts:,} parameters")
    if not report.complete:
        print(f"partial load, {len(report.loaded)} tensors loaded; not loaded: {report.problems(limit=None)}")
    print(f"wrote {args.destination}/config.json and model.safetensors")
    return 0
