"""``senformer benchmark scaling``: memory and speed against sequence length (the S-Enformer report's Figs 1-3).

Sweeps input length x attention kind x depth x mode (inference; forward+backward; training step = forward,
Poisson loss, backward, Adam step) x precision (fp32, bf16 autocast) x activation checkpointing, for our model
and the peer (enformer-pytorch) at the same length, width, dtype and threads. Each point runs in its own
subprocess under a hard resident-memory cap (:mod:`senformer.bench.memory`): peak RSS on CPU, CUDA peak
allocated on GPU, the median step time after warm-up, and out-of-memory recorded as a data point.

Derived views, as in the report: per-layer memory and time (deep minus shallow model, divided by the
difference in layers: Figure 2), fitted scaling exponents, ratios against ``full`` and against the peer,
achieved GFLOP/s against an analytic FLOP count and against the machine's measured matmul rate.

Outputs in ``--out``: ``scaling.json`` (machine, software, settings, every point, summary; the run resumes
from it, skipping points already measured), ``scaling.csv`` and ``scaling.png``.

The child side (``python -m senformer.bench.scaling PAYLOAD RESULT``) measures one point; nothing else in
this module runs model code in the parent process.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..config import ATTENTION_KINDS, EnformerConfig
from ..constants import NUM_TRACKS, TARGET_LENGTH
from ..errors import UserError
from ..io import atomic_path, atomic_write_text
from . import memory

# Figure 1's x axis (131,072 .. 786,432 bp in 65,536 bp steps) and the lengths recorded at full width.
DEFAULT_LENGTHS = tuple(range(131_072, 786_432 + 1, 65_536))
RECORDED_LENGTHS = (131_072, 262_144, 393_216, 524_288, 786_432)
MODES = ("inference", "fwd_bwd", "train")
PRECISIONS = ("fp32", "bf16")
CHECKPOINTS = ("off", "conv", "all")
CHECKPOINT_TITLES = {"off": "", "conv": ", stem + conv tower checkpointed", "all": ", checkpointing"}
# --checkpoint choices and the scopes each one sweeps ("on" is the older name of "all").
CHECKPOINT_CHOICES = {"off": ["off"], "conv": ["conv"], "all": ["all"], "on": ["all"], "both": ["off", "all"]}
IMPLEMENTATIONS = ("senformer", "enformer-pytorch")
PEER = "enformer-pytorch"
PEER_VERSION = "0.8.10"
GB = 1e9

# A run of a few minutes on an idle 2-core CPU: a quarter-width model (the smallest width enformer-pytorch
# also builds; heads and key size as published, so the attention itself is full size), 256 to 1,024
# positions, 1 and 3 layers, training step, 128 output bins so that 32,768 bp is a valid input.
QUICK = {"dim": 384, "lengths": (32_768, 65_536, 131_072), "depths": (1, 3), "modes": ("train",),
         "target_length": 128, "warmup": 1, "repeats": 1}


@dataclass(frozen=True)
class Point:
    """One measurement. Every field is part of its identity in the results (warm-up and repeats are not)."""

    length: int
    attention: str = "full"
    depth: int = 11
    mode: str = "train"
    dim: int = 1536
    precision: str = "fp32"
    # Activation checkpointing: "off"; "conv" (stem + conv tower: the full-resolution activations, while the
    # transformer keeps its own, so attention memory shows); "all" (both switches; the peer's use_checkpointing).
    checkpoint: str = "off"
    conv_tile_length: int | None = 131_072  # inference only; None: untiled
    target_length: int = TARGET_LENGTH  # output bins (896 as published; tests use fewer for short inputs)
    implementation: str = "senformer"
    device: str = "cpu"
    threads: int = 0  # 0: torch's default

    def __post_init__(self) -> None:
        if isinstance(self.checkpoint, bool):  # results recorded before the "conv" scope existed
            object.__setattr__(self, "checkpoint", "all" if self.checkpoint else "off")
        problems = []
        if self.checkpoint not in CHECKPOINTS:
            problems.append(f"checkpoint {self.checkpoint!r} is not one of {', '.join(CHECKPOINTS)}")
        if self.attention not in ATTENTION_KINDS:
            problems.append(f"attention {self.attention!r} is not one of {', '.join(ATTENTION_KINDS)}")
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.implementation not in IMPLEMENTATIONS:
            problems.append(f"implementation {self.implementation!r} is not one of {', '.join(IMPLEMENTATIONS)}")
        if self.implementation == PEER and self.attention != "full":
            problems.append(f"{PEER} has only full attention, not {self.attention!r}")
        if problems:
            raise ValueError("invalid benchmark point: " + "; ".join(problems))

    @property
    def key(self) -> str:
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def label(self) -> str:
        name = self.attention if self.implementation == "senformer" else PEER
        switches = "".join([" bf16" if self.precision == "bf16" else "", {"off": "", "conv": " ckpt-conv", "all": " ckpt"}[self.checkpoint],
                            " untiled" if self.mode == "inference" and self.conv_tile_length is None
                            and self.implementation == "senformer" else ""])
        return f"{name} depth {self.depth} {self.mode}{switches} {self.length:,} bp"

    def config(self) -> EnformerConfig:
        """Our model's configuration for this point (the published model at ``dim``/``depth``).

        Relative features are ``dim // heads`` as published, rounded down to the multiple of 6 the feature
        families need when a reduced width does not give one (dim 256: 30 rather than 32).
        """
        features = (self.dim // 8) // 6 * 6
        # EnformerConfig refuses a width whose last conv-tower filter does not round to dim (e.g. 192).
        return EnformerConfig(
            num_relative_position_features=None if features == self.dim // 8 else features,
            dim=self.dim, depth=self.depth, attention=self.attention, target_length=self.target_length,
            checkpoint_transformer=self.checkpoint == "all", checkpoint_conv_tower=self.checkpoint != "off",
            conv_tile_length=self.conv_tile_length,
        )


# Analytic FLOPs -----------------------------------------------------------------------------------
def forward_flops(config: EnformerConfig, length: int, heads: Sequence[str] = ("human",)) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one forward pass at batch 1, by part.

    Counts the convolutions, projections, attention products (scores, relative term, weighted values) and
    the MLP; not the elementwise work (norms, GELU, softmax, pooling softmax). ``bigbird`` counts every
    computed block pair, masked slots included. Training is about 3x the forward (backward: 2x).
    """
    half, filters = config.dim // 2, config.conv_tower_filters
    stem = 2 * length * (4 * 15 * half + 2 * half * half)  # width-15 conv, pointwise conv, pooling logits
    stem_out = length // 2
    tower = 0.0
    in_channels, positions = half, stem_out
    for out_channels in filters:
        tower += 2 * positions * (5 * in_channels * out_channels + 2 * out_channels * out_channels)
        in_channels, positions = out_channels, positions // 2
    T, C, H, K, V = positions, config.dim, config.heads, config.key_size, config.head_value_size
    relative = config.relative_positions
    projections = 2 * T * C * (2 * H * K + 2 * H * V)  # q, k, v, out
    if relative:
        projections += 2 * (2 * T - 1) * config.relative_features * H * K  # r_k
    if config.attention == "full":
        scores = 2 * H * T * T * (K + V) + (2 * H * T * (2 * T - 1) * K if relative else 0)
    elif config.attention == "chunked":
        chunk = min(config.chunk_size, T)
        scores = 2 * H * T * T * (K + V) + (2 * H * T * (T + chunk - 1) * K if relative else 0)
    else:
        block = config.block_size
        blocks = -(-T // block)
        global_blocks = min(config.num_global_blocks, blocks)
        sparse = blocks - global_blocks
        slots = min(config.num_window_blocks + config.num_global_blocks + config.num_random_blocks, blocks)
        if sparse == 0 or slots >= blocks:  # the kernel runs dense attention
            scores = 2 * H * T * T * (K + V) + (2 * H * T * (2 * T - 1) * K if relative else 0)
        else:
            scores = 2 * H * sparse * slots * block * block * (K + V)
            rows = global_blocks * block
            scores += 2 * H * rows * T * (K + V)
            if relative:
                scores += 2 * H * sparse * slots * block * (2 * block - 1) * K
                scores += 2 * H * rows * (T + block - 1) * K
    mlp = 2 * T * C * 2 * C * 2
    bins = config.output_length(length)
    final = 2 * bins * filters[-1] * 2 * C
    head_flops = sum(2 * bins * 2 * C * config.output_heads[name] for name in heads)
    parts = {
        "stem": float(stem), "conv_tower": float(tower),
        "attention_projections": float(config.depth * projections), "attention_scores": float(config.depth * scores),
        "mlp": float(config.depth * mlp), "final_pointwise": float(final), "heads": float(head_flops),
    }
    parts["total"] = sum(parts.values())
    return parts


def step_flops(point: Point) -> float:
    """Model FLOPs of one step of ``point`` (recomputation by checkpointing not counted)."""
    forward = forward_flops(point.config() if point.implementation == "senformer" else _peer_like_config(point),
                            point.length)["total"]
    return forward if point.mode == "inference" else 3.0 * forward


def _peer_like_config(point: Point) -> EnformerConfig:
    return Point(**{**asdict(point), "implementation": "senformer"}).config()


# The child: one point in a fresh process -------------------------------------------------------------
def build_model(point: Point):
    """Our model or the peer's for ``point``, randomly initialised (timing and memory only)."""
    if point.implementation == "senformer":
        from ..model.enformer import Enformer

        return Enformer(point.config())
    from enformer_pytorch import Enformer as PeerEnformer

    return PeerEnformer.from_hparams(
        dim=point.dim, depth=point.depth, heads=8, output_heads=dict(NUM_TRACKS), target_length=point.target_length,
        use_checkpointing=point.checkpoint == "all",  # one switch; "conv" runs it without
    )


def measure_point(point: Point, warmup: int = 1, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Time ``repeats`` steps after ``warmup`` and report memory; runs inside the capped child."""
    import torch
    from torch.nn import functional as F

    if point.threads:
        torch.set_num_threads(point.threads)
    torch.manual_seed(seed)
    device = torch.device(point.device)
    model = build_model(point).to(device)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 4, (1, point.length), generator=generator)
    sequence = F.one_hot(tokens, 4).float().to(device)  # (1, bp, 4)
    bins = point.target_length
    target = torch.rand(1, bins, NUM_TRACKS["human"], generator=generator).to(device) * 2.0
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if point.precision == "bf16" else None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4) if point.mode == "train" else None
    model.train(point.mode != "inference")

    def human(inputs):
        if point.implementation == "senformer":
            return model(inputs, heads=["human"])["human"]
        return model(inputs, head="human")

    def step():
        context = autocast() if autocast else _null()
        if point.mode == "inference":
            with torch.inference_mode(), context:
                return human(sequence)
        with context:
            prediction = human(sequence)
        loss = F.poisson_nll_loss(prediction.float(), target, log_input=False)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)
        return None

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_rss = memory.own_rss_bytes()
    seconds, output = [], None
    for _ in range(warmup + repeats):
        synchronize()
        start = time.perf_counter()
        output = step()
        synchronize()
        seconds.append(time.perf_counter() - start)
    result: dict[str, Any] = {
        "seconds": seconds[warmup:], "warmup_seconds": seconds[:warmup],
        "median_seconds": statistics.median(seconds[warmup:]), "min_seconds": min(seconds[warmup:]),
        "baseline_rss_bytes": baseline_rss, "peak_rss_bytes": memory.own_peak_rss_bytes(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if device.type == "cuda":
        result["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["cuda_device"] = torch.cuda.get_device_name(device)
    if point.mode == "inference" and point.precision == "bf16" and output is not None:
        # bf16 against fp32 on the same weights and input (untimed): the largest difference relative to
        # the output's scale, and the median elementwise relative difference.
        with torch.inference_mode():
            reference = human(sequence).float()
        difference = (output.float() - reference).abs()
        result["bf16_max_difference_over_max"] = float(difference.max() / reference.abs().max())
        result["bf16_median_relative_difference"] = float((difference / reference.abs().clamp_min(1e-6)).median())
    return result


def measure_matmul_rate(threads: int, device: str = "cpu", size: int = 2048, precision: str = "fp32",
                        min_seconds: float = 1.0) -> dict[str, Any]:
    """GFLOP/s of a square ``size`` matmul (median of timed runs over at least ``min_seconds``)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)

    def timed() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()
    runs, total = [], 0.0
    while total < min_seconds or len(runs) < 3:
        runs.append(timed())
        total += runs[-1]
    median = statistics.median(runs)
    return {"size": size, "precision": precision, "seconds": median, "gflops": 2 * size**3 / median / 1e9,
            "runs": len(runs)}


def _null():
    import contextlib

    return contextlib.nullcontext()


def _child_main(payload_path: str, result_path: str) -> int:
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    try:
        if payload["task"] == "matmul":
            result = measure_matmul_rate(**payload["arguments"])
            result["peak_rss_bytes"] = memory.own_peak_rss_bytes()
        else:
            point = Point(**payload["point"])
            result = measure_point(point, payload["warmup"], payload["repeats"], payload.get("seed", 0))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which records the point
        if memory.is_out_of_memory(error):
            atomic_write_text(result_path, json.dumps({"error": str(error)[:2000],
                                                       "peak_rss_bytes": memory.own_peak_rss_bytes()}))
            return memory.OOM_EXIT_CODE
        raise
    atomic_write_text(result_path, json.dumps(result))
    return 0


# The parent: sweeps, records, summaries ------------------------------------------------------------
def peer_status() -> tuple[bool, str]:
    """Whether enformer-pytorch can be imported (checked in a subprocess: it imports transformers)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import enformer_pytorch, importlib.metadata as m; print(m.version('enformer-pytorch'))"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, f"{PEER} is not importable ({last}); install it with pip install {PEER}=={PEER_VERSION}"
    return True, probe.stdout.strip()


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine and software a sweep ran on."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "hostname": platform.node(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
        names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        info["cpu"] = names[0] if names else platform.processor()
        info["cpu_bf16_flags"] = sorted(flag for flag in flags if "bf16" in flag or flag.startswith("amx"))
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal"))
        info["memory_bytes"] = int(total.split()[1]) * 1024
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10)
        if commit.returncode == 0:
            info["senformer_commit"] = commit.stdout.strip()
            changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                     text=True, cwd=Path(__file__).resolve().parent, timeout=10)
            info["senformer_uncommitted_changes"] = bool(changed.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


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


def _curve_key(point: Point) -> str:
    return Point(**{**asdict(point), "length": 0}).key


class Sweep:
    """A resumable sweep writing ``scaling.json`` / ``scaling.csv`` / ``scaling.png`` into ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike, memory_cap_bytes: int = int(20 * GB),
                 timeout_s: float | None = None, warmup: int = 1, repeats: int = 3,
                 log: Callable[[str], None] = print):
        self.out_dir = Path(out_dir)
        self.memory_cap_bytes = int(memory_cap_bytes)
        self.timeout_s = timeout_s
        self.warmup, self.repeats = warmup, repeats
        self.log = log
        self.path = self.out_dir / "scaling.json"
        if self.path.exists():
            try:
                self.document = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise UserError(f"{self.path} is not valid JSON ({error}); move it away to start afresh") from error
            if not isinstance(self.document.get("points"), list):
                raise UserError(f"{self.path} has no 'points' list; it is not a scaling benchmark result")
            for record in self.document["points"]:
                if isinstance(record.get("checkpoint"), bool):  # recorded before the "conv" scope existed
                    point = Point(**{f.name: record[f.name] for f in fields(Point)})  # maps it to a scope
                    record["checkpoint"], record["key"] = point.checkpoint, point.key
        else:
            self.document = {"benchmark": "senformer benchmark scaling", "runs": [], "matmul": [], "points": []}

    # Resuming ----------------------------------------------------------------------------------
    def measured(self) -> dict[str, dict]:
        """Points already recorded: measured, out of memory or timed out (errors and skips are tried again)."""
        return {record["key"]: record for record in self.document["points"]
                if record.get("status") in ("ok", "oom", "timeout")}

    def _known_oom(self, point: Point) -> dict | None:
        """A shorter length of the same curve already out of memory (longer ones are not tried)."""
        curve = _curve_key(point)
        for record in self.document["points"]:
            if record.get("status") == "oom" and record["length"] < point.length:
                if _curve_key(Point(**{f.name: record[f.name] for f in fields(Point)})) == curve:
                    return record
        return None

    # Running -----------------------------------------------------------------------------------
    def run(self, points: Sequence[Point], device: str = "cpu", threads: int = 0,
            settings: dict[str, Any] | None = None) -> dict:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.document["runs"].append({"started": _now(), "settings": settings, "machine": machine_info(device),
                                      "memory_cap_bytes": self.memory_cap_bytes, "warmup": self.warmup,
                                      "repeats": self.repeats, "load_average": _load_average()})
        self.ensure_matmul_rates(device, threads)
        peer_ok, peer_note = (True, "") if not any(p.implementation == PEER for p in points) else peer_status()
        if any(p.implementation == PEER for p in points):
            self.document["runs"][-1]["peer"] = peer_note
        done = self.measured()
        todo = [point for point in points if point.key not in done]
        self.log(f"{len(points) - len(todo)} of {len(points)} points already in {self.path}; {len(todo)} to run")
        for index, point in enumerate(todo, 1):
            if point.implementation == PEER and not peer_ok:
                record = self._record(point, status="skipped", reason=peer_note)
            elif point.implementation == PEER and (point.dim // 8) % 6:
                record = self._record(point, status="skipped", reason=f"{PEER} needs dim / 8 heads divisible by 6 "
                                      f"(its relative features), not dim {point.dim}")
            elif (blocker := self._known_oom(point)) is not None:
                record = self._record(point, status="oom", inferred=True,
                                      reason=f"not run: {blocker['length']:,} bp was already out of memory")
            else:
                record = self.measure(point)
            self.document["points"] = [r for r in self.document["points"] if r["key"] != point.key] + [record]
            self.log(f"[{index}/{len(todo)}] {point.label}: {_describe(record)}")
            self.save()
        self.document["runs"][-1]["finished"] = _now()
        self.save()
        return self.document

    def ensure_matmul_rates(self, device: str, threads: int) -> None:
        for precision in ("fp32", "bf16"):
            if any(m["device"] == device and m["threads"] == threads and m["precision"] == precision
                   for m in self.document["matmul"]):
                continue
            payload = {"task": "matmul", "arguments": {"threads": threads, "device": device, "precision": precision}}
            run = memory.run_isolated(__name__, payload, self.memory_cap_bytes, timeout_s=300)
            if run.status == "ok" and run.result:
                self.document["matmul"].append({**run.result, "device": device, "threads": threads,
                                                "measured": _now(), "load_average": _load_average()})
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
        payload = {"task": "point", "point": asdict(point), "warmup": self.warmup, "repeats": self.repeats}
        load_before = _load_average()
        run = memory.run_isolated(__name__, payload, self.memory_cap_bytes, self.timeout_s)
        result = run.result or {}
        record = self._record(point, status=run.status, peak_rss_bytes=run.peak_rss_bytes,
                              wall_seconds=round(run.wall_seconds, 3), load_average_before=load_before,
                              load_average_after=_load_average())
        record.update({k: v for k, v in result.items() if k not in ("peak_rss_bytes", "error")})
        if run.status == "ok":
            flops = step_flops(point)
            record["flops"] = flops
            record["achieved_gflops"] = flops / record["median_seconds"] / 1e9
            rate = self.matmul_gflops(point)
            if rate:
                record["fraction_of_matmul_rate"] = record["achieved_gflops"] / rate
        elif run.status == "oom":
            record["reason"] = result.get("error") or (
                f"resident memory passed the cap of {self.memory_cap_bytes / GB:.1f} GB"
                if run.peak_rss_bytes > self.memory_cap_bytes else "killed by the system (out of memory)")
        else:
            lines = run.stderr_tail.strip().splitlines()
            record["reason"] = lines[-1] if lines else f"{run.status} (exit status {run.returncode})"
            record["stderr_tail"] = run.stderr_tail[-2000:]
        return record

    def _record(self, point: Point, status: str, **extra) -> dict:
        return {"key": point.key, **asdict(point), "status": status, "memory_cap_bytes": self.memory_cap_bytes,
                "recorded": _now(), **extra}

    # Writing -----------------------------------------------------------------------------------
    def save(self) -> None:
        self.document["summary"] = summarize(self.document["points"])
        atomic_write_text(self.path, json.dumps(self.document, indent=1, sort_keys=False) + "\n")
        write_csv(self.document["points"], self.out_dir / "scaling.csv")
        atomic_write_text(self.out_dir / "scaling.md", markdown_report(self.document))

    def plot(self) -> Path | None:
        ok = [r for r in self.document["points"] if r.get("status") in ("ok", "oom")]
        if not ok:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 4, figsize=(22, 5.2))
        selection = figure_selection(self.document["points"])
        plot_memory(self.document["points"], axes[0], **selection)
        plot_per_layer(self.document["summary"], axes[1], "memory_bytes", **selection)
        plot_time(self.document["points"], axes[2], **selection)
        plot_per_layer(self.document["summary"], axes[3], "seconds", **selection)
        machine = self.document["runs"][-1]["machine"] if self.document["runs"] else {}
        figure.suptitle(
            f"senformer scaling: {selection['mode']}, {selection['precision']}, dim {selection['dim']}"
            f"{CHECKPOINT_TITLES[selection['checkpoint']]} — {machine.get('gpu') or machine.get('cpu', '')}"
            f" ({machine.get('usable_cpus', '?')} CPUs)", fontsize=11)
        figure.tight_layout()
        path = self.out_dir / "scaling.png"
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=110, format="png")
        plt.close(figure)
        return path


def _describe(record: dict) -> str:
    if record["status"] == "ok":
        return (f"{record['median_seconds']:.2f} s, peak {record['peak_rss_bytes'] / GB:.2f} GB"
                + (f", {record['achieved_gflops']:.0f} GFLOP/s" if "achieved_gflops" in record else ""))
    return f"{record['status']}" + (f" ({record['reason']})" if record.get("reason") else "")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _load_average() -> list[float] | None:
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


CSV_FIELDS = [f.name for f in fields(Point)] + [
    "status", "median_seconds", "min_seconds", "peak_rss_bytes", "baseline_rss_bytes", "cuda_peak_allocated_bytes", "flops",
    "achieved_gflops", "fraction_of_matmul_rate", "bf16_max_difference_over_max", "bf16_median_relative_difference",
    "inferred", "reason", "memory_cap_bytes", "load_average_before", "load_average_after", "recorded",
]


def write_csv(records: Sequence[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for record in sorted(records, key=_sort_key):
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in record.items()})
    atomic_write_text(path, buffer.getvalue())


def _sort_key(record: dict) -> tuple:
    return (record["mode"], record["precision"], record["checkpoint"], record["dim"], record["implementation"],
            record["attention"], record["depth"], record["length"])


# Summary -----------------------------------------------------------------------------------------
CURVE_FIELDS = ("implementation", "attention", "mode", "dim", "precision", "checkpoint", "conv_tile_length",
                "device", "threads")


def _curve(record: dict, *exclude: str) -> tuple:
    return tuple(record[name] for name in CURVE_FIELDS if name not in exclude)


def fit_exponent(lengths: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) against log(length): 1 linear, 2 quadratic."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(lengths, values) if x > 0 and y > 0]
    if len(pairs) < 2:
        return None
    mean_x = sum(x for x, _ in pairs) / len(pairs)
    mean_y = sum(y for _, y in pairs) / len(pairs)
    spread = sum((x - mean_x) ** 2 for x, _ in pairs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in pairs) / spread


def step_memory(record: dict) -> float:
    """Memory of the step itself: CUDA peak allocated on GPU, else peak RSS (process included)."""
    return float(record.get("cuda_peak_allocated_bytes") or record["peak_rss_bytes"])


def summarize(records: Sequence[dict], fit_from: int = 131_072) -> dict[str, Any]:
    """Per-layer costs, exponents, ratios against ``full`` and the peer, bf16 gains, longest lengths."""
    ok = [r for r in records if r.get("status") == "ok"]
    by_key = {(_curve(r), r["depth"], r["length"]): r for r in ok}

    # Figure 2: (deep - shallow) / (deep depth - shallow depth), for the deepest and shallowest depths measured.
    per_layer = []
    curves = {(_curve(r), r["length"]) for r in ok}
    for curve, length in sorted(curves, key=str):
        depths = sorted(depth for (c, depth, l) in by_key if c == curve and l == length)
        if len(depths) < 2:
            continue
        shallow, deep = by_key[(curve, depths[0], length)], by_key[(curve, depths[-1], length)]
        layers = depths[-1] - depths[0]
        per_layer.append({
            **dict(zip(CURVE_FIELDS, curve)), "length": length, "depths": [depths[0], depths[-1]],
            "memory_bytes": (step_memory(deep) - step_memory(shallow)) / layers,
            "seconds": (deep["median_seconds"] - shallow["median_seconds"]) / layers,
        })

    exponents = []
    for curve in sorted({_curve(r) for r in ok}, key=str):
        for depth in sorted({r["depth"] for r in ok if _curve(r) == curve}):
            rows = _fit_range([r for r in ok if _curve(r) == curve and r["depth"] == depth], fit_from)
            if len(rows) < 2:
                continue
            lengths = [r["length"] for r in rows]
            step = [step_memory(r) - r.get("baseline_rss_bytes", 0) if not r.get("cuda_peak_allocated_bytes")
                    else step_memory(r) for r in rows]
            exponents.append({
                **dict(zip(CURVE_FIELDS, curve)), "depth": depth, "from_length": lengths[0], "to_length": lengths[-1],
                "points": len(rows), "memory": fit_exponent(lengths, [step_memory(r) for r in rows]),
                "memory_above_baseline": fit_exponent(lengths, step), "time": fit_exponent(lengths, [r["median_seconds"] for r in rows]),
            })
        layer_rows = _fit_range([p for p in per_layer if tuple(p[n] for n in CURVE_FIELDS) == curve], fit_from)
        if len(layer_rows) >= 2:
            exponents.append({
                **dict(zip(CURVE_FIELDS, curve)), "depth": "per_layer", "from_length": layer_rows[0]["length"],
                "to_length": layer_rows[-1]["length"], "points": len(layer_rows),
                "memory": fit_exponent([p["length"] for p in layer_rows], [p["memory_bytes"] for p in layer_rows]),
                "time": fit_exponent([p["length"] for p in layer_rows], [p["seconds"] for p in layer_rows]),
            })

    # Sparse kinds against full, per layer and whole step, at each length.
    against_full = []
    for record in ok:
        if record["implementation"] != "senformer" or record["attention"] == "full":
            continue
        full_curve = list(_curve(record))
        full_curve[CURVE_FIELDS.index("attention")] = "full"
        full = by_key.get((tuple(full_curve), record["depth"], record["length"]))
        row = {**{n: record[n] for n in CURVE_FIELDS}, "depth": record["depth"], "length": record["length"]}
        if full is not None:
            row["step_speedup"] = full["median_seconds"] / record["median_seconds"]
            row["step_memory_ratio"] = step_memory(record) / step_memory(full)
        else:
            full_oom = [r for r in records if r.get("status") == "oom" and r["key"] == Point(
                **{**{f.name: record[f.name] for f in fields(Point)}, "attention": "full"}).key]
            if not full_oom:
                continue
            row["full"] = "oom"
        layer = _find(per_layer, record, record["length"])
        full_layer = _find(per_layer, {**record, "attention": "full"}, record["length"])
        if layer and full_layer:
            # A difference of two noisy measurements can come out <= 0; no ratio is reported then.
            row["per_layer_speedup"] = _ratio(full_layer["seconds"], layer["seconds"])
            row["per_layer_memory_ratio"] = _ratio(layer["memory_bytes"], full_layer["memory_bytes"])
        against_full.append(row)

    # Our kinds against the peer at the same length, depth, mode, width, precision, threads.
    against_peer = []
    for record in ok:
        if record["implementation"] != "senformer":
            continue
        peer_key = Point(**{**{f.name: record[f.name] for f in fields(Point)}, "implementation": PEER,
                            "attention": "full", "conv_tile_length": None}).key
        peer = next((r for r in records if r["key"] == peer_key and r.get("status") in ("ok", "oom")), None)
        if peer is None:
            continue
        row = {**{n: record[n] for n in CURVE_FIELDS}, "depth": record["depth"], "length": record["length"]}
        if peer["status"] == "oom":
            row["peer"] = "oom"
        else:
            row["speedup"] = peer["median_seconds"] / record["median_seconds"]
            row["memory_ratio"] = step_memory(record) / step_memory(peer)
        against_peer.append(row)

    bf16 = []
    for record in ok:
        if record["precision"] != "bf16":
            continue
        fp32_key = Point(**{**{f.name: record[f.name] for f in fields(Point)}, "precision": "fp32"}).key
        fp32 = next((r for r in ok if r["key"] == fp32_key), None)
        if fp32 is not None:
            bf16.append({**{n: record[n] for n in CURVE_FIELDS}, "depth": record["depth"], "length": record["length"],
                         "speedup": fp32["median_seconds"] / record["median_seconds"],
                         "memory_ratio": step_memory(record) / step_memory(fp32),
                         **{k: record[k] for k in ("bf16_max_difference_over_max", "bf16_median_relative_difference")
                            if k in record}})

    longest = []
    for curve in sorted({_curve(r) for r in records if r.get("status") in ("ok", "oom")}, key=str):
        for depth in sorted({r["depth"] for r in records if r.get("status") in ("ok", "oom") and _curve(r) == curve}):
            rows = [r for r in records if r.get("status") in ("ok", "oom") and _curve(r) == curve and r["depth"] == depth]
            fits = [r["length"] for r in rows if r["status"] == "ok"]
            fails = [r["length"] for r in rows if r["status"] == "oom"]
            longest.append({**dict(zip(CURVE_FIELDS, curve)), "depth": depth,
                            "longest_ok": max(fits) if fits else None, "shortest_oom": min(fails) if fails else None})

    return {"per_layer": per_layer, "exponents": exponents, "against_full": against_full,
            "against_peer": against_peer, "bf16": bf16, "longest": longest,
            "note": "memory: peak RSS of the point's own process (CPU) or CUDA peak allocated (GPU); per-layer = "
                    "(deep - shallow) / layers; exponents fitted on log-log from "
                    f"{fit_from:,} bp (from the shortest length when fewer than two reach it; see from_length); "
                    "'memory_above_baseline' subtracts the RSS after building the model"}


def _fit_range(rows: list[dict], fit_from: int) -> list[dict]:
    """Rows from ``fit_from`` bp on, or all of them when fewer than two are that long (reduced-width runs)."""
    rows = sorted(rows, key=lambda r: r["length"])
    long_enough = [r for r in rows if r["length"] >= fit_from]
    return long_enough if len(long_enough) >= 2 else rows


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if numerator > 0 and denominator > 0 else None


def _find(rows: Sequence[dict], record: dict, length: int) -> dict | None:
    wanted = tuple(record[n] for n in CURVE_FIELDS)
    return next((r for r in rows if tuple(r[n] for n in CURVE_FIELDS) == wanted and r["length"] == length), None)


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
    for r in sorted(document["points"], key=_sort_key):
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


# Plots (take data and an ax, return the ax) ---------------------------------------------------------
COLOURS = {"full": "tab:blue", "chunked": "tab:green", "bigbird": "tab:red", PEER: "tab:gray"}


def figure_selection(records: Sequence[dict]) -> dict[str, Any]:
    """The settings the figure shows: the most measured mode/precision/width/checkpointing combination."""
    counts: dict[tuple, int] = {}
    for record in records:
        if record.get("status") in ("ok", "oom"):
            combo = (record["mode"], record["precision"], record["dim"], record["checkpoint"])
            counts[combo] = counts.get(combo, 0) + 1
    mode, precision, dim, checkpoint = max(counts, key=lambda c: (c[0] == "train", counts[c])) if counts else (
        "train", "fp32", 1536, False)
    return {"mode": mode, "precision": precision, "dim": dim, "checkpoint": checkpoint}


def _selected(record: dict, mode: str, precision: str, dim: int, checkpoint: str) -> bool:
    return (record["mode"], record["precision"], record["dim"], record["checkpoint"]) == (mode, precision, dim, checkpoint)


def _series_name(record: dict) -> str:
    return PEER if record["implementation"] == PEER else record["attention"]


def plot_memory(records: Sequence[dict], ax, mode: str, precision: str, dim: int, checkpoint: str):
    """Figure 1: peak memory against length, per kind (colour) and depth (solid deepest, dashed shallower)."""
    return _plot_curves(records, ax, lambda r: step_memory(r) / GB, "peak memory (GB)",
                        "Fig. 1: memory vs length", mode, precision, dim, checkpoint, mark_oom=True)


def plot_time(records: Sequence[dict], ax, mode: str, precision: str, dim: int, checkpoint: str):
    """Figure 3: median step time against length."""
    return _plot_curves(records, ax, lambda r: r["median_seconds"], "median step time (s)",
                        "Fig. 3: step time vs length", mode, precision, dim, checkpoint, mark_oom=False)


def _plot_curves(records, ax, value, ylabel, title, mode, precision, dim, checkpoint, mark_oom):
    chosen = [r for r in records if r.get("status") in ("ok", "oom") and _selected(r, mode, precision, dim, checkpoint)]
    depths = sorted({r["depth"] for r in chosen})
    for name in [n for n in COLOURS if any(_series_name(r) == n for r in chosen)]:
        for depth in depths:
            rows = sorted((r for r in chosen if _series_name(r) == name and r["depth"] == depth), key=lambda r: r["length"])
            fits = [r for r in rows if r["status"] == "ok"]
            style = "-" if depth == depths[-1] else "--"
            if fits:
                ax.plot([r["length"] / 1e3 for r in fits], [value(r) for r in fits], style, marker="o", markersize=3,
                        color=COLOURS[name], label=f"{name}, {depth} layer{'s' if depth > 1 else ''}")
            if mark_oom:
                for r in rows:
                    if r["status"] == "oom" and not r.get("inferred"):
                        ax.plot(r["length"] / 1e3, r["memory_cap_bytes"] / GB, "x", color=COLOURS[name], markersize=8)
    if mark_oom and chosen:
        ax.axhline(chosen[0]["memory_cap_bytes"] / GB, color="black", linewidth=0.6, linestyle=":")
    ax.set_xlabel("sequence length (kbp)")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" (x: out of memory at the cap)" if mark_oom else ""), fontsize=10)
    ax.grid(alpha=0.3)
    if chosen:
        ax.legend(fontsize=7)
    return ax


def plot_per_layer(summary: dict, ax, quantity: str, mode: str, precision: str, dim: int, checkpoint: str):
    """Figure 2: per-layer memory (GB) or time (s) against length, per kind."""
    rows = [p for p in summary.get("per_layer", []) if _selected(p, mode, precision, dim, checkpoint)]
    scale = GB if quantity == "memory_bytes" else 1.0
    for name in COLOURS:
        series = sorted((p for p in rows if (PEER if p["implementation"] == PEER else p["attention"]) == name),
                        key=lambda p: p["length"])
        if series:
            ax.plot([p["length"] / 1e3 for p in series], [p[quantity] / scale for p in series], "-", marker="o",
                    markersize=3, color=COLOURS[name], label=name)
    ax.set_xlabel("sequence length (kbp)")
    ax.set_ylabel("per-layer memory (GB)" if quantity == "memory_bytes" else "per-layer step time (s)")
    what = "memory" if quantity == "memory_bytes" else "step time"
    ax.set_title(f"Fig. 2: {what} per transformer layer ((deep - shallow) / layers)", fontsize=10)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7)
    return ax


# CLI -------------------------------------------------------------------------------------------------
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


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scaling", help="memory and speed against sequence length (Figures 1-3), resumable",
        description="Sweep length x attention kind x depth x mode, each point in its own subprocess under a "
        "resident-memory cap. Writes scaling.json (resumable), scaling.csv and scaling.png into --out.",
    )
    parser.add_argument("--out", required=True, help="output directory (an existing scaling.json is resumed)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few-minute run: dim {QUICK['dim']}, lengths {', '.join(f'{n:,}' for n in QUICK['lengths'])}, "
                        f"depths 1 and 3, training step, {QUICK['target_length']} output bins, 1 warm-up + 1 timed step")
    parser.add_argument("--dim", type=int, help="model width (default 1536; a multiple of 128)")
    parser.add_argument("--lengths", type=_int_list, help="comma-separated lengths in bp (default 131,072 .. "
                        "786,432 in steps of 65,536; 'recorded' sweep: --lengths 131072,262144,393216,524288,786432)")
    parser.add_argument("--attention", type=_choice_list(ATTENTION_KINDS), default=list(ATTENTION_KINDS),
                        help="comma-separated kinds (default all)")
    parser.add_argument("--depths", type=_int_list, help="comma-separated depths (default 1,11)")
    parser.add_argument("--modes", type=_choice_list(MODES), help="comma-separated: inference, fwd_bwd (no optimizer), "
                        "train (forward, Poisson loss, backward, Adam step; default)")
    parser.add_argument("--precision", type=_choice_list(PRECISIONS), default=["fp32"],
                        help="comma-separated fp32, bf16 (autocast) (default fp32)")
    parser.add_argument("--checkpoint", choices=list(CHECKPOINT_CHOICES), default="off",
                        help="activation checkpointing: off; conv (stem + conv tower only, so the transformer's "
                        "memory shows); all (transformer too; 'on' is the same); both (off and all)")
    parser.add_argument("--conv-tile-length", default="131072",
                        help="inference: bp per conv-trunk tile, or 'none' (default 131072)")
    parser.add_argument("--target-length", type=int,
                        help=f"output bins (default {TARGET_LENGTH}; inputs must give at least this many positions)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also measure {PEER} (full attention) at the same settings (default on; skipped "
                        "with a recorded reason when not installed)")
    parser.add_argument("--memory-cap-gb", type=float, default=20.0, help="resident-memory cap per point (default 20)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per point before it is killed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per point (default: torch's default)")
    parser.add_argument("--warmup", type=int, help="untimed steps per point (default 1)")
    parser.add_argument("--repeats", type=int, help="timed steps per point; the median is reported (default 3)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--plot-only", action="store_true", help="only redraw scaling.png and the summary")
    parser.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    quick = QUICK if args.quick else {}
    tile = None if str(args.conv_tile_length).lower() == "none" else int(args.conv_tile_length)
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
        "device": args.device,
        "threads": args.threads,
        "memory_cap_bytes": int(args.memory_cap_gb * GB),
        "timeout_s": args.timeout,
        "warmup": args.warmup if args.warmup is not None else quick.get("warmup", 1),
        "repeats": args.repeats if args.repeats is not None else quick.get("repeats", 3),
    }
    if settings["repeats"] < 1 or settings["warmup"] < 0:
        raise UserError(f"--repeats must be >= 1 and --warmup >= 0 (got {settings['repeats']}, {settings['warmup']})")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
    for length in settings["lengths"]:
        Point(length=length, dim=settings["dim"], target_length=settings["target_length"]).config().validate_sequence_length(length)
    if any(depth < 1 for depth in settings["depths"]):
        raise UserError(f"--depths must be positive, got {settings['depths']}")
    return settings


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    sweep = Sweep(args.out, settings["memory_cap_bytes"], settings["timeout_s"], settings["warmup"],
                  settings["repeats"], log=lambda line: print(line, flush=True))
    if not args.plot_only:
        atomic_write_text(Path(args.out) / "settings.json", json.dumps(settings, indent=2) + "\n")
        points = sweep_points(
            settings["lengths"], settings["attentions"], settings["depths"], settings["modes"], settings["dim"],
            settings["precisions"], settings["checkpoints"], settings["conv_tile_length"], settings["peer"],
            settings["device"], settings["threads"], settings["target_length"],
        )
        sweep.run(points, settings["device"], settings["threads"], settings)
    else:
        sweep.save()
    path = sweep.plot()
    print(f"wrote {sweep.path}, {sweep.out_dir / 'scaling.csv'}, {sweep.out_dir / 'scaling.md'}"
          + (f", {path}" if path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:3]))
