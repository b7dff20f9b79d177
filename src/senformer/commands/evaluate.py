"""``senformer evaluate``: the official per-track Pearson of one or more models on a Basenji2 split."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .common import add_overwrite_argument, parse_named_weights
from .options import MAX_THREADS, add_attention_argument, add_device_argument, add_length_argument, add_progress_argument, whole


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score models on a Basenji2 split (pooled Pearson per track, per assay group)",
        description="Stream a Basenji2 split through one or more models and write metrics.json, per_assay.csv, "
        "per_track.csv, per_example_<name>.npz and, for several models, comparison.png into --out.",
    )
    parser.add_argument("--data", required=True, help="Basenji2 directory (statistics.json, tfrecords/, ...)")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--weights", action="append", required=True, metavar="[NAME=]PATH",
                        help="model weights: enformer (downloaded on first use) or a path in any format senformer "
                        "reads; repeat to compare models")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--head", default=None, help="output head (default: human, or the model's only head)")
    parser.add_argument("--genome", help="hg38, mm10 or a FASTA path, to rebuild longer inputs (default: zero flanks)")
    add_length_argument(parser).help = (
        "input length in bp: the records with flanks (--genome) or zeros on each side (default: the records' "
        "own length, e.g. 131,072 bp for Basenji2's; the published model's input is 196,608)")
    add_attention_argument(parser, help="override the attention kind")
    parser.add_argument("--batch-size", type=whole(1), default=1, help="examples per forward pass (default: 1)")
    add_device_argument(parser)
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast where the device computes it natively (elsewhere fp32, with a warning)")
    parser.add_argument("--rc-average", action="store_true", help="average with the reverse-complement prediction")
    parser.add_argument("--max-examples", type=whole(1), default=None, help="score at most this many examples (default: all)")
    parser.add_argument("--num-workers", type=whole(0, MAX_THREADS), default=0, help="DataLoader workers reading the records (default: 0)")
    parser.add_argument("--no-check-crc", action="store_true", help="skip the TFRecord CRC checks")
    add_overwrite_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..outputs import DIRECTORY, Output
    from ..inputs import dataset_digest, large_file_digest, weights_files_digest
    from .common import resolve_genome_options

    resolve_genome_options(args)
    device = resolve_device(args.device)
    named = parse_named_weights(args.weights)
    inputs = {"weights": {name: weights_files_digest(path) for name, path in named.items()},
              "data": dataset_digest(args.data, [args.split]),
              "genome": large_file_digest(args.genome) if args.genome else None}
    with Output(args.out, DIRECTORY, command="evaluate", settings=vars(args), inputs=inputs,
                overwrite=args.overwrite, device=device, paths=("data", "genome", "weights", "device")) as output:
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        return _evaluate(args, named, device, output)


def _evaluate(args: argparse.Namespace, named: dict[str, str], device, output) -> int:
    from ..data.basenji import BasenjiDataset, read_statistics
    from ..evaluate import evaluate
    from ..inference import resolve_sequence_length
    from ..hub import load_model
    from ..record import machine_info

    statistics = read_statistics(args.data)
    target_length = int(statistics["target_length"])
    overrides = {"target_length": target_length}
    if args.attention:
        overrides["attention"] = args.attention
    models, model_settings = {}, {}
    for name, path in named.items():
        model = load_model(path, overrides=overrides)
        models[name] = model
        model_settings[name] = {"weights": str(path), "attention": model.config.attention}
    if args.length is not None:
        sequence_length = resolve_sequence_length(model.config, args.length)
    else:  # the records as they are, as analyze and train read them (the published 196,608: --length 196608)
        sequence_length = statistics["seq_length"]
    heads = [set(model.heads) for model in models.values()]
    head = args.head or ("human" if all("human" in h for h in heads) else None)
    if head is None:
        common = set.intersection(*heads)
        if len(common) != 1:
            raise UserError(f"choose --head among {', '.join(sorted(common)) or '(no head common to all models)'}")
        head = common.pop()
    for name, model in models.items():
        tracks = model.config.output_heads.get(head)  # a missing head: evaluate() names it
        if tracks is not None and tracks != statistics["num_targets"]:
            raise UserError(
                f"model {name!r} head {head!r} predicts {tracks} tracks; {args.data} has {statistics['num_targets']}"
            )
    dataset = BasenjiDataset(
        args.data, args.split, genome=args.genome, sequence_length=sequence_length,
        max_examples=args.max_examples, check_crc=not args.no_check_crc,
    )
    if dataset.flanks == "zeros":
        print(f"senformer evaluate: no --genome: inputs are {dataset.input_description}", file=sys.stderr)
    result = evaluate(
        models, dataset, head, batch_size=args.batch_size, device=device, bf16=args.bf16,
        rc_average=args.rc_average, max_examples=args.max_examples, num_workers=args.num_workers,
        progress=args.progress,
        settings={"data": str(args.data), "genome": args.genome, "model_settings": model_settings,
                  "machine": machine_info(), "arguments": {k: v for k, v in vars(args).items() if k != "run"}},
    )
    folder = output.start()
    with output.writing("the evaluation results"):
        result.write(folder)
    out = output.finish(head=head, sequence_length=sequence_length)
    summary = result.per_assay()
    columns = ["assay_group", "tracks"] + [c for c in summary.columns if c.startswith(("pooled_", "per_example_"))]
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out}/metrics.json, per_assay.csv, per_track.csv" + (", comparison.png" if len(models) > 1 else ""))
    return 0
