"""The scaling sweep's tables: ``scaling.csv`` (one row per point) and ``scaling.md`` (points and ratios)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_text
from .points import PEER, Point
from .summary import GB, step_memory, summarize

CSV_FIELDS = [f.name for f in fields(Point)] + [
    "status", "median_seconds", "min_seconds", "peak_rss_bytes", "baseline_rss_bytes", "cuda_peak_allocated_bytes", "flops",
    "achieved_gflops", "fraction_of_matmul_rate", "bf16_max_difference_over_max", "bf16_median_relative_difference",
    "inferred", "reason", "memory_cap_bytes", "load_average_before", "load_average_after", "recorded",
]


def write_csv(records: Sequence[dict], path: Path) -> None:
    """One row per point, in :data:`CSV_FIELDS` order (lists and dicts as JSON)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for record in sorted(records, key=sort_key):
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in record.items()})
    atomic_write_text(path, buffer.getvalue())


def sort_key(record: dict) -> tuple:
    return (record["mode"], record["precision"], record["checkpoint"], record["dim"], record["implementation"],
            record["attention"], record["depth"], record["length"])


def markdown_report(document: dict) -> str:
    """Tables of the points and the derived ratios, for the README (written as ``scaling.md``)."""
    lines = []
    for run in document.get("runs", [])[-1:]:
        machine = run.get("machine", {})
        lines.append(f"Machine: {machine.get('gpu') or machine.get('cpu', '?')}, {machine.get('usable_cpus', '?')} "
                     f"usable CPUs, torch {machine.get('torch', '?')}; load average at start {run.get('load_average')}.")
    for rate in document.get("matmul", []):
        lines.append(f"Measured matmul rate ({rate['precision']}, {rate['device']}, threads {rate['threads'] or 'default'}): "
                     f"{rate['gflops']:.1f} GFLOP/s (load average {rate.get('load_average')}).")
    lines += ["", "| model | mode | precision | ckpt | conv tile (bp) | dim | depth | length (bp) | status | median step (s) "
              "| peak memory (GB) | GFLOP/s | of matmul rate |", "|" + "---|" * 13]
    for r in sorted(document["points"], key=sort_key):
        ok = r["status"] == "ok"
        lines.append("| " + " | ".join([
            PEER if r["implementation"] == PEER else r["attention"], r["mode"], r["precision"],
            r["checkpoint"],
            (f"{r['conv_tile_length']:,}" if r["conv_tile_length"] else "none") if r["mode"] == "inference" else "",
            str(r["dim"]), str(r["depth"]), f"{r['length']:,}",
            r["status"] + (" (not run)" if r.get("inferred") else ""),
            f"{r['median_seconds']:.2f}" if ok else "", f"{step_memory(r) / GB:.2f}" if ok else "",
            f"{r['achieved_gflops']:.1f}" if "achieved_gflops" in r else "",
            f"{r['fraction_of_matmul_rate']:.0%}" if "fraction_of_matmul_rate" in r else "",
        ]) + " |")
    skipped = sorted({r["reason"] for r in document["points"] if r["status"] == "skipped" and r.get("reason")})
    if skipped:
        lines += ["", "Skipped points, and why:", "", *(f"- {reason}" for reason in skipped)]
    summary = document.get("summary") or summarize(document["points"])

    def number(value, pattern="{:.2f}"):
        return pattern.format(value) if isinstance(value, (int, float)) else str(value or "")

    if summary["against_full"]:
        lines += ["", "Sparse kinds against `full` (speed-up = full time / kind time; memory ratio = kind / full):", "",
                  "| kind | mode | precision | ckpt | dim | depth | length (bp) | step speed-up | step memory ratio "
                  "| per-layer speed-up | per-layer memory ratio |", "|" + "---|" * 11]
        for r in summary["against_full"]:
            lines.append(f"| {r['attention']} | {r['mode']} | {r['precision']} | {r['checkpoint']} | {r['dim']} | "
                         f"{r['depth']} | {r['length']:,} | "
                         f"{number(r.get('step_speedup', 'full: oom' if r.get('full') else None))} | {number(r.get('step_memory_ratio'))} | "
                         f"{number(r.get('per_layer_speedup'))} | {number(r.get('per_layer_memory_ratio'))} |")
    if summary["against_peer"]:
        lines += ["", f"Against {PEER} at the same settings (speed-up = peer time / ours; memory ratio = ours / peer):",
                  "", "| kind | mode | precision | dim | depth | length (bp) | speed-up | memory ratio |", "|" + "---|" * 8]
        for r in summary["against_peer"]:
            lines.append(f"| {r['attention']} | {r['mode']} | {r['precision']} | {r['dim']} | {r['depth']} | "
                         f"{r['length']:,} | {number(r.get('speedup', 'peer: oom' if r.get('peer') else None))} | {number(r.get('memory_ratio'))} |")
    if summary["exponents"]:
        lines += ["", "Fitted log-log exponents (1 = linear, 2 = quadratic):", "",
                  "| model | mode | dim | depth | lengths (bp) | memory | memory above baseline | time |", "|" + "---|" * 8]
        for e in summary["exponents"]:
            name = PEER if e["implementation"] == PEER else e["attention"]
            lines.append(f"| {name} | {e['mode']} | {e['dim']} | {e['depth']} | {e['from_length']:,}-{e['to_length']:,} | "
                         f"{number(e.get('memory'))} | {number(e.get('memory_above_baseline'))} | {number(e.get('time'))} |")
    if summary["bf16"]:
        lines += ["", "bf16 autocast against fp32:", "", "| model | mode | depth | length (bp) | speed-up | memory ratio "
                  "| max difference / max output |", "|" + "---|" * 7]
        for r in summary["bf16"]:
            name = PEER if r["implementation"] == PEER else r["attention"]
            lines.append(f"| {name} | {r['mode']} | {r['depth']} | {r['length']:,} | {number(r['speedup'])} | "
                         f"{number(r['memory_ratio'])} | {number(r.get('bf16_max_difference_over_max'), '{:.2e}')} |")
    return "\n".join(lines) + "\n"

