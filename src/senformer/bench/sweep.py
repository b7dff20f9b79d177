"""A resumable scaling sweep (the S-Enformer report's Figures 1-3): memory and speed against sequence length.

Sweeps input length x attention kind x depth x mode (inference; forward+backward; training step = forward,
Poisson loss, backward, Adam step) x precision (fp32, bf16 autocast) x activation checkpointing, for our model
and the peer (enformer-pytorch) at the same length, width, dtype and threads. Each point runs in its own
subprocess (:mod:`senformer.bench.measure`) under a hard resident-memory cap (:mod:`senformer.bench.memory`):
peak RSS on CPU, CUDA peak allocated on GPU, the median step time after warm-up, and out-of-memory recorded
as a data point. bf16 points run only where the device computes bf16 natively
(:func:`senformer.device.bf16_supported`); elsewhere they are recorded as skipped, with the reason.

Outputs in the sweep's folder: ``scaling.json`` (machine, software, settings, every point, summary; a run
resumes from it, skipping points already measured), ``scaling.csv``, ``scaling.md`` and ``scaling.png``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..config import ATTENTION_KINDS
from ..constants import TARGET_LENGTH
from ..device import bf16_supported, no_native_bf16_reason
from ..io import atomic_write_text, write_json
from . import memory
from .figures import draw_scaling_figure
from .flops import step_flops
from .machine import machine_info, peer_status
from .points import PEER, Point
from .summary import GB, summarize
from .tables import markdown_report, write_csv

MEASURE_MODULE = "senformer.bench.measure"


def sweep_points(
    lengths: Iterable[int],
    attentions: Iterable[str] = ATTENTION_KINDS,
    depths: Iterable[int] = (1, 11),
    modes: Iterable[str] = ("train",),
    dim: int = 1536,
    precisions: Iterable[str] = ("fp32",),
    checkpoints: Iterable[str] = ("off",),
    conv_tile_length: int | None = 131_072,
    peer: bool = True,
    device: str = "cpu",
    threads: int = 0,
    target_length: int = TARGET_LENGTH,
) -> list[Point]:
    """Every combination, shortest first within each curve (so an out-of-memory length ends its curve)."""
    points = []
    for mode in modes:
        for precision in precisions:
            for checkpoint in checkpoints:
                for depth in depths:
                    curves = [("senformer", attention) for attention in attentions]
                    if peer:
                        curves.append((PEER, "full"))
                    for implementation, attention in curves:
                        for length in sorted(lengths):
                            points.append(Point(
                                length=length, attention=attention, depth=depth, mode=mode, dim=dim,
                                precision=precision, checkpoint=checkpoint,
                                conv_tile_length=conv_tile_length
                                if mode == "inference" and implementation == "senformer" else None,
                                implementation=implementation, device=device, threads=threads,
                                target_length=target_length,
                            ))
    return points


class Sweep:
    """A resumable sweep writing ``scaling.json`` / ``scaling.csv`` / ``scaling.md`` / ``scaling.png``."""

    def __init__(self, out_dir: str | os.PathLike, memory_cap_bytes: int = int(20 * GB),
                 timeout_s: float | None = None, warmup: int = 1, repeats: int = 3,
                 log: Callable[[str], None] = print):
        self.out_dir = Path(out_dir)
        self.memory_cap_bytes = int(memory_cap_bytes)
        self.timeout_s = timeout_s
        self.warmup, self.repeats = warmup, repeats
        self.log = log
        self.path = self.out_dir / "scaling.json"
        self.document = memory.read_points(self.path, "senformer benchmark scaling", Point, "benchmark",
                                           keys_must_match=False)

    # Resuming ----------------------------------------------------------------------------------
    def measured(self) -> dict[str, dict]:
        """Points already recorded: measured, out of memory or timed out (errors and skips are tried again)."""
        return {record["key"]: record for record in self.document["points"]
                if record.get("status") in ("ok", "oom", "timeout")}

    def _known_oom(self, point: Point) -> dict | None:
        """A shorter length of the same curve already out of memory (longer ones are not tried)."""
        for record in self.document["points"]:
            if record.get("status") == "oom" and record["length"] < point.length:
                if Point.from_record(record).curve_key == point.curve_key:
                    return record
        return None

    # Running -----------------------------------------------------------------------------------
    def run(self, points: Sequence[Point], device: str = "cpu", threads: int = 0,
            settings: dict[str, Any] | None = None) -> dict:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.document["runs"].append({"started": memory.now(), "settings": settings, "machine": machine_info(device),
                                      "memory_cap_bytes": self.memory_cap_bytes, "warmup": self.warmup,
                                      "repeats": self.repeats, "load_average": memory.load_average()})
        native_bf16 = bf16_supported(device)
        if not native_bf16 and any(p.precision == "bf16" for p in points):
            self.log(f"bf16 points skipped: {no_native_bf16_reason(device)}")
        runnable = [p for p in points if native_bf16 or p.precision != "bf16"]
        self.ensure_matmul_rates(device, threads, sorted({p.precision for p in runnable}))
        peer_ok, peer_note = (True, "") if not any(p.implementation == PEER for p in points) else peer_status()
        if any(p.implementation == PEER for p in points):
            self.document["runs"][-1]["peer"] = peer_note
        done = self.measured()
        todo = [point for point in points if point.key not in done]
        self.log(f"{len(points) - len(todo)} of {len(points)} points already in {self.path}; {len(todo)} to run")
        for index, point in enumerate(todo, 1):
            if point.precision == "bf16" and not native_bf16:
                record = self._record(point, status="skipped", reason=f"bf16 not run: {no_native_bf16_reason(device)}")
            elif point.implementation == PEER and not peer_ok:
                record = self._record(point, status="skipped", reason=peer_note)
            elif point.implementation == PEER and (point.dim // 8) % 6:
                record = self._record(point, status="skipped", reason=f"{PEER} needs dim / 8 heads divisible by 6 "
                                      f"(its relative features), not dim {point.dim}")
            elif (blocker := self._known_oom(point)) is not None:
                record = self._record(point, status="oom", inferred=True,
                                      reason=f"not run: {blocker['length']:,} bp was already out of memory")
            else:
                record = self.measure(point)
            memory.replace_point(self.document, record)
            self.log(f"[{index}/{len(todo)}] {point.label}: {_describe(record)}")
            self.save()
        self.document["runs"][-1]["finished"] = memory.now()
        self.save()
        return self.document

    def ensure_matmul_rates(self, device: str, threads: int, precisions: Iterable[str]) -> None:
        """Measure the matmul rate of each of ``precisions`` not yet recorded for this device and thread
        count (the reference for each point's fraction of the machine's rate)."""
        for precision in precisions:
            if any(m["device"] == device and m["threads"] == threads and m["precision"] == precision
                   for m in self.document["matmul"]):
                continue
            payload = {"task": "matmul", "arguments": {"threads": threads, "device": device, "precision": precision}}
            run = memory.run_isolated(MEASURE_MODULE, payload, self.memory_cap_bytes, self.timeout_s)
            if run.status == "ok" and run.result:
                self.document["matmul"].append({**run.result, "device": device, "threads": threads,
                                                "measured": memory.now(), "load_average": memory.load_average()})
                self.log(f"matmul rate {precision} ({device}, threads {threads or 'default'}): "
                         f"{run.result['gflops']:.1f} GFLOP/s")
            else:
                self.log(f"matmul rate {precision}: {run.status} {run.stderr_tail[-300:]}")

    def matmul_gflops(self, point: Point) -> float | None:
        for record in self.document["matmul"]:
            if (record["device"], record["threads"], record["precision"]) == (point.device, point.threads,
                                                                               point.precision):
                return record["gflops"]
        return None

    def measure(self, point: Point) -> dict:
        """Run ``point`` in a capped child and turn what happened into its record."""
        payload = {"task": "point", "point": asdict(point), "warmup": self.warmup, "repeats": self.repeats}
        load_before = memory.load_average()
        run = memory.run_isolated(MEASURE_MODULE, payload, self.memory_cap_bytes, self.timeout_s)
        result = run.result or {}
        record = self._record(point, status=run.status, peak_rss_bytes=run.peak_rss_bytes,
                              wall_seconds=round(run.wall_seconds, 3), load_average_before=load_before,
                              load_average_after=memory.load_average())
        record.update({k: v for k, v in result.items() if k not in ("peak_rss_bytes", "error")})
        if run.status == "ok":
            flops = step_flops(point)
            record["flops"] = flops
            record["achieved_gflops"] = flops / record["median_seconds"] / 1e9
            rate = self.matmul_gflops(point)
            if rate:
                record["fraction_of_matmul_rate"] = record["achieved_gflops"] / rate
        else:
            record.update(memory.failure_fields(run, result, self.memory_cap_bytes))
        return record

    def _record(self, point: Point, status: str, **extra) -> dict:
        return memory.point_record(point, status, self.memory_cap_bytes, **extra)

    # Writing -----------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the summary, ``scaling.json``, ``scaling.csv`` and ``scaling.md`` (each atomically)."""
        self.document["summary"] = summarize(self.document["points"])
        atomic_write_text(self.path, json.dumps(self.document, indent=1, sort_keys=False) + "\n")
        write_csv(self.document["points"], self.out_dir / "scaling.csv")
        atomic_write_text(self.out_dir / "scaling.md", markdown_report(self.document))

    def plot(self) -> Path | None:
        """Draw ``scaling.png``; None before any point was measured."""
        return draw_scaling_figure(self.document, self.out_dir / "scaling.png")


def run_sweep(settings: dict[str, Any], out_dir: str | os.PathLike, plot_only: bool = False,
              log: Callable[[str], None] = print) -> list[Path]:
    """Run the sweep ``settings`` describe (see ``senformer benchmark scaling --help``), resumed from
    ``out_dir``; with ``plot_only``, only redraw the summary, tables and figure from what is recorded.
    Returns the files written."""
    sweep = Sweep(out_dir, settings["memory_cap_bytes"], settings["timeout_s"], settings["warmup"],
                  settings["repeats"], log=log)
    if plot_only:
        sweep.save()
    else:
        sweep.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(sweep.out_dir / "settings.json", settings)
        points = sweep_points(
            settings["lengths"], settings["attentions"], settings["depths"], settings["modes"], settings["dim"],
            settings["precisions"], settings["checkpoints"], settings["conv_tile_length"], settings["peer"],
            settings["device"], settings["threads"], settings["target_length"],
        )
        sweep.run(points, settings["device"], settings["threads"], settings)
    figure = sweep.plot()
    tables = [sweep.path, sweep.out_dir / "scaling.csv", sweep.out_dir / "scaling.md"]
    return tables + ([figure] if figure else [])


def _describe(record: dict) -> str:
    if record["status"] == "ok":
        return (f"{record['median_seconds']:.2f} s, peak {record['peak_rss_bytes'] / GB:.2f} GB"
                + (f", {record['achieved_gflops']:.0f} GFLOP/s" if "achieved_gflops" in record else ""))
    return f"{record['status']}" + (f" ({record['reason']})" if record.get("reason") else "")


