"""``senformer predict``: tracks for genomic regions (FASTA + BED / --region) or given sequences -> HDF5."""

from __future__ import annotations

import argparse
import contextlib

from ..errors import UserError
from .common import add_overwrite_argument, add_shard_arguments
from .options import SHIFTS, add_attention_argument, add_rc_argument, add_device_argument, add_length_argument, add_progress_argument, add_set_argument, add_tracks_argument, whole

_EPILOG = """\
examples:
  senformer predict --weights enformer --fasta hg38 --regions peaks.bed --out peaks.h5
  senformer predict --weights enformer --fasta hg38 --region chr11:5,225,000-5,230,000 \\
      --tracks 'CAGE.*K562' --rc --shifts=-1,0,1 --bigwig tracks/ --out hbb.h5
  senformer predict --weights enformer --sequence-fasta inputs.fa --tfhub-input --out seqs.h5
  senformer predict --weights enformer --attention bigbird --set target_length=null \\
      --length 393216 --fasta hg38.fa --region chr1:1,000,000-1,300,000 --out long.h5
  senformer predict --weights borzoi --ensemble --fasta hg38 --region chr11:5,225,000-5,230,000 \\
      --tracks 'RNA:.*K562' --rc --coverage --bigwig borzoi_tracks/ --out hbb_borzoi.h5

Coordinates are 0-based half-open (BED). Each region is resized around its centre to the model's input
(196,608 bp by default, Borzoi's 524,288; N beyond chromosome ends); regions longer than one output window
(114,688 bp in 128-bp bins; Borzoi's 523,264 bp in 32-bp bins) are tiled with overlapping windows and
stitched. The bin size, crop and track table come from the weights (docs/outputs.md). Results stream into OUT.partial, which a rerun with the same
inputs resumes (rows whose genome bases changed are computed again), and OUT appears only when complete; an
existing OUT of the same inputs is up to date, one of other inputs needs --overwrite (see
docs/developers/output-rule.md). Predictions are stored as float16: a value beyond 65,504 stops the run naming
the region and track.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict tracks for genomic regions or sequences into HDF5 (and bigWig)",
        description="Predict Enformer tracks for regions of a genome or for sequences given directly.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--weights", required=True, help="enformer (the official model, downloaded on first use) or "
                        "weights in any format senformer reads (see `senformer convert`)")
    inputs.add_argument("--fasta", help="genome: hg38, mm10 (downloaded on first use) or a FASTA path (plain or bgzip; "
                        "the .fai index is created when missing)")
    inputs.add_argument("--regions", help="BED file of regions (plain or gzip; 4th column = name)")
    inputs.add_argument("--region", action="append", default=[], metavar="CHR:START-END",
                        help="a region (repeatable), e.g. chr11:5,225,000-5,230,000")
    inputs.add_argument("--sequence-fasta", help="FASTA of sequences to predict as they are (each of the input length)")
    inputs.add_argument("--tfhub-input", action="store_true",
                        help="the sequences are 393,216 bp (TF-Hub's input); use their central 196,608 bp as TF-Hub does")
    model = parser.add_argument_group("model")
    add_attention_argument(model, help="attention kind (same weights)")
    add_set_argument(model, help="override a config field, e.g. --set target_length=null for outputs that grow with --length")
    add_length_argument(model)
    add_device_argument(model)
    model.add_argument("--bf16", action="store_true",
                       help="bfloat16 autocast where the device computes it natively (faster, less precise; "
                       "elsewhere fp32, with a warning)")
    model.add_argument("--batch-size", type=whole(1), default=1, help="input windows per forward pass (default 1)")
    averaging = parser.add_argument_group("averaging")
    add_rc_argument(averaging)
    averaging.add_argument("--shifts", type=SHIFTS, default=(0,), metavar="S1,S2,...",
                           help="average over input shifts in bp, e.g. --shifts=-1,0,1 (write it with =; default 0)")
    averaging.add_argument("--ensemble", action="store_true",
                           help="average several models' predictions: the replicates --weights names (borzoi: its "
                           "four), or a comma-separated list of weights files, e.g. --weights a.safetensors,b.safetensors")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", required=True, help="HDF5 output file")
    outputs.add_argument("--head", action="append", dest="heads", metavar="HEAD", help="head to keep (repeatable; default all)")
    add_tracks_argument(outputs, "every track; with several heads a value may match in only some of them, and "
                        "heads where nothing matches are left out")
    outputs.add_argument("--targets", help="targets.txt with track descriptions (e.g. to split mouse ChIP)")
    outputs.add_argument("--embeddings", action="store_true", help="also store the trunk embeddings (2 x dim per bin)")
    outputs.add_argument("--coverage", action="store_true",
                         help="Borzoi: undo the squashed scale its tracks were trained in (calico's rule, from the "
                         "track table's scale, clip_soft and sum_stat), so values are the experiment's coverage times "
                         "the track's scale; stored as float32")
    outputs.add_argument("--unscale", action="store_true", help="with --coverage: divide out each track's scale too")
    outputs.add_argument("--bigwig", metavar="DIR", help="also write one bigWig per chosen track into DIR (needs pybigtools)")
    add_overwrite_argument(outputs)
    add_progress_argument(outputs, help="no progress bar (it counts input windows: a long region tiles into several)")
    add_shard_arguments(parser.add_argument_group("many processes (torchrun, job arrays)"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.genome import Genome, parse_region, read_bed
    from ..device import resolve_device
    from ..outputs import DIRECTORY, FILE, Output, rank_device, refuse_split, resolve_shard, weights_record
    from ..predict import PredictOptions, predict
    from ..predict.options import prediction_fingerprint, prediction_inputs, region_names
    from ..predict.run import check_bases, write_bigwig_output
    from .common import apply_threads, parse_set_options, resolve_genome_options, weights_of_output

    resolve_genome_options(args)
    has_regions = bool(args.regions or args.region)
    if args.sequence_fasta and (args.fasta or has_regions):
        raise UserError("give either --sequence-fasta or --fasta with --regions/--region, not both")
    if not args.sequence_fasta and not (args.fasta and has_regions):
        raise UserError("need --fasta with --regions or --region (or --sequence-fasta)")
    if args.bigwig and args.sequence_fasta:
        raise UserError("bigWig output needs genome coordinates: use --fasta with regions, not --sequence-fasta")
    shard = resolve_shard(args.shard)
    apply_threads(args.threads)
    device = rank_device(resolve_device(args.device))
    options = PredictOptions(
        sequence_length=args.length, heads=tuple(args.heads) if args.heads else None,
        tracks=tuple(args.tracks) if args.tracks else None,
        targets=args.targets, reverse_complement=args.rc, shifts=args.shifts, batch_size=args.batch_size,
        device=str(device), bf16=args.bf16, embeddings=args.embeddings, tfhub_input=args.tfhub_input,
        coverage=args.coverage, unscale=args.unscale,
    )
    weights_paths = ensemble_members(args.weights) if args.ensemble else args.weights
    if not args.ensemble and "," in args.weights:
        raise UserError(f"--weights {args.weights}: several weights are averaged with --ensemble")
    regions = None
    if has_regions:
        regions = [parse_region(text) for text in args.region]
        if args.regions:
            regions += list(read_bed(args.regions))
    # The rule for an existing --out runs before the model is loaded: the weights' identity comes from the
    # record of an earlier run with the same weights files, else from the model (senformer.outputs.recipe).
    inputs = prediction_inputs(regions, args.sequence_fasta, args.targets)
    settings = {**vars(args), "shifts": list(options.shifts), "device": str(device)}
    overrides = parse_set_options(args.set, args.attention)
    names = region_names(regions) if regions is not None else []
    if shard is not None:
        output = Output(args.out, FILE, command="predict", overwrite=args.overwrite, device=device, shard=shard)
        weights = weights_of_output(output, weights_paths, overrides)
        fingerprint = prediction_fingerprint(weights.identity, options, inputs)
        inputs["weights"] = weights_record(weights.identity, weights.files, overrides)
        output.describe(fingerprint, settings=settings, inputs=inputs)
        genome = Genome(args.fasta) if args.fasta else None
        with output:
            if output.up_to_date:
                check_bases(output.out, genome, names)
                path, verb = output.out, "is up to date"
            else:
                path = predict(weights.load(), output, genome=genome, regions=regions, sequences=args.sequence_fasta,
                               options=options, progress=args.progress)
                verb = "wrote"
        if path is None:
            print(f"wrote part {shard} of {args.out} into {output.sharded.folder}; the shard that ends last merges them")
            return 0
        if args.bigwig:  # the merging shard (or a rerun) writes them from the merged file
            write_bigwig_output(Output(args.bigwig, DIRECTORY, command="predict", settings=settings, inputs=inputs,
                                       fingerprint=output.fingerprint, overwrite=args.overwrite, device=device),
                                path, genome)
        print(f"{path} is up to date" if verb != "wrote" else f"wrote {path} from {shard.count} parts"
              + (f" and {args.bigwig}" if args.bigwig else ""))
        return 0
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(Output(args.out, FILE, command="predict", overwrite=args.overwrite,
                                            device=device))
        bigwig = None
        if args.bigwig:
            bigwig = stack.enter_context(Output(args.bigwig, DIRECTORY, command="predict",
                                                overwrite=args.overwrite, device=device))
        weights = weights_of_output(output, weights_paths, overrides, also=[bigwig] if bigwig else [])
        fingerprint = prediction_fingerprint(weights.identity, options, inputs)
        inputs["weights"] = weights_record(weights.identity, weights.files, overrides)
        for each in [output] + ([bigwig] if bigwig else []):
            each.decide(fingerprint, settings=settings, inputs=inputs)
        genome = Genome(args.fasta) if args.fasta else None
        if not output.up_to_date:
            refuse_split(output.out, output.fingerprint)
        if output.up_to_date:
            check_bases(output.out, genome, names)
            if bigwig is None or bigwig.up_to_date:
                print(f"{output.out} is up to date" + (f" (and {bigwig.out})" if bigwig else ""))
                return 0
            path = output.out  # only the bigWigs are due: they come from the file, not the model
        else:
            path = predict(weights.load(), output, genome=genome, regions=regions, sequences=args.sequence_fasta,
                           options=options, progress=args.progress)
        if bigwig is not None:
            write_bigwig_output(bigwig, path, genome)
    print(f"wrote {path}" + (f" and {args.bigwig}" if args.bigwig else ""))
    return 0


def ensemble_members(weights: str) -> list[str]:
    """``--ensemble``'s models: the comma-separated weights of ``--weights``, or the replicates its one name
    stands for (:func:`senformer.hub.replicates`)."""
    from ..hub import replicates

    members = [part.strip() for part in weights.split(",") if part.strip()]
    return replicates(members[0]) if len(members) == 1 else members
