"""``senformer analyze {compare,tracks,receptive-field,attribution,variants}``: the report's analyses.

Each subcommand loads models with ``senformer.weights.load_model``, calls ``senformer.analysis``, and
writes JSON/CSV/NPZ/PNG plus ``settings.json`` (the resolved arguments) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import __version__
from ..errors import UserError
from .common import parse_named_weights, parse_set_options
from ..io import atomic_path, atomic_write_text


# Shared options --------------------------------------------------------------------------------
def _add_weights(parser: argparse.ArgumentParser, many: bool, required: bool = True) -> None:
    parser.add_argument("--weights", action="append", required=required, metavar="[NAME=]PATH",
                        help="model weights (native folder, TF checkpoint, enformer-pytorch/HF)"
                        + ("; repeat for each model" if many else ""))
    parser.add_argument("--attention", action="append", default=None, choices=["full", "chunked", "bigbird"],
                        help="run the weights with this attention kind instead of their own (repeatable: "
                        "one model per kind)" if many else "run the weights with this attention kind")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one config field of the loaded model (JSON value)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _add_data(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--data", required=required, help="Basenji2-layout folder (or `senformer data synthetic` output)")
    parser.add_argument("--split", default="test", help="split to read (default test)")
    parser.add_argument("--head", default="human", help="output head (default human)")
    parser.add_argument("--genome", help="FASTA to extend the stored sequences to --length (Basenji2 recipe)")
    parser.add_argument("--length", type=int, default=None, help="input bp (default: as stored)")
    parser.add_argument("--max-examples", type=int, default=None, help="read at most this many examples")
    parser.add_argument("--batch-size", type=int, default=2)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def load_models(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """``{name: model}`` for every ``--weights`` (times every ``--attention`` kind when given)."""
    from ..weights import load_model

    overrides = parse_set_options(args.set)
    kinds = args.attention or [None]
    models: dict[str, torch.nn.Module] = {}
    for name, path in parse_named_weights(args.weights).items():
        if not Path(path).exists() and not Path(path + ".index").exists():
            raise FileNotFoundError(f"weights not found: {path}")
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

    genome = None
    if args.genome:
        from ..data.genome import Genome

        genome = Genome(args.genome)
    return BasenjiDataset(args.data, args.split, genome=genome, sequence_length=args.length,
                          max_examples=args.max_examples)


def write_settings(out: Path, args: argparse.Namespace, **extra: Any) -> None:
    values = {key: value for key, value in vars(args).items() if key not in ("run",) and not callable(value)}
    record = {"command": "senformer analyze " + args.analysis, "arguments": values, **extra,
              "versions": {"senformer": __version__, "torch": torch.__version__, "numpy": np.__version__,
                           "python": platform.python_version()}}
    atomic_write_text(out / "settings.json", json.dumps(record, indent=2, default=str) + "\n")


def write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, default=_json_default, allow_nan=True) + "\n")


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def save_figure(path: Path, figure) -> None:
    from ..report import figure_png

    with atomic_path(path) as temporary:
        temporary.write_bytes(figure_png(figure))


def _input_length(model, requested: int | None) -> int:
    """--length, else 196,608 when the model takes it, else four times the model's shortest input."""
    from ..constants import SEQUENCE_LENGTH

    config = model.config
    if requested is not None:
        config.validate_sequence_length(requested)
        return requested
    if config.target_length is None or config.target_length * config.bin_size * 2 >= SEQUENCE_LENGTH:
        return SEQUENCE_LENGTH
    return 4 * config.min_sequence_length()


# Subcommands -----------------------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser("analyze", help="the report's analyses: compare, tracks, receptive field, "
                                   "attribution, variant effects")
    analyses = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    compare = analyses.add_parser("compare", help="Figure 6: two models' per-example accuracy per assay group",
                                  description="Per example and assay group, each model's mean Pearson with the "
                                  "experiment; their correlation, win shares (ties apart) and the pooled correlation "
                                  "between the two models' predictions.")
    _add_weights(compare, many=True, required=False)
    _add_data(compare, required=False)
    compare.add_argument("--evaluation", metavar="DIR",
                         help="reuse the per-example scores of a `senformer evaluate --out DIR` run instead of "
                         "running models (no prediction correlation then); --data adds its track table")
    compare.add_argument("--models", nargs=2, metavar=("A", "B"),
                         help="with --evaluation: the two model names (default: the two it holds)")
    compare.add_argument("--tie-tolerance", type=float, default=None, help="scores this close are a tie (default 1e-6)")
    _add_common(compare)
    compare.set_defaults(run=run_compare)

    tracks = analyses.add_parser("tracks", help="Figure 7: predicted against observed tracks; over-prediction",
                                 description="Plot chosen examples and tracks of several models against the "
                                 "experiment; summarise over-prediction per assay group over the whole split.")
    _add_weights(tracks, many=True)
    _add_data(tracks)
    tracks.add_argument("--examples", type=int, nargs="+", default=[0], help="examples by position (default 0)")
    tracks.add_argument("--tracks", nargs="+", default=None,
                        help="tracks by index, identifier or description (default: first of each assay group)")
    _add_common(tracks)
    tracks.set_defaults(run=run_tracks)

    field = analyses.add_parser("receptive-field", help="Figure 8: how far single-base changes reach",
                                description="Mutate K positions spread over N sequences (random, or from "
                                "--data) and record the mean absolute change per output bin, per model.")
    _add_weights(field, many=True)
    field.add_argument("--data", help="take sequences from this Basenji2-layout folder instead of random ones")
    field.add_argument("--split", default="test")
    field.add_argument("--head", default=None, help="output head (default: the model's first)")
    field.add_argument("--length", type=int, default=None, help="input bp (default 196,608, or 4x the "
                       "shortest input of a model with a short target_length)")
    field.add_argument("--sequences", type=int, default=2, help="number of sequences N (default 2)")
    field.add_argument("--positions", type=int, default=16, help="mutated positions K (default 16)")
    field.add_argument("--at", type=int, nargs="+", default=None, help="mutate these bp instead (0-based)")
    field.add_argument("--alternatives", choices=["all", "random"], default="all",
                       help="every other base, or one seeded other base (default all)")
    field.add_argument("--tracks", type=int, nargs="+", default=None, help="track positions averaged (default all)")
    field.add_argument("--batch-size", type=int, default=8)
    field.add_argument("--seed", type=int, default=0)
    _add_common(field)
    field.set_defaults(run=run_receptive_field)

    attribution = analyses.add_parser("attribution", help="gradient x input and in-silico mutagenesis",
                                      description="Explain the prediction summed over --bins and averaged over "
                                      "--tracks for a genome region (or a dataset example).")
    _add_weights(attribution, many=False)
    source = attribution.add_mutually_exclusive_group(required=True)
    source.add_argument("--region", help="chr:start-end (0-based half-open, resized around its centre to --length)")
    source.add_argument("--example", type=int, help="example position in --data/--split")
    attribution.add_argument("--fasta", help="genome FASTA for --region")
    attribution.add_argument("--data", help="Basenji2-layout folder for --example")
    attribution.add_argument("--split", default="test")
    attribution.add_argument("--head", default="human")
    attribution.add_argument("--length", type=int, default=None, help="input bp")
    attribution.add_argument("--tracks", type=int, nargs="+", default=None, help="track positions (default all)")
    attribution.add_argument("--bins", type=int, nargs="+", default=None, help="output bins (default: the centre bin)")
    attribution.add_argument("--ism-width", type=int, default=64,
                             help="bp mutated by ISM around the input centre, 0 to skip (default 64)")
    attribution.add_argument("--batch-size", type=int, default=8)
    _add_common(attribution)
    attribution.set_defaults(run=run_attribution)

    variants = analyses.add_parser("variants", help="variant effect scores (SAD and centre) from a VCF",
                                   description="Score each VCF allele: alt minus ref predictions, averaged with "
                                   "the reverse complement, summed over all bins (SAD) and the centre bins. "
                                   "Streams rows to OUT and resumes an interrupted run.")
    _add_weights(variants, many=False)
    variants.add_argument("--vcf", required=True, help="VCF (plain or gzip); 1-based POS")
    variants.add_argument("--fasta", required=True, help="genome FASTA (with or without .fai)")
    variants.add_argument("--head", default="human")
    variants.add_argument("--tracks", nargs="+", default=None, help="tracks by index, identifier or description")
    variants.add_argument("--targets", help="targets.txt naming the head's tracks (default: the shipped table)")
    variants.add_argument("--length", type=int, default=None, help="input bp (default 196,608)")
    variants.add_argument("--center-bins", type=int, default=3, help="odd number of centre bins (default 3)")
    variants.add_argument("--no-rc", action="store_true", help="do not average with the reverse complement")
    variants.add_argument("--skip-ref-mismatch", action="store_true",
                          help="write a NaN row instead of stopping when REF disagrees with the genome")
    variants.add_argument("--batch-size", type=int, default=4)
    variants.add_argument("--out", required=True, help="output TSV")
    variants.add_argument("--quiet", action="store_true")
    variants.set_defaults(run=run_variants)


def run_compare(args: argparse.Namespace) -> int:
    from ..analysis.common import load_track_table
    from ..analysis.compare import TIE_TOLERANCE, compare_scores, group_scores, score_models
    from ..plots import compare_scatter
    from ..report import new_figure

    out = Path(args.out)
    if args.evaluation:
        if args.weights:
            raise UserError("give either --evaluation or --weights, not both")
        scores, example_index = _evaluation_scores(Path(args.evaluation), args.models)
        prediction_correlation = None
        names = tuple(scores)
    else:
        if not args.weights or not args.data:
            raise UserError("compare needs --data and two --weights (or --evaluation DIR)")
        models = load_models(args)
        if len(models) != 2:
            raise UserError(f"compare needs exactly two models; got {len(models)} ({', '.join(models)})")
        scores, prediction_correlation, example_index = score_models(
            models, open_dataset(args), args.head, args.batch_size, args.max_examples, progress=not args.quiet)
        names = tuple(models)
    table = load_track_table(args.head, scores[names[0]].shape[1], args.data)
    groups = list(table["assay_group"])
    tolerance = TIE_TOLERANCE if args.tie_tolerance is None else args.tie_tolerance
    summary = compare_scores(scores[names[0]], scores[names[1]], groups, names, tolerance, prediction_correlation)

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", summary)
    by_group = {name: group_scores(scores[name], groups) for name in names}
    per_example = pd.concat([
        pd.DataFrame({"example_index": example_index, "group": group,
                      names[0]: by_group[names[0]][group], names[1]: by_group[names[1]][group]})
        for group in by_group[names[0]]
    ])
    write_csv(out / "per_example.csv", per_example)
    if prediction_correlation is not None:
        write_csv(out / "prediction_correlation.csv", table.assign(prediction_correlation=prediction_correlation))
    write_npz(out / "scores.npz", example_index=example_index, **{f"pearson_{n}": s for n, s in scores.items()})
    write_json(out / "compare.json", {"models": list(names), "head": args.head, "tie_tolerance": tolerance,
                                      "groups": summary.to_dict(orient="records")})
    panels = list(by_group[names[0]])
    figure = new_figure(3.2 * len(panels), 3.4)
    for axis, group in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        row = summary[summary["group"] == group].iloc[0]
        compare_scatter(axis, by_group[names[0]][group], by_group[names[1]][group], names[0], names[1],
                        title=group, correlation=row["correlation"])
    save_figure(out / "compare.png", figure)
    write_settings(out, args, models=list(names))
    print(summary.to_string(index=False))
    print(f"wrote {out}")
    return 0


def _evaluation_scores(directory: Path, names: list[str] | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``{name: (examples, tracks)}`` and ``example_index`` from ``per_example_<name>.npz`` of an evaluation."""
    available = sorted(path.stem.removeprefix("per_example_") for path in directory.glob("per_example_*.npz"))
    if names is None:
        if len(available) != 2:
            raise UserError(f"{directory} holds per-example scores of {available or 'no models'}; "
                            "name two with --models A B")
        names = available
    scores, indices = {}, []
    for name in names:
        path = directory / f"per_example_{name}.npz"
        if not path.is_file():
            raise UserError(f"{path} is missing; {directory} has scores of {', '.join(available) or 'no models'}")
        with np.load(path) as arrays:
            scores[name] = arrays["pearson"]
            indices.append(arrays["example_index"])
    if not np.array_equal(indices[0], indices[1]):
        raise UserError(f"the two models in {directory} were scored on different examples")
    return scores, indices[0]


def run_tracks(args: argparse.Namespace) -> int:
    from ..analysis.common import default_tracks, load_track_table, resolve_tracks
    from ..analysis.tracks import collect_tracks
    from ..plots import track_panel
    from ..report import new_figure

    out = Path(args.out)
    models = load_models(args)
    first = next(iter(models.values()))
    num_tracks = first.config.output_heads.get(args.head)
    if num_tracks is None:
        raise UserError(f"the models have no head {args.head!r}")
    table = load_track_table(args.head, num_tracks, args.data)
    chosen = resolve_tracks(args.tracks, table) if args.tracks else default_tracks(table["assay_group"])
    examples, summaries = collect_tracks(models, open_dataset(args), args.head, chosen, args.examples,
                                         args.batch_size, args.max_examples, progress=not args.quiet)
    out.mkdir(parents=True, exist_ok=True)
    groups = list(table["assay_group"])
    per_group = pd.concat([summary.per_group(groups).assign(model=name) for name, summary in summaries.items()])
    per_track = pd.concat([pd.concat([table, summary.per_track()], axis=1).assign(model=name)
                           for name, summary in summaries.items()])
    write_csv(out / "overprediction.csv", per_group)
    write_csv(out / "overprediction_tracks.csv", per_track)
    write_npz(out / "tracks.npz", **examples.arrays())
    write_json(out / "tracks.json", {
        "models": list(models), "head": args.head, "examples": examples.example_index,
        "intervals": examples.intervals,
        "tracks": [{"position": p, "identifier": str(table["identifier"][p]), "description": str(table["description"][p]),
                    "assay_group": str(table["assay_group"][p])} for p in chosen],
        "overprediction": per_group.to_dict(orient="records"),
    })
    for number, example in enumerate(examples.example_index):
        figure = new_figure(7.5, 1.9 * len(chosen))
        for axis, (column, position) in zip(figure.subplots(len(chosen), 1, squeeze=False)[:, 0], enumerate(chosen)):
            track_panel(axis, examples.target[number][:, column],
                        {name: values[number][:, column] for name, values in examples.predictions.items()},
                        title=f"{table['description'][position]} ({table['assay_group'][position]}), "
                              f"example {example} {examples.intervals[number]}")
        axis.set_xlabel("output bin")
        save_figure(out / f"tracks_example{example}.png", figure)
    write_settings(out, args, models=list(models), tracks=chosen)
    print(per_group.to_string(index=False))
    print(f"wrote {out}")
    return 0


def run_receptive_field(args: argparse.Namespace) -> int:
    from ..analysis.receptive_field import random_sequences, receptive_field
    from ..plots import receptive_field_heatmap, receptive_field_profile
    from ..report import new_figure

    out = Path(args.out)
    models = load_models(args)
    length = _input_length(next(iter(models.values())), args.length)
    if args.data:
        from ..data.basenji import BasenjiDataset

        dataset = BasenjiDataset(args.data, args.split, sequence_length=length, max_examples=args.sequences)
        sequences = torch.stack([example["sequence"] for example in dataset])
        if sequences.shape[1] != length:
            raise UserError(f"{args.data} holds {sequences.shape[1]:,}-bp sequences, not --length {length:,}")
        # one-hot -> tokens (N = 4)
        sequences = torch.where(sequences.sum(-1) > 0, sequences.argmax(-1), torch.tensor(4))
    else:
        sequences = random_sequences(args.sequences, length, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, model in models.items():
        result = receptive_field(model, sequences, positions=args.at, num_positions=args.positions,
                                 alternatives=args.alternatives, head=args.head, tracks=args.tracks,
                                 batch_size=args.batch_size, seed=args.seed, progress=not args.quiet)
        write_npz(out / f"receptive_field_{name}.npz", **result.to_arrays())
        peak = float(result.change.max())
        summary[name] = {
            "attention": model.config.attention, "depth": model.config.depth, "sequence_length": length,
            "head": result.head, "positions": result.positions.tolist(),
            # share of output bins each mutation changes by more than 1e-3 of the largest change
            "reach_share": result.reach(1e-3 * peak).tolist(), "max_change": peak,
            "profile": result.profile().tolist(),
        }
        title = f"{name} ({model.config.attention}, depth {model.config.depth})"
        figure = new_figure(6.5, 4.0)
        receptive_field_heatmap(figure.subplots(), result.change, result.positions, result.bin_centers, title)
        save_figure(out / f"receptive_field_{name}_heatmap.png", figure)
        figure = new_figure(6.5, 3.6)
        receptive_field_profile(figure.subplots(), result.change, result.positions, result.bin_centers, title)
        save_figure(out / f"receptive_field_{name}_profile.png", figure)
        print(f"{name}: mutations change on average {np.mean(summary[name]['reach_share']):.1%} of the output bins")
    write_json(out / "receptive_field.json", summary)
    write_settings(out, args, models=list(models), sequence_length=length)
    print(f"wrote {out}")
    return 0


def run_attribution(args: argparse.Namespace) -> int:
    from ..analysis.attribution import Target, gradient_times_input, in_silico_mutagenesis
    from ..plots import mutagenesis_heatmap, sequence_logo
    from ..report import new_figure
    from ..sequence import one_hot

    name, model = _single_model(args)
    out = Path(args.out)
    length = _input_length(model, args.length)
    if args.region:
        if not args.fasta:
            raise UserError("--region needs --fasta")
        from ..data.genome import Genome, parse_region

        interval = parse_region(args.region).resize(length)
        sequence = one_hot(Genome(args.fasta).fetch(interval))
        label = str(interval)
    else:
        if not args.data:
            raise UserError("--example needs --data")
        from ..data.basenji import BasenjiDataset

        dataset = BasenjiDataset(args.data, args.split, sequence_length=args.length, max_examples=args.example + 1)
        examples = list(dataset)
        if len(examples) <= args.example:
            raise UserError(f"{args.data} split {args.split!r} has only {len(examples)} examples")
        sequence = examples[args.example]["sequence"].float()
        label = f"{args.split} example {args.example} {examples[args.example].get('interval', '')}"
        length = sequence.shape[0]
    bins = args.bins if args.bins is not None else [model.config.output_length(length) // 2]
    target = Target(args.head, args.tracks, bins)
    contributions = gradient_times_input(model, sequence, target)
    arrays = {"gradient_x_input": contributions, "sequence": sequence.numpy()}
    centre = length // 2
    window = (max(centre - args.ism_width // 2, 0), min(centre + (args.ism_width + 1) // 2, length))
    out.mkdir(parents=True, exist_ok=True)
    if args.ism_width > 0:
        effects = in_silico_mutagenesis(model, sequence, target, *window, batch_size=args.batch_size,
                                        progress=not args.quiet)
        arrays.update(ism=effects, ism_start=np.asarray(window[0]))
        figure = new_figure(9, 2.4)
        mutagenesis_heatmap(figure.subplots(), effects, window[0], f"ISM, {label}")
        save_figure(out / "ism.png", figure)
        figure = new_figure(9, 2.4)
        centred = effects - effects.mean(axis=1, keepdims=True)  # mean-centred per position, as in logos
        sequence_logo(figure.subplots(), centred, window[0], f"ISM (mean-centred), {label}")
        save_figure(out / "ism_logo.png", figure)
    write_npz(out / "attribution.npz", **arrays)
    figure = new_figure(9, 2.4)
    logo_window = slice(window[0], window[1]) if args.ism_width > 0 else slice(max(centre - 32, 0), centre + 32)
    sequence_logo(figure.subplots(), contributions[logo_window], logo_window.start, f"gradient x input, {label}")
    save_figure(out / "gradient_x_input_logo.png", figure)
    write_json(out / "attribution.json", {"model": name, "region": label, "head": args.head, "tracks": args.tracks,
                                          "bins": bins, "sequence_length": length, "ism_window": list(window)})
    write_settings(out, args, model=name, sequence_length=length)
    print(f"wrote {out}")
    return 0


def run_variants(args: argparse.Namespace) -> int:
    from ..analysis.common import load_track_table, resolve_tracks
    from ..analysis.variants import write_variant_scores
    from ..data.genome import Genome

    name, model = _single_model(args)
    num_tracks = model.config.output_heads.get(args.head)
    if num_tracks is None:
        raise UserError(f"the model has no head {args.head!r}; it has {', '.join(model.config.output_heads)}")
    if args.targets:
        from ..data.tracks import read_targets

        table = read_targets(args.targets)
        if len(table) != num_tracks:
            raise UserError(f"{args.targets} lists {len(table)} tracks but head {args.head!r} has {num_tracks}")
    else:
        table = load_track_table(args.head, num_tracks)
    positions = resolve_tracks(args.tracks, table) if args.tracks else list(range(num_tracks))
    names = [str(table["identifier"][p]) for p in positions]
    length = _input_length(model, args.length)
    path = write_variant_scores(
        model, Genome(args.fasta), args.vcf, args.out, args.head, positions, names, args.center_bins,
        not args.no_rc, args.batch_size, length, args.skip_ref_mismatch,
        settings={"weights": args.weights, "attention": model.config.attention, "set": args.set},
        progress=not args.quiet,
    )
    print(f"wrote {path}")
    return 0
