"""Where a forward pass spends its time: GFLOP/s per stage against this machine's measured sgemm rate.

One model (random weights, batch 1, eval mode, in this process) runs stage by stage: the stem, the conv tower,
each transformer layer split into its projections (LayerNorm, q/k/v, relative keys and the output layer), its
relative position term, its attention core (content scores, softmax, weighted values) and its MLP, Borzoi's
U-Net, and the heads (crop, final pointwise block, heads). A kind other than ``full`` times its whole
:meth:`~senformer.model.attention.RelativeAttention.attend` as the core (its relative term is inside), and
Flashzoi's rotary attention the whole attention module. FLOPs are counted as executed
(:class:`torch.utils.flop_counter.FlopCounterMode`, one untimed pass: matrix products and convolutions, not the
elementwise work), so the rates hold for either family and any attention kind. The timed rounds repeat the
whole stage sequence (every stage of a round under the same load) and the median per stage is reported, with
the sgemm rate (:func:`senformer.bench.measure.measure_matmul_rate`) measured before and after, the CPU's
vector flags and the load average: timings of a busy machine are relative evidence only.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch.nn import functional as F

from ..model.attention import FullAttention, RelativeAttention
from ..model.attention.full import relative_logits
from ..model.attention.relative import attend
from ..model.layers import crop

Record = Callable[[str, Callable[[], Any]], Any]
# The flags that decide which kernels the CPU runs (vector width, fused multiply-add, bf16 and int8 units).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def attention_stages(block, x: torch.Tensor, record: Record, prefix: str) -> torch.Tensor:
    """One transformer block's attention branch by parts; x: (batch, T, dim) -> the block's x after the residual."""
    attention = block.attention
    if not isinstance(attention, RelativeAttention):  # rotary: no shared projection step to split off
        return x + record(f"{prefix} attention", lambda: attention(block.attention_norm(x)))
    batch, length, _ = x.shape
    q_content, key, value, q_position, relative_keys, buckets = record(
        f"{prefix} projections", lambda: attention.project(block.attention_norm(x)))
    if isinstance(attention, FullAttention):
        relative = None
        if relative_keys is not None:
            relative = record(f"{prefix} relative term", lambda: relative_logits(q_position, relative_keys, buckets))

        def core():
            logits = torch.matmul(q_content, key.transpose(-1, -2))  # (batch, heads, T, T)
            return attend(logits if relative is None else logits + relative, value)
        out = record(f"{prefix} attention core", core)
    else:
        out = record(f"{prefix} attention core", lambda: attention.attend(
            q_content, key, value, q_position, relative_keys, buckets))
    out = out.transpose(1, 2).reshape(batch, length, -1)  # (batch, T, heads * value)
    return x + record(f"{prefix} projections", lambda: attention.to_out(out))


def forward_stages(model, sequence: torch.Tensor, record: Record, head: str) -> torch.Tensor:
    """``model``'s forward pass of one-hot ``sequence`` (batch, bp, 4), stage by stage through ``record(name,
    fn)`` (which calls ``fn`` and returns its result; a name met twice in a pass adds up); returns the head's
    (batch, bins, tracks) as the model would, without its softplus checks."""
    from ..model.borzoi import Borzoi, tanh_gelu

    borzoi = isinstance(model, Borzoi)
    x = model.prepare_input(sequence).transpose(1, 2)  # (batch, 4, bp)
    x = record("stem", lambda: model.stem(x))
    skips = []
    for index, block in enumerate(model.conv_tower):
        if borzoi:
            x = record("conv tower", lambda: block(x))
            if index >= len(model.conv_tower) - model.config.unet_levels:
                skips.append(x)
            x = record("conv tower", lambda: block.pool(x))
        else:
            x = record("conv tower", lambda: block(x))
    x = x.transpose(1, 2)  # (batch, T, dim)
    for layer, block in enumerate(model.transformer):
        x = attention_stages(block, x, record, f"layer {layer}")
        x = record(f"layer {layer} mlp", lambda: x + block.feed_forward(x))
    if borzoi:
        x = x.transpose(1, 2)  # (batch, dim, T)
        for step, skip in zip(model.unet, skips[::-1]):
            x = record("u-net", lambda: step(x, skip))
        x = x.transpose(1, 2)

    def heads():
        if borzoi:
            embedded = crop(x, model.config.target_length, model.config.crop)
            if model.final_pointwise is not None:
                embedded = model.final_pointwise(embedded.transpose(1, 2)).transpose(1, 2)
            embedded = tanh_gelu(embedded)
        else:
            from ..constants import CROP_MARGIN
            from ..model.layers import gelu

            embedded = crop(x, model.config.target_length, CROP_MARGIN)
            embedded = gelu(model.final_pointwise(embedded.transpose(1, 2)).transpose(1, 2))
        return F.softplus(model.heads[head](embedded))
    return record("heads", heads)


def stage_flops(model, sequence: torch.Tensor, head: str) -> dict[str, float]:
    """FLOPs of each stage as executed (one pass under FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    flops: dict[str, float] = {}

    def record(name, fn):
        with FlopCounterMode(display=False) as counter:
            result = fn()
        flops[name] = flops.get(name, 0.0) + float(counter.get_total_flops())
        return result

    with torch.inference_mode():
        forward_stages(model, sequence, record, head)
    return flops


def time_stages(model, sequence: torch.Tensor, head: str, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each stage per timed round (``warmup`` untimed rounds first)."""
    rounds: list[dict[str, float]] = []
    for _ in range(warmup + repeats):
        seconds: dict[str, float] = {}

        def record(name, fn):
            start = time.perf_counter()
            result = fn()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            return result

        with torch.inference_mode():
            forward_stages(model, sequence, record, head)
        rounds.append(seconds)
    return {name: [round_[name] for round_ in rounds[warmup:]] for name in rounds[0]}


def cpu_flags() -> list[str]:
    """The :data:`CPU_FLAGS` this CPU has (from /proc/cpuinfo; empty where that is not readable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def run_stage_report(model, length: int, repeats: int, threads: int, head: str | None = None,
                     seed: int = 0) -> dict[str, Any]:
    """The stage report of ``model`` (eval mode, on the CPU) at ``length`` bp, batch 1: per stage GFLOP, median
    seconds and GFLOP/s, and the share of the sgemm rate, with the machine's rate, flags and load averages."""
    from .measure import measure_matmul_rate
    from .memory import load_average

    if threads:
        torch.set_num_threads(threads)
    head = head or next(iter(model.heads))
    tokens = torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(seed))
    sequence = F.one_hot(tokens, 4).float()  # (1, bp, 4)
    load_before = load_average()
    sgemm_before = measure_matmul_rate(threads)
    flops = stage_flops(model, sequence, head)
    seconds = time_stages(model, sequence, head, repeats)
    sgemm_after = measure_matmul_rate(threads)
    sgemm = statistics.median([sgemm_before["gflops"], sgemm_after["gflops"]])
    stages = []
    total_seconds = sum(statistics.median(values) for values in seconds.values())
    for name, values in seconds.items():
        median = statistics.median(values)
        gflops = flops.get(name, 0.0) / 1e9
        rate = gflops / median if median > 0 else 0.0
        stages.append({"stage": name, "gflop": gflops, "median_s": median, "seconds": values,
                       "gflops_per_s": rate, "of_sgemm": rate / sgemm if sgemm else None,
                       "share_of_time": median / total_seconds if total_seconds else None})
    return {"benchmark": "forward-stages", "length": length, "batch": 1, "head": head, "repeats": repeats,
            "threads": torch.get_num_threads(), "sgemm_gflops": sgemm, "sgemm": [sgemm_before, sgemm_after],
            "cpu_flags": cpu_flags(), "load_average_before": load_before, "load_average_after": load_average(),
            "total_gflop": sum(flops.values()) / 1e9, "total_median_s": total_seconds, "stages": stages}


def format_stage_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, with the machine line above it."""
    lines = [f"sgemm {report['sgemm_gflops']:.0f} GFLOP/s fp32, {report['threads']} threads, CPU flags "
             f"{' '.join(report['cpu_flags']) or 'unknown'}; load average {report['load_average_before']} before, "
             f"{report['load_average_after']} after; {report['length']:,} bp, batch 1, median of "
             f"{report['repeats']} rounds",
             "", "| stage | GFLOP | s | GFLOP/s | of sgemm | of time |", "|---|---:|---:|---:|---:|---:|"]
    for stage in report["stages"]:
        of_sgemm = f"{stage['of_sgemm']:.0%}" if stage["of_sgemm"] is not None and stage["gflop"] else "-"
        lines.append(f"| {stage['stage']} | {stage['gflop']:.2f} | {stage['median_s']:.3f} | "
                     f"{stage['gflops_per_s']:.1f} | {of_sgemm} | {stage['share_of_time']:.0%} |")
    lines.append(f"| total | {report['total_gflop']:.2f} | {report['total_median_s']:.3f} | "
                 f"{report['total_gflop'] / report['total_median_s']:.1f} | "
                 f"{report['total_gflop'] / report['total_median_s'] / report['sgemm_gflops']:.0%} | 100% |")
    return "\n".join(lines)
