"""``senformer analyze {compare,tracks,receptive-field,attribution,variants,genes}``: model comparison, tracks
against experiment, receptive field, attribution, variant effects and Borzoi's gene-level variant effects.

Each subcommand parses and checks its arguments, loads models with ``senformer.hub.load_model``, calls
one ``senformer.analysis`` function that writes the tables and figures into ``--out``, and writes the run
record (``run.json``: versions, commit, command line, resolved settings) beside them.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from .common import (
    add_overwrite_argument, add_shard_arguments, parse_named_weights, parse_set_options, resolve_genome_options,
)
from .options import SEED, SHIFTS, add_attention_argument, add_rc_argument, add_device_argument, add_length_argument, add_progress_argument, add_set_argument, add_tracks_argument, real, whole

if TYPE_CHECKING:  # torch is imported by the run functions, so that --help answers without it
    import torch


# Shared options --------------------------------------------------------------------------------
def _add_weights(parser: argparse.ArgumentParser, many: bool, required: bool = True) -> None:
    parser.add_argument("--weights", action="append", required=required, metavar="[NAME=]PATH",
                        help="model weights: enformer (the official model, downloaded on first use) or a native folder, TF "
                        "checkpoint or enformer-pytorch/HF folder"
                        + ("; repeat for each model" if many else ""))
    add_attention_argument(parser, many=True, help="run the weights with this attention kind instead of their own "
                           "(repeatable: one model per kind)" if many else "run the weights with this attention kind")
    add_set_argument(parser, help="override one config field of the loaded model (JSON value)")
    add_device_argument(parser)


def _add_data(parser: argparse.ArgumentParser, required: bool = True, batch_size: int = 2) -> None:
    parser.add_argument("--data", required=required, help="Basenji2-layout folder (or `senformer data synthetic` output)")
    parser.add_argument("--split", default="test", help="split to read (default: test)")
    parser.add_argument("--head", default="human", help="output head (default: human)")
    parser.add_argument("--genome", help="hg38, mm10 or a FASTA path, to extend the stored sequences to --length "
                        "(Basenji2 recipe)")
    parser.add_argument("--length", type=whole(1), default=None, metavar="BP", help="input bp (default: as stored)")
    parser.add_argument("--max-examples", type=whole(1), default=None, help="read at most this many examples")
    parser.add_argument("--batch-size", type=whole(1), default=batch_size, help=f"examples per batch (default: {batch_size})")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    add_overwrite_argument(parser)
    add_progress_argument(parser)


def load_models(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """``{name: model}`` for every ``--weights`` (times every ``--attention`` kind when given)."""
    from ..device import resolve_device
    from ..hub import WEIGHTS, load_model

    args.device = str(resolve_device(args.device))
    overrides = parse_set_options(args.set)
    kinds = args.attention or [None]
    models: dict[str, torch.nn.Module] = {}
    for name, path in parse_named_weights(args.weights).items():
        if not Path(path).exists() and not Path(path + ".index").exists() and path not in WEIGHTS:
            raise FileNotFoundError(f"weights not found: {path} (the official weights: `senformer download "
                                    "enformer`, then --weights enformer)")
        for kind in kinds:
            changes = {**overrides, **({"attention": kind} if kind else {})}
            label = name if len(kinds) == 1 else f"{name}-{kind}"
            model = load_model(path, overrides=changes or None)
            models[label] = model.to(args.device).eval()
    return models


def _single_model(args: argparse.Namespace) -> tuple[str, torch.nn.Module]:
    if len(args.weights) > 1 or (args.attention and len(args.attention) > 1):
        raise UserError(f"analyze {args.analysis} takes one --weights and at most one --attention")
    ((name, model),) = load_models(args).items()
    return name, model


def open_dataset(args: argparse.Namespace):
    from ..data.basenji import BasenjiDataset

    return BasenjiDataset(args.data, args.split, genome=args.genome, sequence_length=args.length,
                          max_examples=args.max_examples)


def _guarded(analysis):
    """``analysis(args, out) -> resolved settings`` run under the rule for ``--out``: up to date, refused,
    or computed into ``OUT.partial`` and moved onto ``OUT`` with its run record."""

    def run(args: argparse.Namespace) -> int:
        resolve_genome_options(args)
        with _analysis_output(args) as output:
            if output.up_to_date:
                print(f"{output.out} is up to date")
                return 0
            folder = output.start()
            with output.writing(f"the {args.analysis} results"):
                resolved = analysis(args, folder)
            verify = None
            if args.analysis in ("receptive-field", "attribution"):
                def verify(folder: Path) -> None:
                    _refuse_non_finite(folder, resolved.get("input", "the input"))
            output.finish(verify=verify, **resolved)
        print(f"wrote {output.out}")
        return 0

    run.__doc__ = analysis.__doc__
    return run


def _refuse_non_finite(folder: Path, what: str) -> None:
    """Model outputs and the scores made from them (ISM effects, receptive-field changes, gradient x input)
    must be finite as stored; a NaN or infinity is a broken model, never a finished result."""
    import numpy as np

    from ..outputs import first_non_finite

    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as arrays:
            for name in arrays.files:
                first = first_non_finite(arrays[name])
                if first is not None:
                    raise UserError(f"{what}: {name} in {path.name} is not finite at {first}: the model's outputs "
                                    "are broken (non-finite weights or an overflow)")


_INPUT_PATHS = ("weights", "data", "genome", "fasta", "evaluation", "device")


def _analysis_output(args: argparse.Namespace):
    """The lock and existing-output rule for ``--out`` (a folder), taken before any model or data is read:
    weights, dataset split, FASTA and an earlier evaluation count by the digests of their files."""
    from ..device import resolve_device
    from ..outputs import DIRECTORY, Output
    from ..inputs import dataset_digest, folder_digest, large_file_digest, weights_files_digest

    device = resolve_device(args.device) if getattr(args, "device", None) else None
    fasta = getattr(args, "fasta", None) or getattr(args, "genome", None)
    inputs = {
        "weights": {name: weights_files_digest(path) for name, path in parse_named_weights(args.weights or []).items()},
        "data": dataset_digest(args.data, [args.split]) if getattr(args, "data", None) else None,
        "fasta": large_file_digest(fasta) if fasta else None,
        "evaluation": folder_digest(args.evaluation) if getattr(args, "evaluation", None) else None,
    }
    return Output(args.out, DIRECTORY, command="analyze " + args.analysis, settings=vars(args), inputs=inputs,
                  overwrite=args.overwrite, device=device, paths=_INPUT_PATHS)


# Subcommands -----------------------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser("analyze", help="compare two models, tracks against experiment, receptive "
                                   "field, attribution, variant effects")
    analyses = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    compare = analyses.add_parser("compare", help="two models' per-example accuracy per assay group, side by side",
                                  description="Per example and assay group, each model's mean Pearson with the "
                                  "experiment; their correlation, win shares (ties apart) and the pooled correlation "
                                  "between the two models' predictions.")
    _add_weights(compare, many=True, required=False)
    _add_data(compare, required=False, batch_size=1)  # as `senformer evaluate`: the same scores as its run
    compare.add_argument("--evaluation", metavar="DIR",
                         help="reuse the per-example scores of a `senformer evaluate --out DIR` run instead of "
                         "running models (no prediction correlation then); --data adds its track table (default: "
                         "run the models)")
    compare.add_argument("--models", nargs=2, metavar=("A", "B"),
                         help="with --evaluation: the two model names (default: the two it holds)")
    compare.add_argument("--tie-tolerance", type=real(0), default=None, help="scores this close are a tie (default: 1e-6)")
    _add_common(compare)
    compare.set_defaults(run=run_compare)

    tracks = analyses.add_parser("tracks", help="predicted against observed tracks, and over-prediction per assay group",
                                 description="Plot chosen examples and tracks of several models against the "
                                 "experiment; summarise over-prediction per assay group over the whole split.")
    _add_weights(tracks, many=True)
    _add_data(tracks)
    tracks.add_argument("--examples", type=whole(0), nargs="+", default=[0], help="examples by position (default: 0)")
    add_tracks_argument(tracks, default_help="the first track of each assay group")
    _add_common(tracks)
    tracks.set_defaults(run=run_tracks)

    field = analyses.add_parser("receptive-field", help="how far single-base changes reach: the mean output change per bin",
                                description="Mutate K positions spread over N sequences (random, or from "
                                "--data) and record the mean absolute change per output bin, per model.")
    _add_weights(field, many=True)
    field.add_argument("--data", help="take sequences from this Basenji2-layout folder instead of random ones")
    field.add_argument("--split", default="test", help="split of --data (default: test)")
    field.add_argument("--head", default=None, help="output head (default: the model's first)")
    add_length_argument(field)
    field.add_argument("--sequences", type=whole(1), default=2, help="number of sequences N (default: 2)")
    field.add_argument("--positions", type=whole(1), default=16, help="mutated positions K (default: 16)")
    field.add_argument("--at", type=whole(0), nargs="+", default=None, help="mutate these bp instead (0-based) (default: K spread positions)")
    field.add_argument("--alternatives", choices=["all", "random"], default="all",
                       help="every other base, or one seeded other base (default: all)")
    add_tracks_argument(field, default_help="every track, averaged")
    field.add_argument("--batch-size", type=whole(1), default=8, help="mutated sequences per forward pass (default: 8)")
    field.add_argument("--seed", type=SEED, default=0, help="seed of the random sequences and positions (default: 0)")
    _add_plain_argument(field)
    _add_common(field)
    field.set_defaults(run=run_receptive_field)

    attribution = analyses.add_parser("attribution", help="gradient x input and in-silico mutagenesis",
                                      description="Explain the prediction summed over --bins and averaged over "
                                      "--tracks for a genome region (or a dataset example).")
    _add_weights(attribution, many=False)
    source = attribution.add_mutually_exclusive_group(required=True)
    source.add_argument("--region", help="chr:start-end (0-based half-open, resized around its centre to --length)")
    source.add_argument("--example", type=whole(0), help="example position in --data/--split")
    attribution.add_argument("--fasta", help="genome for --region: hg38, mm10 (downloaded on first use) or a FASTA path")
    attribution.add_argument("--data", help="Basenji2-layout folder for --example")
    attribution.add_argument("--split", default="test", help="split of --data (default: test)")
    attribution.add_argument("--head", default="human", help="output head (default: human)")
    add_length_argument(attribution)
    add_tracks_argument(attribution, default_help="every track, averaged")
    attribution.add_argument("--bins", type=whole(0), nargs="+", default=None, help="output bins (default: the centre bin)")
    attribution.add_argument("--ism-width", type=whole(0), default=64,
                             help="bp mutated by ISM around the input centre, 0 to skip (default: 64)")
    attribution.add_argument("--batch-size", type=whole(1), default=8, help="mutated sequences per forward pass (default: 8)")
    _add_plain_argument(attribution)
    _add_common(attribution)
    attribution.set_defaults(run=run_attribution)

    variants = analyses.add_parser(
        "variants", help="variant effect scores (SAD, center, logSAD, D2, REF, ALT) from a VCF/BCF",
        description="Score each VCF/BCF allele: alt minus ref predictions in variant-centred windows "
        "(--cluster-bp shares one window among nearby variants) or against anchors (--anchors, e.g. TSSs). Runs "
        "through the edit engine (--plain: whole windows). Defaults fit a cohort: an --out without a format "
        "suffix is written as compact HDF5 (OUT.h5, float32), only SAD is written unless --stats asks for more, "
        "and the expected size is said before the first window. Streams rows into OUT.partial, which a rerun "
        "with the same inputs resumes; OUT appears when complete.")
    _add_weights(variants, many=False)
    variants.add_argument("--vcf", required=True, help="VCF or BCF (plain, bgzip; indexed for fast --anchors); 1-based POS")
    variants.add_argument("--fasta", required=True, help="genome: hg38, mm10 (downloaded on first use) or a FASTA path "
                          "(with or without .fai)")
    variants.add_argument("--head", default="human", help="output head (default: human)")
    add_tracks_argument(variants)
    variants.add_argument("--targets", help="targets.txt naming the head's tracks (default: the shipped table)")
    add_length_argument(variants)
    variants.add_argument("--stats", default=",".join(STATS_DEFAULT), metavar="S1,S2,...",
                          help=f"scores to write, comma-separated, of {','.join(STATS)} (default "
                          f"{','.join(STATS_DEFAULT)}: each score adds 4 bytes per track and allele in .h5, about "
                          "13 in .tsv)")
    variants.add_argument("--center-bins", type=whole(1), default=3,
                          help="odd number of bins around the variant (or anchor) summed by `center` (default 3)")
    variants.add_argument("--cluster-bp", type=whole(0), default=0, metavar="N",
                          help="variants within N bp share one window and its reference (default 0: each "
                          "position centred exactly)")
    variants.add_argument("--anchors", metavar="BED",
                          help="one window per anchor (BED: name in column 4, strand in column 6), every variant "
                          "within --max-distance scored against it")
    variants.add_argument("--max-distance", type=whole(0), default=None, metavar="BP",
                          help="with --anchors: bp between a variant and its anchor (default: the input's half width)")
    add_rc_argument(variants)
    variants.add_argument("--shifts", type=SHIFTS, default=(0,), metavar="S1,S2,...",
                          help="also average over input shifts in bp, e.g. --shifts=-1,0,1 (default 0)")
    variants.add_argument("--allow-ref-mismatch", action="store_true",
                          help="score the other variants even when more than 10%% of the first 1,000 have a REF "
                          "that differs from the genome (mismatches are always skipped and noted)")
    _add_plain_argument(variants)
    variants.add_argument("--bf16", action="store_true",
                          help="bfloat16 autocast where the device computes it natively (elsewhere: one warning, "
                          "float32); the engine's difference from whole bf16 windows is within bf16's own error")
    variants.add_argument("--batch-size", type=whole(1), default=4, help="edits per transformer batch (default: 4)")
    variants.add_argument("--out", required=True, help="output: .h5 (compact float32), .tsv or .tsv.gz; a name "
                          "without a suffix gets .h5")
    add_overwrite_argument(variants)
    add_progress_argument(variants)
    add_shard_arguments(variants.add_argument_group("many processes (torchrun, job arrays)"))
    variants.set_defaults(run=run_variants)

    genes = analyses.add_parser(
        "genes", help="gene-level variant effects of Borzoi (SED, logSED over each gene's exons) from a VCF and a GTF",
        description="Per variant and gene, calico's SED and logSED: predicted coverage summed over the gene's exon "
        "bins (strand-matched tracks), alt minus ref and log2(1 + alt) - log2(1 + ref); replicates averaged score "
        "by score. Windows centred on each variant or on each gene; through the edit engine (--plain: whole "
        "windows). Variants outside every gene's window, genes without an exon bin in the window and REF "
        "mismatches are written as notes, never scored. Streams rows into OUT.partial, which a rerun with the same "
        "inputs resumes; OUT appears when complete.")
    genes.add_argument("--weights", action="append", required=True, metavar="PATH",
                       help="Borzoi weights (a name such as borzoi:0, or a file); repeat (or separate by commas) "
                       "for a replicate ensemble")
    genes.add_argument("--ensemble", action="store_true",
                       help="one --weights name stands for its replicates (borzoi: its four)")
    add_set_argument(genes, help="override one config field of the loaded model (JSON value)")
    add_device_argument(genes)
    genes.add_argument("--vcf", required=True, help="VCF or BCF (plain, bgzip); 1-based POS")
    genes.add_argument("--gtf", required=True, help="gene models (GTF, plain or gzip): each gene's exon rows")
    genes.add_argument("--fasta", required=True, help="genome: hg38, mm10 (downloaded on first use) or a FASTA path")
    genes.add_argument("--head", default="human", help="output head (default: human)")
    add_tracks_argument(genes, default_help="every track; a stranded pair is one column, read on the gene's own "
                        "strand, kept when either of its tracks is selected")
    genes.add_argument("--targets", help="Borzoi targets table of the head's tracks (default: the shipped table)")
    add_length_argument(genes)
    genes.add_argument("--centre", choices=["variant", "gene"], default="variant",
                       help="centre each window on the variant (calico's borzoi_sed) or on the gene's exonic "
                       "midpoint, one window for every variant near it (default: variant)")
    add_rc_argument(genes)
    genes.add_argument("--indels", choices=["refill", "calico"], default="refill",
                       help="refill: the window stays, the bases right of an indel move and the right end is "
                       "refilled (as for Enformer); calico: each allele cut around its own centre (bvcf.snp_seq1; "
                       "--centre variant, whole windows) (default: refill)")
    genes.add_argument("--stats", default="SED,logSED", metavar="S1,S2",
                       help="scores to write: SED, logSED or both (default: SED,logSED)")
    _add_plain_argument(genes)
    genes.add_argument("--batch-size", type=whole(1), default=4, help="edits per transformer batch (default: 4)")
    genes.add_argument("--out", required=True, help="output: .h5 (rows x tracks per stat) or .tsv")
    add_overwrite_argument(genes)
    add_progress_argument(genes)
    add_shard_arguments(genes.add_argument_group("many processes (torchrun, job arrays)"))
    genes.set_defaults(run=run_genes)


def _add_plain_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plain", action="store_true",
                        help="run every mutated window whole instead of through the edit engine (which runs the "
                        "conv trunk once and recomputes only the positions a mutation reaches; same results)")


@_guarded
def run_compare(args: argparse.Namespace, out: Path) -> dict:
    from ..analysis import compare
    from ..data.tracks import head_track_table

    if args.evaluation:
        if args.weights:
            raise UserError("give either --evaluation or --weights, not both")
        scores, example_index = compare.evaluation_scores(Path(args.evaluation), args.models)
        prediction_correlation = None
    else:
        if not args.weights or not args.data:
            raise UserError("compare needs --data and two --weights (or --evaluation DIR)")
        models = load_models(args)
        if len(models) != 2:
            raise UserError(f"compare needs exactly two models; got {len(models)} ({', '.join(models)})")
        scores, prediction_correlation, example_index = compare.score_models(
            models, open_dataset(args), args.head, args.batch_size, args.max_examples, progress=args.progress)
    names = list(scores)
    table = head_track_table(args.head, scores[names[0]].shape[1], args.data)
    tolerance = compare.TIE_TOLERANCE if args.tie_tolerance is None else args.tie_tolerance
    summary = compare.run_compare(out, scores, example_index, table, args.head, tolerance, prediction_correlation)
    resolved = dict(models=names, tie_tolerance=tolerance)
    print(summary.to_string(index=False))
    return resolved


@_guarded
def run_tracks(args: argparse.Namespace, out: Path) -> dict:
    from ..analysis.tracks import run_tracks as analyze_tracks

    models = load_models(args)
    result = analyze_tracks(out, models, open_dataset(args), args.head, tracks=args.tracks, targets=args.data,
                            examples=args.examples, batch_size=args.batch_size, max_examples=args.max_examples,
                            progress=args.progress)
    resolved = dict(models=list(models), tracks=result.tracks)
    print(result.per_group.to_string(index=False))
    return resolved


@_guarded
def run_receptive_field(args: argparse.Namespace, out: Path) -> dict:
    from ..analysis.receptive_field import dataset_tokens, random_sequences
    from ..analysis.receptive_field import run_receptive_field as analyze_receptive_field
    from ..inference import resolve_sequence_length

    models = load_models(args)
    length = resolve_sequence_length(next(iter(models.values())).config, args.length)
    if args.data:
        sequences = dataset_tokens(args.data, args.split, args.sequences, length)
    else:
        sequences = random_sequences(args.sequences, length, args.seed)
    summary = analyze_receptive_field(
        out, models, sequences, positions=args.at, num_positions=args.positions, alternatives=args.alternatives,
        head=args.head, tracks=args.tracks, targets=args.data, batch_size=args.batch_size, seed=args.seed,
        progress=args.progress, plain=args.plain)
    resolved = dict(models=list(models), sequence_length=length,
                    input=f"{args.data} split {args.split}" if args.data else f"random sequences (seed {args.seed})")
    for name, result in summary.items():
        share = sum(result["reach_share"]) / len(result["reach_share"])
        print(f"{name}: mutations change on average {share:.1%} of the output bins")
    return resolved


@_guarded
def run_attribution(args: argparse.Namespace, out: Path) -> dict:
    from ..analysis.attribution import example_input, region_input
    from ..analysis.attribution import run_attribution as analyze_attribution
    from ..inference import resolve_sequence_length

    name, model = _single_model(args)
    if args.region:
        if not args.fasta:
            raise UserError("--region needs --fasta")
        sequence, label = region_input(args.fasta, args.region, resolve_sequence_length(model.config, args.length))
    else:
        if not args.data:
            raise UserError("--example needs --data")
        sequence, label = example_input(args.data, args.split, args.example, args.length)
    summary = analyze_attribution(out, model, sequence, name=name, label=label, head=args.head, tracks=args.tracks,
                                  targets=args.data, bins=args.bins, ism_width=args.ism_width,
                                  batch_size=args.batch_size, progress=args.progress, plain=args.plain)
    resolved = dict(model=name, sequence_length=summary["sequence_length"], tracks=summary["tracks"], input=label)
    return resolved


# senformer.analysis.variants.STATS and DEFAULT_STATS, here so that --help answers without importing torch
STATS = ("SAD", "center", "logSAD", "D2", "REF", "ALT")
STATS_DEFAULT = ("SAD",)


def run_variants(args: argparse.Namespace) -> int:
    """The existing-output rule runs first (holding the lock), on the digests of the weights, VCF, anchors
    and targets; the genome counts row by row through the bases of each window."""
    from ..analysis.variants import (
        VariantOptions, check_up_to_date, default_suffix, output_format, read_anchors, summary_line,
        variants_fingerprint, variants_inputs, write_variant_scores,
    )
    from ..data.genome import Genome
    from ..device import resolve_device
    from ..outputs import FILE, Output, rank_device, refuse_split, resolve_shard, weights_record
    from .common import apply_threads, weights_of_output

    args.out = default_suffix(args.out)
    output_format(args.out)
    resolve_genome_options(args)
    if args.max_distance is not None and not args.anchors:
        raise UserError("--max-distance applies to --anchors windows")
    if args.anchors and args.cluster_bp:
        raise UserError("--cluster-bp applies to variant-centred windows, not --anchors (one window per anchor)")
    options = VariantOptions(
        head=args.head, tracks=tuple(args.tracks) if args.tracks else None, targets=args.targets,
        sequence_length=args.length, center_bins=args.center_bins, reverse_complement=args.rc,
        shifts=args.shifts, cluster_bp=args.cluster_bp, max_distance=args.max_distance,
        stats=tuple(stat.strip() for stat in args.stats.split(",") if stat.strip()), batch_size=args.batch_size,
        allow_ref_mismatch=args.allow_ref_mismatch, plain=args.plain, bf16=args.bf16)
    if not Path(args.vcf).is_file():
        raise FileNotFoundError(f"no such VCF/BCF file: {args.vcf}")
    if len(args.weights) > 1 or (args.attention and len(args.attention) > 1):
        raise UserError("analyze variants takes one --weights and at most one --attention")
    shard = resolve_shard(args.shard)
    apply_threads(args.threads)
    device = rank_device(resolve_device(args.device))
    args.device = str(device)  # a torchrun rank's own GPU
    anchors = read_anchors(args.anchors) if args.anchors else None
    inputs = variants_inputs(args.vcf, anchors, options)
    settings = {**vars(args), "shifts": list(options.shifts), "stats": list(options.stats), "device": str(device)}
    overrides = parse_set_options(args.set, args.attention[0] if args.attention else None)
    path = parse_named_weights(args.weights).popitem()[1]
    output = Output(args.out, FILE, command="analyze variants", overwrite=args.overwrite, device=device, shard=shard)
    with contextlib.ExitStack() as stack:
        if shard is None:
            stack.enter_context(output)
        weights = weights_of_output(output, path, overrides)
        fingerprint = variants_fingerprint(weights.identity, options, inputs)
        inputs["weights"] = weights_record(weights.identity, weights.files, overrides)
        if shard is None:
            output.decide(fingerprint, settings=settings, inputs=inputs)
        else:
            stack.enter_context(output.describe(fingerprint, settings=settings, inputs=inputs))
        genome = Genome(args.fasta)
        if shard is None and not output.up_to_date:
            refuse_split(output.out, output.fingerprint)
        if output.up_to_date:
            check_up_to_date(output.out, genome, args.vcf, anchors)
            print(f"{output.out} is up to date")
            return 0
        run = write_variant_scores(weights.load().to(device).eval(), genome, args.vcf, output, options,
                                   anchors=anchors, progress=args.progress)
    if run is None:
        print(f"wrote part {shard} of {args.out} into {output.sharded.folder}; the shard that ends last merges them")
        return 0
    print(summary_line(run))
    print(f"wrote {run.out}" + (f" from {shard.count} parts" if shard is not None else ""))
    return 0


def run_genes(args: argparse.Namespace) -> int:
    """The existing-output rule runs first (holding the lock) on the digests of the weights, VCF, GTF, FASTA
    and targets (a finished output of others refused, naming what differs; a partial of the same resumed); then
    the models load and the windows are scored (this shard's, when sharded)."""
    import dataclasses

    from ..analysis.gene_outputs import GeneOptions, output_format, refuse_other_inputs, track_axis, write_gene_scores
    from ..data.borzoi_targets import borzoi_track_table, read_borzoi_targets
    from ..data.genome import Genome
    from ..data.gtf import read_gtf
    from ..data.vcf import VariantFile
    from ..device import resolve_device
    from ..fingerprint import value_digest
    from ..inputs import input_digest, large_file_digest
    from ..model.ensemble import Ensemble
    from ..outputs import FILE, Output, rank_device, refuse_split, resolve_shard, weights_record
    from ..fingerprint import file_digest
    from .common import apply_threads, weights_of_output
    from .predict import ensemble_members

    output_format(args.out)
    resolve_genome_options(args)
    options = GeneOptions(head=args.head, sequence_length=args.length, centre=args.centre, reverse_complement=args.rc,
                          indels=args.indels, plain=args.plain, batch_size=args.batch_size,
                          stats=tuple(stat.strip() for stat in args.stats.split(",") if stat.strip()),
                          tracks=tuple(args.tracks) if args.tracks else None)
    for name, path in (("VCF/BCF", args.vcf), ("GTF", args.gtf), ("targets", args.targets)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"no such {name} file: {path}")
    genes = read_gtf(args.gtf)  # the inputs are read before any model: a user error costs no load
    table = read_borzoi_targets(args.targets) if args.targets else borzoi_track_table(args.head)
    track_axis(table, options.tracks, options.head)  # a --tracks value that selects nothing costs no load
    with VariantFile(args.vcf) as vcf:
        variants = list(vcf)
    members = [part.strip() for item in args.weights for part in item.split(",") if part.strip()]
    if args.ensemble:
        members = ensemble_members(",".join(members))
    shard = resolve_shard(args.shard)
    apply_threads(args.threads)
    device = rank_device(resolve_device(args.device))
    args.device = str(device)
    inputs = {"vcf": file_digest(args.vcf), "gtf": file_digest(args.gtf), "fasta": large_file_digest(args.fasta),
              "targets": input_digest(args.targets)}
    settings = {**vars(args), "device": str(device)}
    overrides = parse_set_options(args.set)
    output = Output(args.out, FILE, command="analyze genes", overwrite=args.overwrite, device=device, shard=shard)
    with contextlib.ExitStack() as stack:
        if shard is None:
            stack.enter_context(output)
        weights = weights_of_output(output, members[0] if len(members) == 1 else members, overrides)
        fingerprint = value_digest({"weights": weights.identity, "options": dataclasses.asdict(options),
                                    "inputs": inputs})
        inputs["weights"] = weights_record(weights.identity, weights.files, overrides)
        refuse_other_inputs(output, fingerprint, inputs, options)
        if shard is None:
            output.decide(fingerprint, settings=settings, inputs=inputs)
        else:
            stack.enter_context(output.describe(fingerprint, settings=settings, inputs=inputs))
        if shard is None and not output.up_to_date:
            refuse_split(output.out, output.fingerprint)
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        model = weights.load().to(device).eval()
        models = list(model.members) if isinstance(model, Ensemble) else [model]
        if not hasattr(models[0], "unet"):
            raise UserError("analyze genes scores Borzoi's RNA coverage at 32 bp: give Borzoi weights (e.g. "
                            "--weights borzoi --ensemble)")
        out = write_gene_scores(models, Genome(args.fasta), variants, genes, table, output, options,
                                progress=args.progress)
    if out is None:
        print(f"wrote part {shard} of {args.out}; the shard that ends last merges them")
        return 0
    print(f"wrote {out}" + (f" from {shard.count} parts" if shard is not None else ""))
    return 0
