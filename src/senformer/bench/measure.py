"""The child side of the scaling benchmark: one point, or the machine's matmul rate, in a fresh process.

``python -m senformer.bench.measure PAYLOAD RESULT`` (:func:`senformer.bench.memory.child_main`); the parent
(:mod:`senformer.bench.sweep`) runs it under a resident-memory cap. Only this module runs model code.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from typing import Any

from ..constants import NUM_TRACKS
from . import memory
from .points import Point


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
    target = torch.rand(1, point.target_length, NUM_TRACKS["human"], generator=generator).to(device) * 2.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4) if point.mode == "train" else None
    model.train(point.mode != "inference")

    def precision():
        if point.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def human(inputs):
        if point.implementation == "senformer":
            return model(inputs, heads=["human"])["human"]
        return model(inputs, head="human")

    def step():
        if point.mode == "inference":
            with torch.inference_mode(), precision():
                return human(sequence)
        with precision():
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
    cuda = torch.device(device).type == "cuda"

    def timed() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if cuda:
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


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """One task of the parent's payload: ``{"task": "matmul", "arguments": {...}}`` or
    ``{"task": "point", "point": {...}, "warmup": w, "repeats": r}``."""
    if payload["task"] == "matmul":
        return measure_matmul_rate(**payload["arguments"])
    return measure_point(Point(**payload["point"]), payload["warmup"], payload["repeats"], payload.get("seed", 0))


if __name__ == "__main__":
    sys.exit(memory.child_main(measure, sys.argv[1:3]))
