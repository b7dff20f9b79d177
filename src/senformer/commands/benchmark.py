"""``senformer benchmark {attention,scaling}``: parse, validate, call :mod:`senformer.bench`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import ATTENTION_KINDS
from ..constants import TARGET_LENGTH
from ..errors import UserError
from .common import add_overwrite_argument, command_output

# --checkpoint choices and the activation-checkpointing scopes each one sweeps ("on" is the older name of "all").
CHECKPOINT_CHOICES = {"off": ["off"], "conv": ["conv"], "all": ["all"], "on": ["all"], "both": ["off", "all"]}


def register(subparsers) -> None:
    parser = subparsers.add_parser("benchmark", help="measure speed and memory (attention layer, whole model)")
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_attention(benchmarks)
    _register_scaling(benchmarks)


def _register_attention(subparsers) -> None:
    from ..bench.attention import DEFAULT_LENGTHS

    parser = subparsers.add_parser(
        "attention", help="one attention layer, fwd+bwd, per kind and length",
        description="One attention layer, forward + backward, per kind and length: time and peak memory, each "
        "point in its own subprocess under a resident-memory cap. Writes attention.json and attention.png.",
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS),
                        help="positions (default 1536 3072 6144; add 12288 for the long point)")
    parser.add_argument("--kinds", nargs="+", choices=ATTENTION_KINDS, default=list(ATTENTION_KINDS),
                        help="attention kinds (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (default 3)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's default)")
    parser.add_argument("--memory-cap-gb", type=float, default=16.0, help="resident memory cap per point (default 16)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per point (default 900)")
    parser.add_argument("--dim", type=int, default=1536, help="model width (default 1536)")
    parser.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    parser.add_argument("--out", default="benchmark-attention",
                        help="folder for attention.json and attention.png (default benchmark-attention)")
    add_overwrite_argument(parser)
    parser.set_defaults(run=_run_attention)


def _run_attention(args: argparse.Namespace) -> int:
    from ..bench.attention import format_table, run_benchmark
    from ..device import resolve_device

    if any(length < 1 for length in args.lengths):
        raise UserError(f"--lengths must be positive, got {args.lengths}")
    from ..io import DIRECTORY

    device = str(resolve_device(args.device))
    settings = {**vars(args), "device": device}
    with command_output("benchmark attention", args.out, DIRECTORY, settings, {"machine": machine_identity(device)},
                        args.overwrite, device) as output:
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        result = run_benchmark(args.lengths, args.kinds, args.repeats, device, args.threads, args.memory_cap_gb,
                               args.timeout, args.dim, args.heads, output.start())
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
        "scaling", help="memory and speed against sequence length (Figures 1-3), resumable",
        description="Sweep length x attention kind x depth x mode, each point in its own subprocess under a "
        "resident-memory cap. Writes scaling.json (resumable), scaling.csv, scaling.md and scaling.png into --out. "
        "bf16 points run only where the device computes bf16 natively (CUDA, or a CPU with AVX512-BF16 or AMX); "
        "elsewhere they are recorded as skipped, with the reason.",
    )
    parser.add_argument("--out", required=True, help="output directory (an existing scaling.json is resumed)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few-minute run: dim {QUICK['dim']}, lengths {', '.join(f'{n:,}' for n in QUICK['lengths'])}, "
                        f"depths 1 and 3, training step, {QUICK['target_length']} output bins, 1 warm-up + 1 timed step")
    parser.add_argument("--dim", type=int, help="model width (default 1536; a multiple of 128)")
    parser.add_argument("--lengths", type=_int_list, help="comma-separated lengths in bp (default 131,072 .. "
                        "786,432 in steps of 65,536; 'recorded' sweep: --lengths 131072,262144,393216,524288,786432)")
    parser.add_argument("--attention", type=_choice_list(ATTENTION_KINDS), default=list(ATTENTION_KINDS),
                        help=f"comma-separated kinds from {', '.join(ATTENTION_KINDS)} (default all)")
    parser.add_argument("--depths", type=_int_list, help="comma-separated depths (default 1,11)")
    parser.add_argument("--modes", type=_choice_list(MODES), help="comma-separated: inference, fwd_bwd (no optimizer), "
                        "train (forward, Poisson loss, backward, Adam step; default)")
    parser.add_argument("--precision", type=_choice_list(PRECISIONS), default=["fp32"],
                        help="comma-separated fp32, bf16 (autocast; only where bf16 is native) (default fp32)")
    parser.add_argument("--checkpoint", choices=list(CHECKPOINT_CHOICES), default="off",
                        help="activation checkpointing: off (default); conv (stem + conv tower only, so the "
                        "transformer's memory shows); all (transformer too; 'on' is the same); both (off and all)")
    parser.add_argument("--conv-tile-length", default="131072",
                        help="inference: bp per conv-trunk tile, or 'none' (default 131072)")
    parser.add_argument("--target-length", type=int,
                        help=f"output bins (default {TARGET_LENGTH}; inputs must give at least this many positions)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also measure {PEER} (full attention) at the same settings (default on; skipped "
                        "with a recorded reason when not installed)")
    parser.add_argument("--memory-cap-gb", type=float, default=20.0, help="resident-memory cap per point (default 20)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per point before it is killed (default: no limit)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per point (default 0: torch's default)")
    parser.add_argument("--warmup", type=int, help="untimed steps per point (default 1)")
    parser.add_argument("--repeats", type=int, help="timed steps per point; the median is reported (default 3)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--plot-only", action="store_true", help="only redraw scaling.png, the tables and the summary")
    add_overwrite_argument(parser, "start again when --out holds points measured on another machine or version")
    parser.set_defaults(run=_run_scaling)


def scaling_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's settings from the command line, validated (a bad value is a UserError naming it)."""
    from ..bench.points import DEFAULT_LENGTHS, QUICK, Point
    from ..bench.summary import GB
    from ..device import resolve_device

    quick = QUICK if args.quick else {}
    text = str(args.conv_tile_length)
    try:
        tile = None if text.lower() == "none" else int(text)
    except ValueError:
        raise UserError(f"--conv-tile-length must be a number of bp or 'none', got {text!r}") from None
    settings = {
        "dim": args.dim or quick.get("dim", 1536),
        "lengths": args.lengths or list(quick.get("lengths", DEFAULT_LENGTHS)),
        "attentions": args.attention,
        "depths": args.depths or list(quick.get("depths", (1, 11))),
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
    from ..fingerprint import value_digest
    from ..io import DIRECTORY, output_lock, recorded_fingerprint
    from ..record import run_record, write_run_record

    settings = scaling_settings(args)
    out = Path(args.out)
    identity = machine_identity(settings["device"])
    fingerprint = value_digest({"command": "benchmark scaling", "machine": identity})
    with output_lock(out):
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file, but a directory is due there; choose another --out")
        results = [path for path in out.glob("scaling.*")] if out.is_dir() else []
        recorded = recorded_fingerprint(out, DIRECTORY) if out.is_dir() else None
        if results and recorded != fingerprint and not args.plot_only:
            if not args.overwrite:
                raise UserError(f"{out} holds points measured on another machine or senformer/torch version (or "
                                "without a run record); pass --overwrite to start it again, or choose another --out")
            for path in results:
                path.unlink()
        if not args.plot_only and (out / "scaling.json").is_file() and recorded == fingerprint:
            points = sweep_points(
                settings["lengths"], settings["attentions"], settings["depths"], settings["modes"], settings["dim"],
                settings["precisions"], settings["checkpoints"], settings["conv_tile_length"], settings["peer"],
                settings["device"], settings["threads"], settings["target_length"])
            done = Sweep(out).measured()
            if all(point.key in done for point in points):
                print(f"{out} is up to date")
                return 0
        if not args.plot_only:
            out.mkdir(parents=True, exist_ok=True)
            write_run_record(out, run_record("benchmark scaling", settings, {"machine": identity},
                                             settings["device"], fingerprint=fingerprint))
        written = run_sweep(settings, out, args.plot_only, log=lambda line: print(line, flush=True))
    print("wrote " + ", ".join(map(str, written)))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(item.replace("_", "")) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def _choice_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        return items

    return parse
