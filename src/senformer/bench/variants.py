"""``senformer benchmark variants``: the edit engine (:mod:`senformer.edits`) against the plain path, issue 13's
benchmark, as a resumable run.

One job per module: :mod:`~senformer.bench.variant_points` (the points and their FLOPs),
:mod:`~senformer.bench.variant_measure` (the child that measures one point in its own capped subprocess),
:mod:`~senformer.bench.variant_report` (speed-ups, bounds, tables and the figure) and this module (the run:
resuming, the time estimate, recording).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from ..device import bf16_supported, no_native_bf16_reason
from ..io import atomic_write_text, write_json
from . import memory
from .machine import machine_info
from .summary import GB
from .variant_measure import MODULE
from .variant_points import VariantPoint, grid_from_settings, point_flops
from .variant_report import draw_figure, markdown_report, summarize, write_csv

MEASURE_MODULE = "senformer.bench.measure"  # the machine's matmul rate, for the time estimate
# Fraction of the measured matmul rate a whole forward reaches (79% for full attention at 196,608 bp in
# benchmarks/results/scaling_inference_cpu); the estimate assumes a little less for the many small passes.
ESTIMATE_EFFICIENCY = 0.6


class VariantsBenchmark:
    """A resumable run writing ``variants.json`` / ``variants.csv`` / ``variants.md`` / ``variants.png``."""

    def __init__(self, out_dir: str | os.PathLike, memory_cap_bytes: int = int(16 * GB),
                 timeout_s: float | None = None, log: Callable[[str], None] = print):
        self.out_dir = Path(out_dir)
        self.memory_cap_bytes, self.timeout_s, self.log = int(memory_cap_bytes), timeout_s, log
        self.path = self.out_dir / "variants.json"
        self.document = memory.read_points(self.path, "senformer benchmark variants", VariantPoint,
                                           "variants benchmark", keys_must_match=True)

    def measured(self) -> dict[str, dict]:
        """Points already recorded (measured, out of memory, timed out); errors, mismatches and skips run again.
        A record's key is rebuilt from its own settings on loading, so a match is a match of every setting."""
        return {r["key"]: r for r in self.document["points"] if r.get("status") in ("ok", "oom", "timeout")}

    def run(self, points: Sequence[VariantPoint], settings: dict[str, Any] | None = None) -> dict:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        device = points[0].device if points else "cpu"
        self.document["runs"].append({"started": memory.now(), "settings": settings, "machine": machine_info(device),
                                      "memory_cap_bytes": self.memory_cap_bytes, "load_average": memory.load_average()})
        native_bf16 = bf16_supported(device)
        done = self.measured()
        todo = [point for point in points if point.key not in done]
        self.log(f"{len(points) - len(todo)} of {len(points)} points already in {self.path}; {len(todo)} to run")
        estimates = self.estimate(todo, native_bf16)
        for index, point in enumerate(todo, 1):
            if point.precision == "bf16" and not native_bf16:
                record = self._record(point, "skipped", reason=f"bf16 not run: {no_native_bf16_reason(device)}")
            else:
                if point.key in estimates:
                    self.log(f"[{index}/{len(todo)}] {point.label}: estimated {estimates[point.key]:.0f} s")
                record = self.measure(point)
                if point.key in estimates:
                    record["estimated_seconds"] = round(estimates[point.key], 1)
            memory.replace_point(self.document, record)
            self.log(f"[{index}/{len(todo)}] {point.label}: {_describe(record)}")
            self.save()
        self.document["runs"][-1]["finished"] = memory.now()
        self.save()
        return self.document

    def estimate(self, points: Sequence[VariantPoint], native_bf16: bool) -> dict[str, float]:
        """Seconds each runnable point should take: its FLOPs at :data:`ESTIMATE_EFFICIENCY` of the matmul
        rate measured now (empty when it could not be measured); the total is logged."""
        runnable = [p for p in points if native_bf16 or p.precision != "bf16"]
        if not runnable:
            return {}
        wanted = {precision for point in runnable for precision in point_flops(point)}
        rates = {}
        for precision in sorted(wanted):
            threads, device = runnable[0].threads, runnable[0].device
            payload = {"task": "matmul", "arguments": {"threads": threads, "device": device, "precision": precision,
                                                      "min_seconds": 0.3}}
            run = memory.run_isolated(MEASURE_MODULE, payload, self.memory_cap_bytes, self.timeout_s)
            if run.status == "ok" and run.result:
                rates[precision] = run.result["gflops"] * 1e9
                self.document["matmul"].append({**run.result, "device": device, "threads": threads,
                                                "measured": memory.now(), "load_average": memory.load_average()})
        if set(rates) != wanted:
            self.log("no time estimate: the matmul rate could not be measured")
            return {}
        estimates = {point.key: sum(flops / (ESTIMATE_EFFICIENCY * rates[precision])
                                    for precision, flops in point_flops(point).items()) for point in runnable}
        self.log(f"estimated {sum(estimates.values()) / 60:.0f} min for {len(runnable)} points "
                 f"({ESTIMATE_EFFICIENCY:.0%} of the matmul rate measured now; a busy machine is slower)")
        return estimates

    def measure(self, point: VariantPoint) -> dict:
        load_before = memory.load_average()
        run = memory.run_isolated(MODULE, {"point": asdict(point)}, self.memory_cap_bytes, self.timeout_s)
        result = dict(run.result or {})
        status = run.status
        if status == "ok" and not result.get("check", {}).get("passed", False):
            status = "mismatch"
        record = self._record(point, status, peak_rss_bytes=run.peak_rss_bytes, wall_seconds=round(run.wall_seconds, 3),
                              load_average_before=load_before, load_average_after=memory.load_average())
        record.update({k: v for k, v in result.items() if k not in ("peak_rss_bytes", "error")})
        if status == "mismatch":
            check = result["check"]
            record["reason"] = (f"engine outputs differ from the plain path's: {check['rule']} fails "
                                f"(max |engine - plain| = {check['max_difference']:.3g}, "
                                f"relative {check['relative']:.3g})")
        elif status != "ok":
            record.update(memory.failure_fields(run, result, self.memory_cap_bytes))
        return record

    def _record(self, point: VariantPoint, status: str, **extra) -> dict:
        return memory.point_record(point, status, self.memory_cap_bytes, **extra)

    def failures(self, points: Sequence[VariantPoint]) -> list[dict]:
        """Records of ``points`` that failed (error or mismatch): the run is not a complete result."""
        keys = {point.key for point in points}
        return [r for r in self.document["points"] if r["key"] in keys and r["status"] in ("error", "mismatch")]

    def save(self) -> None:
        """Write ``variants.json``, ``variants.csv`` and ``variants.md`` (each atomically)."""
        rows = summarize(self.document["points"])
        self.document["summary"] = rows
        atomic_write_text(self.path, json.dumps(self.document, indent=1) + "\n")
        write_csv(rows, self.out_dir / "variants.csv")
        atomic_write_text(self.out_dir / "variants.md", markdown_report(self.document, rows))

    def plot(self) -> Path | None:
        """Draw ``variants.png``; None before any point was measured."""
        return draw_figure(self.document, self.out_dir / "variants.png")


def run_benchmark(settings: dict[str, Any], out_dir: str | os.PathLike, plot_only: bool = False,
                  log: Callable[[str], None] = print) -> tuple[list[Path], list[dict]]:
    """Run (or resume) the grid ``settings`` describe into ``out_dir``; with ``plot_only`` only redraw the
    tables and figure. Returns the files written and the failed points' records."""
    benchmark = VariantsBenchmark(out_dir, settings["memory_cap_bytes"], settings["timeout_s"], log=log)
    points = grid_from_settings(settings)
    failures: list[dict] = []
    if plot_only:
        benchmark.save()
    else:
        benchmark.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(benchmark.out_dir / "settings.json", settings)
        benchmark.run(points, settings)
        failures = benchmark.failures(points)
    figure = benchmark.plot()
    written = [benchmark.path, benchmark.out_dir / "variants.csv", benchmark.out_dir / "variants.md"]
    return written + ([figure] if figure else []), failures


def _describe(record: dict) -> str:
    if record["status"] == "ok":
        parts = [f"{name} {t.get('per_variant_seconds', t.get('per_edit_seconds')):.3g} s"
                 for name, t in record["workloads"].items()]
        return (f"reference {record['engine_reference_seconds']:.3g} s (plain {record['plain_reference_seconds']:.3g} s), "
                f"plain {record['plain_per_edit_seconds']:.3g} s/edit, engine " + ", ".join(parts)
                + f"; check {record['check']['relative']:.1e}")
    return record["status"] + (f" ({record['reason']})" if record.get("reason") else "")
