"""One attention layer, forward + backward, per kind and length: time and peak memory.

Each (kind, length) point runs in a fresh Python process so that one point's allocations never colour the
next, under a resident-memory cap (the parent watches the child's RSS and kills it at the cap; an
out-of-memory point is recorded, not a crash). Time is the median of the timed repeats after a warm-up;
memory is the peak RSS above the level after set-up on CPU, or CUDA's peak allocated above it on GPU.
Ratios are against ``full`` measured in the same run.

    senformer benchmark attention --out benchmarks/results/attention
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..config import ATTENTION_KINDS
from . import memory

DEFAULT_LENGTHS = (1536, 3072, 6144)


# --------------------------------------------------------------------------------------------------
# Worker: runs inside the fresh process.


def measure_point(kind: str, length: int, repeats: int, device: str, threads: int, dim: int, heads: int) -> dict[str, Any]:
    """Time and memory of one attention layer's forward + backward (batch 1)."""
    import torch

    from ..config import EnformerConfig
    from ..model.attention import build_attention

    if threads:
        torch.set_num_threads(threads)
    config = EnformerConfig(dim=dim, heads=heads, attention=kind, dropout_rate=0.0, attention_dropout_rate=0.0,
                            positional_dropout_rate=0.0, conv_tower_divisible_by=math.gcd(128, dim // 2))
    torch.manual_seed(0)
    attention = build_attention(config, 0).to(device)
    torch.nn.init.normal_(attention.to_out.weight, std=0.02)
    x = torch.randn(1, length, dim, device=device, requires_grad=True)

    def step() -> None:
        out = attention(x)
        out.sum().backward()
        attention.zero_grad(set_to_none=True)
        x.grad = None

    attention.positional_features(length, x.device)  # cached constants, not part of the step
    return {"kind": kind, "length": length, "status": "ok", **memory.time_steps(step, device, 1, repeats)}


# --------------------------------------------------------------------------------------------------
# Parent: one subprocess per point, with a resident-memory cap.


def run_point(point: dict[str, Any], memory_cap_gb: float, timeout_s: float) -> dict[str, Any]:
    """Run ``measure_point(**point)`` in a capped fresh interpreter; OOM, errors and timeouts become records."""
    run = memory.run_isolated(__name__, point, int(memory_cap_gb * 2**30), timeout_s)
    if run.status == "ok":
        return run.result
    record = {"kind": point["kind"], "length": point["length"], "status": run.status,
              "peak_seen_mb": run.peak_rss_bytes / 2**20, "memory_cap_gb": memory_cap_gb}
    if run.status == "error":
        lines = run.stderr_tail.strip().splitlines()
        record["error"] = lines[-1] if lines else f"exit {run.returncode}"
    return record


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Time and memory of each point relative to ``full`` at the same length, measured in this run."""
    baseline = {r["length"]: r for r in records if r["kind"] == "full" and r["status"] == "ok"}
    for record in records:
        reference = baseline.get(record["length"])
        if record["status"] == "ok" and reference:
            record["speedup_vs_full"] = reference["median_s"] / record["median_s"]
            record["memory_vs_full"] = record["peak_memory_mb"] / max(reference["peak_memory_mb"], 1e-9)


def format_table(records: list[dict[str, Any]]) -> str:
    lines = [f"{'kind':<8} {'positions':>9} {'fwd+bwd s':>10} {'peak MB':>9} {'speed-up':>9} {'memory':>8}"]
    for r in records:
        if r["status"] != "ok":
            lines.append(f"{r['kind']:<8} {r['length']:>9,} {r['status'].upper():>10}")
            continue
        speed = f"{r['speedup_vs_full']:.2f}x" if "speedup_vs_full" in r else "-"
        memory = f"{r['memory_vs_full']:.2f}x" if "memory_vs_full" in r else "-"
        lines.append(
            f"{r['kind']:<8} {r['length']:>9,} {r['median_s']:>10.3f} {r['peak_memory_mb']:>9.0f} {speed:>9} {memory:>8}"
        )
    lines.append("speed-up = full time / kind time; memory = kind peak / full peak (same length, same run)")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], axes) -> None:
    """Time and memory against length per kind on two axes (log-log); OOM points marked at the top."""
    for kind in ATTENTION_KINDS:
        points = sorted((r for r in records if r["kind"] == kind), key=lambda r: r["length"])
        ok = [r for r in points if r["status"] == "ok"]
        if not points:
            continue
        for ax, key in zip(axes, ("median_s", "peak_memory_mb")):
            line = ax.plot([r["length"] for r in ok], [r[key] for r in ok], marker="o", label=kind)[0]
            failed = [r for r in points if r["status"] != "ok"]
            if failed and ok:
                ax.scatter([r["length"] for r in failed], [max(x[key] for x in ok) * 2] * len(failed),
                           marker="x", color=line.get_color(), label=f"{kind}: out of memory")
    for ax, key, label in zip(axes, ("median_s", "peak_memory_mb"), ("forward + backward (s)", "peak memory (MB)")):
        ax.set_xscale("log", base=2)
        values = [r[key] for r in records if r["status"] == "ok"]
        ax.set_yscale("log" if values and min(values) > 0 else "symlog")
        ax.set_xlabel("positions (128 bp each)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return axes


def run_benchmark(
    lengths=DEFAULT_LENGTHS, kinds=ATTENTION_KINDS, repeats: int = 3, device: str = "cpu", threads: int = 0,
    memory_cap_gb: float = 16.0, timeout_s: float = 900.0, dim: int = 1536, heads: int = 8,
    out_dir: str | os.PathLike | None = None, progress: bool = True,
) -> dict[str, Any]:
    from tqdm import tqdm

    from .machine import machine_info  # torch: imported here so that the command's --help answers without it

    records = []
    points = [(kind, length) for length in lengths for kind in kinds]
    for kind, length in tqdm(points, desc="attention benchmark", disable=not progress):
        point = dict(kind=kind, length=length, repeats=repeats, device=device, threads=threads, dim=dim, heads=heads)
        records.append(run_point(point, memory_cap_gb, timeout_s))
    add_ratios(records)
    result = {
        "benchmark": "attention layer forward+backward, batch 1",
        "settings": {"dim": dim, "heads": heads, "key_size": 64, "repeats": repeats, "memory_cap_gb": memory_cap_gb,
                     "lengths": list(lengths), "kinds": list(kinds), "device": device, "threads": threads},
        "machine": machine_info(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "records": records,
    }
    if out_dir is not None:
        write_results(result, Path(out_dir))
    return result


def write_results(result: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_figure, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "attention.json", result)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot(result["records"], axes)
    figure.suptitle(f"one attention layer, fwd+bwd, {result['machine'].get('gpu') or result['machine'].get('cpu')}")
    figure.tight_layout()
    save_figure(out_dir / "attention.png", figure, dpi=120)


def _measure(payload: dict[str, Any]) -> dict[str, Any]:
    return measure_point(**payload)


if __name__ == "__main__":
    sys.exit(memory.child_main(_measure, sys.argv[1:3]))
