"""Borzoi's time and memory against input length, per attention kind, beside borzoi-pytorch where it runs.

Each point (length, kind, mode) runs in a fresh process under a resident-memory cap
(:func:`.memory.run_isolated`): random weights, batch 1, the human head; ``inference`` is a forward pass
under ``inference_mode``, ``train`` a forward pass, Borzoi's ``poisson_mn`` loss against random targets and
the backward pass. Time is the median of the timed repeats after a warm-up; memory is the peak RSS above the
level after set-up (CUDA: peak allocated). A point that does not fit, fails or times out is recorded as such
(borzoi-pytorch builds its position basis for 4,096 positions and may refuse other lengths). The results
file is rewritten atomically after every point and a rerun skips the points it holds.

    python benchmarks/borzoi_scaling.py --out benchmarks/results/borzoi_scaling.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import ATTENTION_KINDS
from . import memory

PEER = "borzoi-pytorch"
KINDS = (*ATTENTION_KINDS, PEER)
MODES = ("inference", "train")
DEFAULT_LENGTHS = (262_144, 524_288, 1_048_576, 2_097_152)


def _one_hot(length: int, device: str):
    import torch

    tokens = torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.one_hot(tokens, 4).float().to(device)


def _build(kind: str, settings: dict[str, Any], device: str, length: int):
    """The model of a point and a function from the one-hot input to the human head (batch, bins, tracks)."""
    if kind == PEER:
        import borzoi_pytorch
        from borzoi_pytorch.config_borzoi import BorzoiConfig as PeerConfig

        peer = borzoi_pytorch.Borzoi(PeerConfig(depth=settings.get("depth", 8), return_center_bins_only=False))
        peer.crop.target_length = length // 32 - 32  # every bin but the 16 cropped per side, as ours
        return peer.to(device), lambda x: peer(x.transpose(1, 2)).transpose(1, 2)
    from ..config import preset
    from ..model.borzoi import Borzoi

    config = preset("borzoi", attention=kind, **settings)
    model = Borzoi(config).to(device)
    return model, lambda x: model(x, heads=["human"])["human"]


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory of one point (runs inside the fresh process)."""
    import torch

    from ..train.losses import poisson_multinomial_loss

    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    device, mode = payload["device"], payload["mode"]
    torch.manual_seed(0)
    model, run = _build(payload["kind"], payload.get("settings", {}), device, payload["length"])
    x = _one_hot(payload["length"], device)

    def step() -> None:
        if mode == "inference":
            with torch.inference_mode():
                run(x)
            return
        prediction = run(x)
        target = torch.rand(prediction.shape, generator=torch.Generator().manual_seed(1)).to(device)
        poisson_multinomial_loss(prediction, target).backward()
        model.zero_grad(set_to_none=True)

    model.train(mode == "train")
    return memory.time_steps(step, device, payload.get("warmup", 1), payload.get("repeats", 1))


def point_key(point: dict[str, Any]) -> str:
    return json.dumps({name: point[name] for name in ("length", "kind", "mode", "device", "settings")}, sort_keys=True)


def run_points(points: Sequence[dict[str, Any]], out: Path, memory_cap_gb: float, timeout_s: float) -> list[dict]:
    """Measure ``points`` (each a :func:`measure` payload) into ``out`` (JSON), skipping those it holds."""
    from ..io import atomic_write_text

    document = {"benchmark": "borzoi-scaling", "records": []}
    if out.exists():
        document = json.loads(out.read_text(encoding="utf-8"))
    done = {point_key(record) for record in document["records"]}
    cap = int(memory_cap_gb * 2**30)
    for point in points:
        if point_key(point) in done:
            continue
        run = memory.run_isolated(__name__, point, cap, timeout_s)
        record = {**point, "status": run.status, "load_average": memory.load_average(), "measured_at": memory.now(),
                  "memory_cap_gb": memory_cap_gb}
        if run.status == "ok" and run.result:
            record.update(run.result)
        else:
            record["peak_seen_mb"] = run.peak_rss_bytes / 2**20
            if run.status == "error":
                lines = run.stderr_tail.strip().splitlines()
                record["error"] = lines[-1] if lines else f"exit {run.returncode}"
        document["records"].append(record)
        atomic_write_text(out, json.dumps(document, indent=1))
    return document["records"]


def draw_figure(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Time (left) and peak memory (right) against input length: one colour per kind, solid for training
    and dashed for inference; a point that did not fit is an ``x`` at its memory cap."""
    from ..io import save_figure
    from ..plots import new_figure
    from .figures import COLOURS

    colours = {**COLOURS, PEER: COLOURS.get("enformer-pytorch", "tab:gray")}
    figure = new_figure(11.0, 4.0)
    time_ax, memory_ax = figure.subplots(1, 2)
    for kind in KINDS:
        for mode, style in (("train", "-"), ("inference", "--")):
            rows = sorted((r for r in records if r["kind"] == kind and r["mode"] == mode), key=lambda r: r["length"])
            fits = [r for r in rows if r["status"] == "ok"]
            if fits:
                lengths = [r["length"] / 1e3 for r in fits]
                label = f"{kind}, {mode}"
                time_ax.plot(lengths, [r["median_s"] for r in fits], style, marker="o", color=colours[kind], label=label)
                memory_ax.plot(lengths, [r["peak_memory_mb"] / 1024 for r in fits], style, marker="o",
                               color=colours[kind], label=label)
            for r in rows:
                if r["status"] == "oom":
                    memory_ax.plot(r["length"] / 1e3, r["memory_cap_gb"], "x", color=colours[kind], markersize=8)
    for ax, ylabel in ((time_ax, "time per pass (s)"), (memory_ax, "peak memory (GB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("input length (kbp)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if records:
        time_ax.legend(fontsize=7)
    time_ax.set_title("Borzoi, batch 1", fontsize=10)
    return save_figure(path, figure)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'kind':<15} {'mode':<9} {'bp':>10} {'s':>9} {'peak MB':>9}"]
    for r in records:
        if r["status"] == "ok":
            lines.append(f"{r['kind']:<15} {r['mode']:<9} {r['length']:>10,} {r['median_s']:>9.2f} {r['peak_memory_mb']:>9.0f}")
        else:
            lines.append(f"{r['kind']:<15} {r['mode']:<9} {r['length']:>10,} {r['status'].upper():>9}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="results JSON (resumed when it exists)")
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)), help="input lengths in bp")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"from {', '.join(KINDS)}")
    parser.add_argument("--modes", default=",".join(MODES), help=f"from {', '.join(MODES)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory-cap-gb", type=float, default=20.0)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--figure", type=Path, help="time and memory against length (default: --out as .png)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="a BorzoiConfig override for our kinds (the peer takes depth only), e.g. depth=2")
    args = parser.parse_args(argv)
    kinds, modes = args.kinds.split(","), args.modes.split(",")
    for name, values, choices in (("kind", kinds, KINDS), ("mode", modes, MODES)):
        unknown = [value for value in values if value not in choices]
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}; choose from {', '.join(choices)}")
    try:
        lengths = [int(value) for value in args.lengths.split(",")]
        settings = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    except ValueError as error:
        parser.error(f"--lengths takes whole numbers and --set FIELD=JSON: {error}")
    points = [{"length": length, "kind": kind, "mode": mode, "device": args.device, "threads": args.threads,
               "settings": settings, "warmup": 1, "repeats": args.repeats}
              for mode in modes for kind in kinds for length in lengths]
    records = run_points(points, args.out, args.memory_cap_gb, args.timeout_s)
    draw_figure(records, args.figure or args.out.with_suffix(".png"))
    print(format_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(memory.child_main(measure, sys.argv[1:]))
