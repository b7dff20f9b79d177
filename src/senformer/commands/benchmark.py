"""``senformer benchmark {attention,scaling,variants,borzoi,flops}``: parse, validate, call :mod:`senformer.bench`."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..config import ATTENTION_KINDS
from ..constants import TARGET_LENGTH
from ..errors import UserError
from .common import add_overwrite_argument, parse_set_options
from .options import (
    MAX_MEMORY_GB, MAX_THREADS, MAX_TIMEOUT_S, SEED, WholeList, add_device_argument, add_progress_argument,
    add_set_argument, real, whole,
)

# bp per attention position: the conv tower halves the 1-bp input seven times.
POSITION_BP = 128

# --checkpoint choices and the activation-checkpointing scopes each one sweeps ("on" is the older name of "all").
CHECKPOINT_CHOICES = {"off": ["off"], "conv": ["conv"], "all": ["all"], "on": ["all"], "both": ["off", "all"]}


def register(subparsers) -> None:
    parser = subparsers.add_parser("benchmark", help="measure speed and memory (attention layer, whole model)")
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_attention(benchmarks)
    _register_scaling(benchmarks)
    _register_variants(benchmarks)
    _register_borzoi(benchmarks)
    _register_flops(benchmarks)


def _register_attention(subparsers) -> None:
    from ..bench.attention import DEFAULT_LENGTHS

    default_bp = ",".join(str(positions * POSITION_BP) for positions in DEFAULT_LENGTHS)
    parser = subparsers.add_parser(
        "attention", help="one attention layer, fwd+bwd, per kind and length",
        description="One attention layer, forward + backward, per kind and length: time and peak memory, each "
        "point in its own subprocess under a resident-memory cap. Writes attention.json and attention.png "
        f"(lengths recorded as positions of {POSITION_BP} bp, the layer's input).",
    )
    parser.add_argument("--lengths", type=WholeList(whole(1)), default=None, metavar="BP,BP,...",
                        help=f"comma-separated input lengths in bp, multiples of {POSITION_BP} (default: {default_bp}; "
                        "add 1572864 for the long point)")
    parser.add_argument("--kinds", nargs="+", choices=ATTENTION_KINDS, default=list(ATTENTION_KINDS),
                        help="attention kinds (default: all)")
    parser.add_argument("--repeats", type=whole(1), default=3, help="timed repeats after one warm-up (default: 3)")
    add_device_argument(parser)
    parser.add_argument("--threads", type=whole(0, MAX_THREADS), default=0, help="torch threads (default: 0, torch's default)")
    parser.add_argument("--memory-cap-gb", type=real(above=0, at_most=MAX_MEMORY_GB), default=16.0, help="resident memory cap per point (default: 16)")
    parser.add_argument("--timeout", type=real(above=0, at_most=MAX_TIMEOUT_S), default=900.0, help="seconds per point (default: 900)")
    parser.add_argument("--dim", type=whole(1), default=1536, help="model width (default: 1536)")
    parser.add_argument("--heads", type=whole(1), default=8, help="attention heads (default: 8)")
    parser.add_argument("--out", default="benchmark-attention",
                        help="folder for attention.json and attention.png (default: benchmark-attention)")
    add_overwrite_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(run=_run_attention)


def attention_positions(lengths_bp: Sequence[int] | None) -> list[int]:
    """``--lengths`` of ``benchmark attention`` (bp) -> the attention layer's positions (128 bp each), the
    unit its results record; ``None``: the default lengths."""
    from ..bench.attention import DEFAULT_LENGTHS

    if lengths_bp is None:
        return list(DEFAULT_LENGTHS)
    bad = [length for length in lengths_bp if length < POSITION_BP or length % POSITION_BP]
    if bad or not lengths_bp:
        raise UserError(f"--lengths must be positive multiples of {POSITION_BP} bp (one attention position each), "
                        f"got {', '.join(map(str, bad)) or 'none'}")
    return [length // POSITION_BP for length in lengths_bp]


def _run_attention(args: argparse.Namespace) -> int:
    from ..bench.attention import format_table, run_benchmark
    from ..device import resolve_device
    from ..outputs import DIRECTORY, Output

    positions = attention_positions(args.lengths)
    device = str(resolve_device(args.device))
    # The fingerprint counts positions (what the results record), so a folder measured before --lengths took bp
    # is still up to date for the same points.
    settings = {**vars(args), "lengths": positions, "device": device}
    with Output(args.out, DIRECTORY, command="benchmark attention", settings=settings,
                inputs={"machine": machine_identity(device)}, overwrite=args.overwrite, device=device) as output:
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        result = run_benchmark(positions, args.kinds, args.repeats, device, args.threads, args.memory_cap_gb,
                               args.timeout, args.dim, args.heads, output.start(), progress=args.progress)
        output.finish()
    print(format_table(result["records"]))
    print(f"results: {Path(args.out) / 'attention.json'}, plot: {Path(args.out) / 'attention.png'}")
    return 0


def machine_identity(device: str) -> dict[str, Any]:
    """What makes two measurements comparable: the processor or GPU, core count, and the software versions.
    Measurements of another machine or version are never mixed into one result."""
    from .. import __version__
    from ..record import machine_info

    info = machine_info(device)
    return {"senformer": __version__, "torch": info["torch"], "device": device, "cpu": info["cpu"],
            "cpu_count": info["cpu_count"], "gpu": info.get("gpu")}


def _register_scaling(subparsers) -> None:
    from ..bench.points import MODES, PEER, PRECISIONS, QUICK

    parser = subparsers.add_parser(
        "scaling", help="the whole model's memory and speed against input length, per attention kind; resumable",
        description="Sweep length x attention kind x depth x mode, each point in its own subprocess under a "
        "resident-memory cap. Writes scaling.json (resumable), scaling.csv, scaling.md and scaling.png into --out. "
        "bf16 points run only where the device computes bf16 natively (CUDA, or a CPU with AVX512-BF16 or AMX); "
        "elsewhere they are recorded as skipped, with the reason.",
    )
    parser.add_argument("--out", required=True, help="output directory (an existing scaling.json is resumed)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few-minute run: dim {QUICK['dim']}, lengths {', '.join(f'{n:,}' for n in QUICK['lengths'])}, "
                        f"depths 1 and 3, training step, {QUICK['target_length']} output bins, 1 warm-up + 1 timed step")
    parser.add_argument("--dim", type=whole(1), help="model width, a multiple of 128 (default: 1536; 256 with --quick)")
    parser.add_argument("--lengths", type=WholeList(whole(1)), metavar="BP,BP,...",
                        help="comma-separated input lengths in bp (default: 131072 .. 786432 in steps of 65536; the "
                        "recorded sweep: --lengths 131072,262144,393216,524288,786432)")
    parser.add_argument("--attention", type=_choice_list(ATTENTION_KINDS), default=list(ATTENTION_KINDS),
                        help=f"comma-separated kinds from {', '.join(ATTENTION_KINDS)} (default: all)")
    parser.add_argument("--depths", type=WholeList(whole(1)), help="comma-separated depths (default: 1,11)")
    parser.add_argument("--modes", type=_choice_list(MODES), help="comma-separated: inference, fwd_bwd (no optimizer), "
                        "train (forward, Poisson loss, backward, Adam step) (default: train)")
    parser.add_argument("--precision", type=_choice_list(PRECISIONS), default=["fp32"],
                        help="comma-separated fp32, bf16 (autocast; only where bf16 is native) (default: fp32)")
    parser.add_argument("--checkpoint", choices=list(CHECKPOINT_CHOICES), default="off",
                        help="activation checkpointing (default: off): off; conv (stem + conv tower only, so the "
                        "transformer's memory shows); all (transformer too; 'on' is the same); both (off and all)")
    parser.add_argument("--conv-tile-length", default="131072",
                        help="inference: bp per conv-trunk tile, or 'none' (default: 131072)")
    parser.add_argument("--target-length", type=whole(1),
                        help=f"output bins (default: {TARGET_LENGTH}; inputs must give at least this many positions)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also measure {PEER} (full attention) at the same settings (default: on; skipped "
                        "with a recorded reason when not installed)")
    parser.add_argument("--memory-cap-gb", type=real(above=0, at_most=MAX_MEMORY_GB), default=20.0, help="resident-memory cap per point (default: 20)")
    parser.add_argument("--timeout", type=real(above=0, at_most=MAX_TIMEOUT_S), default=None,
                        help="seconds per point before it is killed (default: no limit)")
    parser.add_argument("--threads", type=whole(0, MAX_THREADS), default=0, help="torch threads per point (default: 0, torch's default)")
    parser.add_argument("--warmup", type=whole(0), help="untimed steps per point (default: 1)")
    parser.add_argument("--repeats", type=whole(1), help="timed steps per point; the median is reported (default: 3)")
    add_device_argument(parser)
    parser.add_argument("--plot-only", action="store_true", help="only redraw scaling.png, the tables and the summary")
    add_progress_argument(parser, help="no line per measured point (the results hold them all)")
    add_overwrite_argument(parser, "start again when --out holds points measured on another machine or version")
    parser.set_defaults(run=_run_scaling)


def scaling_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's settings from the command line, validated (a bad value is a UserError naming it)."""
    from ..bench.points import DEFAULT_LENGTHS, QUICK, Point
    from ..bench.summary import GB
    from ..device import resolve_device

    quick = QUICK if args.quick else {}
    tile = _conv_tile_length(args.conv_tile_length)
    settings = {
        "dim": args.dim or quick.get("dim", 1536),
        "lengths": list(args.lengths or quick.get("lengths", DEFAULT_LENGTHS)),
        "attentions": args.attention,
        "depths": list(args.depths or quick.get("depths", (1, 11))),
        "modes": args.modes or list(quick.get("modes", ("train",))),
        "precisions": args.precision,
        "checkpoints": CHECKPOINT_CHOICES[args.checkpoint],
        "conv_tile_length": tile,
        "peer": args.peer,
        "target_length": args.target_length or quick.get("target_length", TARGET_LENGTH),
        "device": str(resolve_device(args.device)),
        "threads": args.threads,
        "memory_cap_bytes": int(args.memory_cap_gb * GB),
        "timeout_s": args.timeout,
        "warmup": args.warmup if args.warmup is not None else quick.get("warmup", 1),
        "repeats": args.repeats if args.repeats is not None else quick.get("repeats", 3),
    }
    if settings["repeats"] < 1 or settings["warmup"] < 0:
        raise UserError(f"--repeats must be >= 1 and --warmup >= 0 (got {settings['repeats']}, {settings['warmup']})")
    for length in settings["lengths"]:
        Point(length=length, dim=settings["dim"], target_length=settings["target_length"]).config().validate_sequence_length(length)
    if any(depth < 1 for depth in settings["depths"]):
        raise UserError(f"--depths must be positive, got {settings['depths']}")
    return settings


def _run_scaling(args: argparse.Namespace) -> int:
    """The sweep resumes in place, point by point, so its folder grows over runs with other settings. Its
    resume proves what it mixes: ``OUT/run.json`` records the machine and versions (:func:`machine_identity`)
    and points measured elsewhere are refused unless ``--overwrite`` starts the folder again. A sweep whose
    every point is recorded is up to date."""
    from ..bench.sweep import Sweep, run_sweep, sweep_points

    settings = scaling_settings(args)
    out = Path(args.out)

    def complete() -> bool:
        points = sweep_points(
            settings["lengths"], settings["attentions"], settings["depths"], settings["modes"], settings["dim"],
            settings["precisions"], settings["checkpoints"], settings["conv_tile_length"], settings["peer"],
            settings["device"], settings["threads"], settings["target_length"])
        done = Sweep(out).measured()
        return all(point.key in done for point in points)

    with _sweep_folder("benchmark scaling", out, "scaling", settings, args, complete) as up_to_date:
        if up_to_date:
            print(f"{out} is up to date")
            return 0
        log = (lambda line: print(line, flush=True)) if args.progress else (lambda line: None)
        written = run_sweep(settings, out, args.plot_only, log=log)
    print("wrote " + ", ".join(map(str, written)))
    return 0


def _register_variants(subparsers) -> None:
    from ..bench.variant_points import ATTENTIONS, FAMILIES, PRECISIONS, VariantPoint, WORKLOADS

    defaults = VariantPoint(workload="anchored")
    parser = subparsers.add_parser(
        "variants", help="the edit engine against whole-window passes (variant scoring, ISM), resumable",
        description="Time the edit engine (the reference conv trunk once, each edit recomputing only the trunk "
        "positions it reaches) against the plain path (whole-window passes in the same process: same threads, "
        "batch size and conv tile, the reference computed once and shared) for anchored SNVs and ISM (one "
        "strand) and for variant-centred windows and clusters (reverse-complement averaging), beside each "
        "FLOP bound. Random weights (speed does not depend on them). Each point runs in its own subprocess "
        "under a resident-memory cap, after checking that the engine's outputs equal the plain path's. Writes "
        "variants.json (resumable), variants.csv, variants.md and variants.png into --out. bf16 points run "
        "only where the device computes bf16 natively; elsewhere they are recorded as skipped, with the reason.",
    )
    parser.add_argument("--out", required=True, help="output directory (an existing variants.json is resumed)")
    parser.add_argument("--model", choices=FAMILIES, default="enformer",
                        help="the model family: enformer, or borzoi (the tower and both U-Net skips shared; the "
                        "transformer, U-Net and heads per edit) (default: enformer)")
    parser.add_argument("--dim", type=whole(1), default=None, help=f"model width (default: {defaults.dim})")
    parser.add_argument("--depth", type=whole(1), default=None,
                        help=f"transformer layers (default: {defaults.depth}; borzoi 8)")
    parser.add_argument("--length", type=whole(1), default=None,
                        help=f"input bp (default: {defaults.length:,}; borzoi 524,288)")
    parser.add_argument("--target-length", type=whole(1), default=None,
                        help=f"output bins (default: {defaults.target_length}; borzoi every bin but its crop)")
    parser.add_argument("--workloads", type=_choice_list(WORKLOADS), default=list(WORKLOADS),
                        help="comma-separated: anchored (SNVs across the window and ISM, one strand), centred "
                        "(variant-centred SNV and insertion, and a cluster sharing one reference; RC averaging) "
                        "(default: both)")
    parser.add_argument("--attention", type=_choice_list(ATTENTIONS), default=list(ATTENTIONS),
                        help=f"comma-separated kinds from {', '.join(ATTENTIONS)} (default: both)")
    parser.add_argument("--precision", type=_choice_list(PRECISIONS), default=list(PRECISIONS),
                        help="comma-separated fp32, bf16 (autocast; only where bf16 is native) (default: both)")
    parser.add_argument("--edits", type=whole(1), default=defaults.edits,
                        help=f"edits the engine is timed on per workload (default: {defaults.edits}; at least 16 "
                        "for a reported result)")
    parser.add_argument("--plain-edits", type=whole(1), default=defaults.plain_edits,
                        help=f"edits the plain path is timed on, also the equality check's (default: {defaults.plain_edits})")
    parser.add_argument("--batch-size", type=whole(1), default=defaults.batch_size,
                        help=f"edits per batch on both paths (default: {defaults.batch_size})")
    parser.add_argument("--cluster-bp", type=whole(0), default=defaults.cluster_bp,
                        help=f"the cluster's SNVs lie within this many bp of the centre (default: {defaults.cluster_bp})")
    parser.add_argument("--conv-tile-length", default=str(defaults.conv_tile_length),
                        help=f"bp per conv-trunk tile, or 'none' (default: {defaults.conv_tile_length})")
    parser.add_argument("--seed", type=SEED, default=0, help="seeds the weights, sequences and edits (default: 0)")
    parser.add_argument("--memory-cap-gb", type=real(above=0, at_most=MAX_MEMORY_GB), default=16.0, help="resident-memory cap per point (default: 16)")
    parser.add_argument("--timeout", type=real(above=0, at_most=MAX_TIMEOUT_S), default=1800.0, help="seconds per point before it is killed (default: 1800)")
    parser.add_argument("--threads", type=whole(0, MAX_THREADS), default=0, help="torch threads per point (default: 0: torch's default)")
    add_device_argument(parser)
    parser.add_argument("--plot-only", action="store_true", help="only redraw variants.png, the tables and the summary")
    add_overwrite_argument(parser, "start again when --out holds points measured on another machine or version")
    parser.set_defaults(run=_run_variants)


def variants_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's settings from the command line, validated (a bad value is a UserError naming it)."""
    from ..bench.summary import GB
    from ..bench.variant_points import grid_from_settings
    from ..device import resolve_device

    from ..bench.variant_points import FAMILY_DEFAULTS

    tile = _conv_tile_length(args.conv_tile_length)
    family = getattr(args, "model", "enformer")
    dim, depth, length, target_length = (given if given is not None else default for given, default in zip(
        (args.dim, args.depth, args.length, args.target_length), FAMILY_DEFAULTS[family]))
    settings = {
        "workloads": args.workloads, "attentions": args.attention, "precisions": args.precision,
        **({"family": family} if family != "enformer" else {}),  # an Enformer run's settings read as before
        "dim": dim, "depth": depth, "length": length, "target_length": target_length,
        "edits": args.edits, "plain_edits": args.plain_edits, "batch_size": args.batch_size,
        "cluster_bp": args.cluster_bp, "conv_tile_length": tile, "device": str(resolve_device(args.device)),
        "threads": args.threads, "seed": args.seed, "memory_cap_bytes": int(args.memory_cap_gb * GB),
        "timeout_s": args.timeout,
    }
    if depth < 1 or args.memory_cap_gb <= 0 or args.timeout <= 0:
        raise UserError(f"--depth, --memory-cap-gb and --timeout must be positive (got {depth}, "
                        f"{args.memory_cap_gb}, {args.timeout})")
    for point in grid_from_settings(settings):
        point.config().validate_sequence_length(point.length)
    return settings


def _run_variants(args: argparse.Namespace) -> int:
    """Resumes in place like ``benchmark scaling``: ``OUT/run.json`` records the machine and versions, and
    points measured elsewhere are refused unless ``--overwrite`` starts the folder again; a point is skipped
    when a record with every one of its settings is there. Exits 1 when a point failed or its engine outputs
    differ from the plain path's (recorded, with the reason)."""
    import sys

    from ..bench.variant_points import grid_from_settings
    from ..bench.variants import VariantsBenchmark, run_benchmark

    settings = variants_settings(args)
    out = Path(args.out)
    if args.plot_only and not (out / "variants.json").is_file():
        raise UserError(f"--plot-only: {out / 'variants.json'} does not exist; run the benchmark first")

    def complete() -> bool:
        done = VariantsBenchmark(out).measured()
        return all(point.key in done for point in grid_from_settings(settings))

    with _sweep_folder("benchmark variants", out, "variants", settings, args, complete) as up_to_date:
        if up_to_date:
            print(f"{out} is up to date")
            return 0
        written, failures = run_benchmark(settings, out, args.plot_only, log=lambda line: print(line, flush=True))
    print("wrote " + ", ".join(map(str, written)))
    if failures:
        print(f"senformer benchmark variants: {len(failures)} point(s) failed: "
              + "; ".join(f"{r['workload']} {r['attention']} {r['precision']}: {r['reason']}" for r in failures),
              file=sys.stderr)
        return 1
    return 0


def _register_borzoi(subparsers) -> None:
    from ..bench.borzoi import DEFAULT_LENGTHS, FLEX, KINDS, MODES, PEER, PRECISIONS

    parser = subparsers.add_parser(
        "borzoi", help="Borzoi's time and memory against input length, beside borzoi-pytorch; resumable",
        description="Borzoi (published width, random weights, batch 1, the human head) per input length x "
        f"attention kind x mode x precision, and {PEER} at the same points, each in its own subprocess under a "
        "resident-memory cap. Writes borzoi.json (resumable), borzoi.md (the table and each of our kinds against "
        f"{PEER}: speed-up and memory ratio) and borzoi.png into --out. bf16 runs under autocast only where the "
        "device multiplies bf16 natively; elsewhere it is recorded as skipped. Time it on an idle machine.",
    )
    parser.add_argument("--out", required=True, help="output directory (an existing borzoi.json is resumed)")
    parser.add_argument("--lengths", type=WholeList(whole(1)), default=None, metavar="BP,BP,...",
                        help=f"input lengths in bp, multiples of 2,048 (default: {','.join(map(str, DEFAULT_LENGTHS))})")
    parser.add_argument("--kinds", type=_choice_list(KINDS), default=[*ATTENTION_KINDS, PEER],
                        help=f"comma-separated from {', '.join(KINDS)}; a kind with {FLEX} runs its position term "
                        f"inside compiled FlexAttention, one without it the gathered term (default: "
                        f"{','.join([*ATTENTION_KINDS, PEER])})")
    parser.add_argument("--modes", type=_choice_list(MODES), default=list(MODES),
                        help="comma-separated: inference (forward), train (forward, poisson_mn loss, backward) "
                        "(default: both)")
    parser.add_argument("--precision", type=_choice_list(PRECISIONS), default=["fp32"],
                        help="comma-separated fp32, bf16 (autocast, only where native) (default: fp32)")
    parser.add_argument("--repeats", type=whole(1), default=2, help="timed passes after one warm-up; the median is "
                        "reported (default: 2)")
    add_set_argument(parser, help="override one BorzoiConfig field of our kinds (JSON value), e.g. --set depth=2; "
                     f"{PEER} takes depth only")
    add_device_argument(parser)
    parser.add_argument("--threads", type=whole(0, MAX_THREADS), default=0, help="torch threads (default: 0, torch's default)")
    parser.add_argument("--memory-cap-gb", type=real(above=0, at_most=MAX_MEMORY_GB), default=20.0,
                        help="resident-memory cap per point (default: 20)")
    parser.add_argument("--timeout", type=real(above=0, at_most=MAX_TIMEOUT_S), default=3600.0,
                        help="seconds per point before it is killed (default: 3600)")
    parser.add_argument("--plot-only", action="store_true", help="only redraw borzoi.png and borzoi.md")
    add_overwrite_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(run=_run_borzoi)


def _run_borzoi(args: argparse.Namespace) -> int:
    import json

    from ..bench.borzoi import DEFAULT_LENGTHS, draw_figure, format_table, plan, point_key, run_points
    from ..device import resolve_device
    from ..io import atomic_write_text

    lengths = list(args.lengths or DEFAULT_LENGTHS)
    bad = [length for length in lengths if length % 2048]
    if bad:
        raise UserError(f"--lengths must be multiples of 2,048 bp (Borzoi's 32-bp bins pooled to 128 bp and "
                        f"halved by the U-Net), got {', '.join(map(str, bad))}")
    device = str(resolve_device(args.device))
    settings = parse_set_options(args.set)
    points = plan(lengths, args.kinds, args.modes, args.precision, device, args.threads, settings, args.repeats)
    out = Path(args.out)
    results = out / "borzoi.json"
    run_settings = {"device": device, "lengths": lengths, "kinds": args.kinds, "modes": args.modes,
                    "precision": args.precision, "repeats": args.repeats, "settings": settings}

    def complete() -> bool:
        done = {point_key(record) for record in json.loads(results.read_text(encoding="utf-8"))["records"]}
        return all(point_key(point) in done for point in points)

    if args.plot_only and not results.is_file():
        raise UserError(f"--plot-only: {results} does not exist; run the benchmark first")
    with _sweep_folder("benchmark borzoi", out, "borzoi", run_settings, args, complete) as up_to_date:
        if up_to_date:
            print(f"{out} is up to date")
            return 0
        log = (lambda line: print(line, flush=True)) if args.progress else (lambda line: None)
        if args.plot_only:
            records = json.loads(results.read_text(encoding="utf-8"))["records"]
        else:
            out.mkdir(parents=True, exist_ok=True)
            records = run_points(points, results, args.memory_cap_gb, args.timeout, log=log)
        table = format_table(records)
        draw_figure(records, out / "borzoi.png")
        machine = machine_identity(device)
        atomic_write_text(out / "borzoi.md", f"# Borzoi at batch 1, beside borzoi-pytorch\n\nMachine: {machine['cpu']}, "
                          f"{machine['cpu_count']} cores, torch {machine['torch']}, senformer {machine['senformer']} "
                          f"(load average and time of each point in borzoi.json).\n\n```\n{table}\n```\n")
    print(table)
    return 0


def _register_flops(subparsers) -> None:
    from ..config import BORZOI_PRESETS, PRESETS

    parser = subparsers.add_parser(
        "flops", help="GFLOP/s of each stage of one forward pass against this machine's sgemm rate",
        description="One forward pass (random weights, batch 1, fp32, in this process) stage by stage: stem, conv "
        "tower, each transformer layer's projections, relative term, attention core and MLP, Borzoi's U-Net, "
        "heads. FLOPs are counted as executed; the median of --repeats rounds gives each stage's GFLOP/s, beside "
        "the sgemm rate measured before and after, the CPU's vector flags and the load average. Writes "
        "flops.json and flops.md into --out. Time it on an idle machine.",
    )
    parser.add_argument("--preset", choices=[*PRESETS, *BORZOI_PRESETS], default="enformer",
                        help="model configuration (default: enformer)")
    parser.add_argument("--length", type=whole(1), default=None,
                        help="input length in bp (default: the preset family's published input)")
    parser.add_argument("--attention", default=None, help="attention kind (default: the preset's)")
    add_set_argument(parser)
    parser.add_argument("--head", default=None, help="the head to run (default: the first)")
    parser.add_argument("--repeats", type=whole(1), default=3, help="timed rounds after one warm-up (default: 3)")
    parser.add_argument("--threads", type=whole(0, MAX_THREADS), default=0, help="torch threads (default: 0, torch's default)")
    parser.add_argument("--out", default="benchmark-flops", help="folder for flops.json and flops.md "
                        "(default: benchmark-flops)")
    add_overwrite_argument(parser)
    parser.set_defaults(run=_run_flops)


def _run_flops(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..bench.stages import format_stage_table, run_stage_report
    from ..config import preset
    from ..inference import resolve_sequence_length
    from ..io import atomic_write_text
    from ..model.borzoi import build_model
    from ..outputs import DIRECTORY, Output

    config = preset(args.preset, **parse_set_options(args.set, args.attention))
    length = resolve_sequence_length(config, args.length)
    if args.head is not None and args.head not in config.output_heads:
        raise UserError(f"--head {args.head!r}: the model has {', '.join(config.output_heads)}")
    settings = {**vars(args), "length": length, "config": config.to_dict()}
    with Output(args.out, DIRECTORY, command="benchmark flops", settings=settings,
                inputs={"machine": machine_identity("cpu")}, overwrite=args.overwrite, device="cpu") as output:
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        folder = Path(output.start())
        torch.manual_seed(0)
        model = build_model(config).eval()
        report = run_stage_report(model, length, args.repeats, args.threads, args.head)
        report["preset"], report["attention"] = args.preset, config.attention
        table = format_stage_table(report)
        atomic_write_text(folder / "flops.json", json.dumps(report, indent=1))
        atomic_write_text(folder / "flops.md", f"# GFLOP/s per stage: {args.preset}, {config.attention}\n\n{table}\n")
        output.finish()
    print(table)
    return 0


@contextlib.contextmanager
def _sweep_folder(command: str, out: Path, stem: str, settings: dict, args: argparse.Namespace,
                  complete: Callable[[], bool]) -> Iterator[bool]:
    """The one rule for a folder a sweep grows point by point (``OUT/STEM.json``), held under OUT's lock.

    ``OUT/run.json`` records the machine and versions (:func:`machine_identity`): points measured elsewhere
    are refused unless ``--overwrite`` starts the folder again. Yields True when every point of this run is
    already recorded here (up to date), else False after writing the run record (not for ``--plot-only``).
    """
    from ..fingerprint import value_digest
    from ..outputs import DIRECTORY, Output

    identity = machine_identity(settings["device"])
    fingerprint = value_digest({"command": command, "machine": identity})
    with Output(out, DIRECTORY, command=command, settings=settings, inputs={"machine": identity},
                device=settings["device"], fingerprint=fingerprint, grown=True) as output:
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file, but a directory is due there; choose another --out")
        results = list(out.glob(f"{stem}.*")) if out.is_dir() else []
        recorded = (output.recorded() or {}).get("fingerprint") if out.is_dir() else None
        if results and recorded != fingerprint and not args.plot_only:
            if not args.overwrite:
                raise UserError(f"{out} holds points measured on another machine or senformer/torch version (or "
                                "without a run record); pass --overwrite to start it again, or choose another --out")
            for path in results:
                path.unlink()
        if not args.plot_only and (out / f"{stem}.json").is_file() and recorded == fingerprint and complete():
            yield True
            return
        if not args.plot_only:
            output.write_record()
        yield False


def _conv_tile_length(value) -> int | None:
    """``--conv-tile-length``: bp per conv-trunk tile, or ``none`` (one piece)."""
    text = str(value)
    try:
        return None if text.lower() == "none" else int(text)
    except ValueError:
        raise UserError(f"--conv-tile-length must be a number of bp or 'none', got {text!r}") from None


def _choice_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        return items

    return parse
