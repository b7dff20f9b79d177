"""``senformer benchmark variants``: the edit engine (:mod:`senformer.edits`) against the plain path.

Issue 13's benchmark. Each point runs in its own capped subprocess (:func:`senformer.bench.memory.run_isolated`,
``python -m senformer.bench.variants PAYLOAD RESULT``) on a randomly weighted model (speed does not depend on
the weights; every BatchNorm's moving statistics and the attention output layer are randomised so that the
equality check below is not between near-constant outputs). Two workloads per attention kind and precision:

- ``anchored`` (one strand): a window with many edits against it, as expression-QTL scoring and in-silico
  mutagenesis do. Anchored SNVs at random positions across the window, and ISM (every other base at
  consecutive positions from the window's centre).
- ``centred`` (reverse-complement averaging): variants at the window's centre, the right flank refilled.
  Variant-centred windows (one window, one reference per variant: an SNV and a 1-bp insertion, each in a
  fresh window), and ``--cluster-bp`` sharing: SNVs within ``cluster_bp`` of the centre scored against one
  shared reference.

The plain path is today's fastest whole-window path in the same process (:func:`senformer.inference.predict_batch`
through ``EditEngine(plain=True)``): same threads, ``inference_mode``, batch size and conv tile; its reference
is computed once and shared, so its cost per edit is one whole-window pass of the edited batch (both strands
with RC averaging). Baskerville-style clustering on the plain path is that: one reference pass shared by the
cluster and a whole pass per alternative allele. A variant-centred window on the plain path is two whole
passes (reference and alternative windows batched together), so its cost is twice the plain per-edit time.

Before the engine is timed, its outputs for the reference and the edits the plain path is timed on are
compared with the plain path's (issue 13's bound: float32 ``max |engine - plain| <= FP32_BOUND max |plain|``;
bf16 the engine's difference from plain bf16 no larger than plain bf16's own from plain float32). A point
that fails is recorded as ``mismatch`` without timings: a fast wrong answer is not a result.

Times per edit: steady state ((reference + N edits) - reference) / N, measured; amortised (reference included,
N = 16, 64, 256, and cluster sizes) computed from the measured reference and steady-state times, each beside
its FLOP bound (:func:`senformer.edits.edit_flops`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..constants import SEQUENCE_LENGTH, TARGET_LENGTH
from ..device import bf16_supported, no_native_bf16_reason
from ..errors import UserError
from ..io import atomic_write_text, save_figure
from . import memory
from .machine import machine_info

MODULE = "senformer.bench.variants"
MEASURE_MODULE = "senformer.bench.measure"  # the machine's matmul rate, for the time estimate
WORKLOADS = ("anchored", "centred")
PRECISIONS = ("fp32", "bf16")
ATTENTIONS = ("full", "bigbird")
HEAD = "human"
FP32_BOUND = 1e-4
"""float32 equality gate: max |engine - plain| / max |plain|. Issue 13 expects about 1e-6 at float32 (the
statistic is recorded); a wrong patch gives differences of order one, so the gate has room for rounding
through eleven layers without letting an error through."""
AMORTISED_EDITS = (16, 64, 256)
CLUSTER_SIZES = (2, 4, 8, 16)
# Issue 13's goals for full attention in fp32 (bigbird and bf16 report what they reach): steady-state anchored
# SNVs, and a variant-centred SNV with RC averaging.
GOALS = {"anchored-snv": 3.5, "centred-snv": 1.4}
# Fraction of the measured matmul rate a whole forward reaches (79% for full attention at 196,608 bp in
# benchmarks/results/scaling_inference_cpu); the estimate assumes a little less for the many small passes.
ESTIMATE_EFFICIENCY = 0.6
GB = 1e9


# Points -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantPoint:
    """One measurement: a workload at one attention kind and precision. Every field is part of its identity."""

    workload: str
    attention: str = "full"
    precision: str = "fp32"
    dim: int = 1536
    depth: int = 11
    length: int = SEQUENCE_LENGTH
    target_length: int = TARGET_LENGTH
    edits: int = 16  # engine-timed edits per workload (ISM, anchored SNVs, the cluster)
    plain_edits: int = 2  # edits the plain path is timed on (and the equality check compares)
    batch_size: int = 2  # edits per batch, both paths
    cluster_bp: int = 2000  # the cluster's SNVs lie within this many bp of the centre
    conv_tile_length: int | None = 131_072
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name, choices in (("workload", WORKLOADS), ("attention", ATTENTIONS), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.edits < 1 or self.plain_edits < 1 or self.batch_size < 1:
            problems.append(f"edits, plain edits and batch size must be positive (got {self.edits}, "
                            f"{self.plain_edits}, {self.batch_size})")
        elif self.plain_edits > self.edits:
            problems.append(f"plain edits ({self.plain_edits}) cannot exceed edits ({self.edits})")
        if not 0 < self.cluster_bp < self.length // 2:
            problems.append(f"cluster bp {self.cluster_bp} must lie in 1..{self.length // 2 - 1}")
        if problems:
            raise UserError("invalid variants benchmark point: " + "; ".join(problems))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> VariantPoint:
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    @property
    def key(self) -> str:
        """The point's identity in ``variants.json`` (resuming matches on it)."""
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def label(self) -> str:
        return f"{self.workload} {self.attention} {self.precision} dim {self.dim} depth {self.depth} {self.length:,} bp"

    @property
    def reverse_complement(self) -> bool:
        return self.workload == "centred"

    def config(self):
        """The published model at ``dim``/``depth``/``attention`` (as :meth:`senformer.bench.points.Point.config`).

        A width that is not a multiple of 128 (tiny test models) rounds its conv tower to 16 instead of 128,
        which EnformerConfig would refuse.
        """
        from ..config import EnformerConfig

        features = (self.dim // 8) // 6 * 6
        return EnformerConfig(
            num_relative_position_features=None if features == self.dim // 8 else features,
            conv_tower_divisible_by=128 if self.dim % 128 == 0 else 16,
            dim=self.dim, depth=self.depth, attention=self.attention, target_length=self.target_length,
            conv_tile_length=self.conv_tile_length,
        )


def grid(workloads: Iterable[str] = WORKLOADS, attentions: Iterable[str] = ATTENTIONS,
         precisions: Iterable[str] = PRECISIONS, **settings: Any) -> list[VariantPoint]:
    """Every combination; fp32 before bf16, so a run cut short has the headline numbers first."""
    return [VariantPoint(workload=workload, attention=attention, precision=precision, **settings)
            for precision in precisions for attention in attentions for workload in workloads]


# FLOPs ---------------------------------------------------------------------------------------------------
def _edit_costs(config, length: int, edits, reverse_complement: bool) -> tuple[float, float]:
    """(whole, engine) FLOPs summed over ``edits`` (:func:`senformer.edits.edit_flops`, one head)."""
    from ..edits import edit_flops

    whole = engine = 0.0
    for edit in edits:
        counted = edit_flops(config, length, edit, heads=(HEAD,), reverse_complement=reverse_complement)
        whole += counted["whole"]
        engine += counted["edit"]
    return whole, engine


def point_flops(point: VariantPoint) -> dict[str, float]:
    """FLOPs a point runs (references, checks, plain and engine edits) by the precision they run in, for the
    time estimate: a bf16 point's float32 reference for its check runs in fp32."""
    from ..edits import Edit, edit_flops

    config, length = point.config(), point.length
    snv = edit_flops(config, length, None, heads=(HEAD,), reverse_complement=point.reverse_complement)
    whole, edit = snv["whole"], snv["edit"]
    flops = 2 * whole + point.plain_edits * (edit + whole)  # both references, the check, the plain edits
    if point.workload == "anchored":
        flops += 2 * point.edits * edit
    else:
        indel = edit_flops(config, length, Edit(length // 2, "A", "AT"), heads=(HEAD,), reverse_complement=True)
        flops += point.edits * edit + 2 * whole + edit + indel["edit"]
    return {point.precision: flops, **({"fp32": whole} if point.precision == "bf16" else {})}


# The child: one point ------------------------------------------------------------------------------------
def build_model(point: VariantPoint, device):
    """The point's model with random weights, every BatchNorm's moving statistics and every attention output
    layer randomised (the official initialisation zeroes the latter, which would make positions independent
    through attention and the equality check weaker), in evaluation mode on ``device``."""
    import torch
    from torch import nn

    from ..model.enformer import Enformer

    torch.manual_seed(point.seed)
    model = Enformer(point.config())
    generator = torch.Generator().manual_seed(point.seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
        for attention in model.attention_modules():
            scale = 1.0 / math.sqrt(attention.to_out.in_features)
            attention.to_out.weight.copy_(scale * torch.randn(attention.to_out.weight.shape, generator=generator))
    return model.to(device).eval()


def _random_bases(generator, length: int):
    import torch

    return torch.randint(0, 4, (length,), generator=generator)  # A, C, G, T: no N


def _base(tokens, position: int) -> str:
    return "ACGT"[int(tokens[position])]


def _other(base: str, step: int = 1) -> str:
    return "ACGT"[("ACGT".index(base) + step) % 4]


def anchored_edits(tokens, count: int, generator) -> dict[str, list]:
    """``snv``: SNVs at ``count`` distinct random positions across the window; ``ism``: the three other bases
    at consecutive positions from the centre, the first ``count``."""
    import torch

    from ..edits import Edit

    length = len(tokens)
    positions = torch.randperm(length, generator=generator)[:count].tolist()
    snv = [Edit(p, _base(tokens, p), _other(_base(tokens, p))) for p in positions]
    ism = [Edit(length // 2 + i // 3, _base(tokens, length // 2 + i // 3), _other(_base(tokens, length // 2 + i // 3), 1 + i % 3))
           for i in range(count)]
    return {"snv": snv, "ism": ism}


def cluster_edits(tokens, count: int, cluster_bp: int, generator) -> list:
    """SNVs at ``count`` distinct random positions within ``cluster_bp`` of the centre."""
    import torch

    from ..edits import Edit

    centre = len(tokens) // 2
    offsets = torch.randperm(2 * cluster_bp + 1, generator=generator)[:count] - cluster_bp
    return [Edit(centre + int(o), _base(tokens, centre + int(o)), _other(_base(tokens, centre + int(o))))
            for o in offsets]


def centre_snv(tokens):
    from ..edits import Edit

    base = _base(tokens, len(tokens) // 2)
    return Edit(len(tokens) // 2, base, _other(base))


def centre_insertion(tokens):
    from ..edits import Edit

    base = _base(tokens, len(tokens) // 2)
    return Edit(len(tokens) // 2, base, base + _other(base))


def _interleave(*lists):
    return [item for group in zip(*lists) for item in group]


def measure_point(point: VariantPoint) -> dict[str, Any]:
    """Time one point (the child's side). Returns its timings and the equality check; with the check failed,
    only the check (``{"check": {..., "passed": False}}``)."""
    import torch

    from ..edits import EditEngine

    if point.threads:
        torch.set_num_threads(point.threads)
    device = torch.device(point.device)
    bf16 = point.precision == "bf16"
    if bf16 and not bf16_supported(device):
        raise RuntimeError(f"bf16 point on a device without native bf16: {no_native_bf16_reason(device)}")
    model = build_model(point, device)
    generator = torch.Generator().manual_seed(point.seed + 1)
    tokens = _random_bases(generator, point.length)
    flank = _random_bases(generator, 64)
    options = dict(heads=[HEAD], reverse_complement=point.reverse_complement, bf16=bf16,
                   batch_size=point.batch_size, device=device)

    def engine_for(window, plain=False, **changes):
        return EditEngine(model, window, right_flank=flank, plain=plain, **{**options, **changes})

    def timed(function: Callable[[], Any]) -> tuple[float, Any]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        value = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, value

    engine, plain = engine_for(tokens), engine_for(tokens, plain=True)
    if point.workload == "anchored":
        workloads = anchored_edits(tokens, point.edits, generator)
        checked = _interleave(workloads["snv"], workloads["ism"])[: point.plain_edits]
    else:
        workloads = {"cluster": cluster_edits(tokens, point.edits, point.cluster_bp, generator)}
        # The check covers the insertion's path (every trunk position right of it recomputed) too.
        checked = [centre_insertion(tokens), *workloads["cluster"]][: point.plain_edits]

    result: dict[str, Any] = {"reverse_complement": point.reverse_complement,
                              "parameters": sum(p.numel() for p in model.parameters())}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine_reference_s, engine_reference = timed(engine.reference_output)
    engine_checked = engine.score_all(checked)  # untimed: also the engine's warm-up
    plain_reference_s, plain_reference = timed(plain.reference_output)
    plain_checked_s, plain_checked = timed(lambda: plain.score_all(checked))
    float32_reference = float32_checked = None
    if bf16:  # bf16's own error, on the same outputs the engine is compared on
        float32_plain = engine_for(tokens, plain=True, bf16=False)
        float32_reference, float32_checked = float32_plain.reference_output(), float32_plain.score_all(checked)
    check = equality_check(engine_reference, engine_checked, plain_reference, plain_checked, float32_reference,
                           float32_checked)
    check["edits"] = [str(edit) for edit in checked]
    result["check"] = check
    if not check["passed"]:
        return result

    result.update(engine_reference_seconds=engine_reference_s, plain_reference_seconds=plain_reference_s,
                  plain_edits_seconds=plain_checked_s, plain_per_edit_seconds=plain_checked_s / len(checked))
    config = point.config()
    timings = {}
    for name, edits in workloads.items():
        seconds, _ = timed(lambda: engine.score_all(edits))
        whole, edit = _edit_costs(config, point.length, edits, point.reverse_complement)
        timings[name] = {"edits": len(edits), "seconds": seconds, "per_edit_seconds": seconds / len(edits),
                         "whole_flops_per_edit": whole / len(edits), "engine_flops_per_edit": edit / len(edits)}
    if point.workload == "centred":
        # Variant-centred windows: each variant its own fresh window and reference, scored alone.
        for name, make in (("centred-snv", centre_snv), ("centred-indel", centre_insertion)):
            window = _random_bases(generator, point.length)
            variant = make(window)
            fresh = engine_for(window)
            seconds, _ = timed(lambda: (fresh.reference_output(), fresh.score_all([variant])))
            whole, edit = _edit_costs(config, point.length, [variant], True)
            timings[name] = {"edits": 1, "seconds": seconds, "per_variant_seconds": seconds, "variant": str(variant),
                             "whole_flops_per_edit": whole, "engine_flops_per_edit": edit}
    result["workloads"] = timings
    # The engine's floor: each edit still runs the transformer and heads (all passes) on patched features.
    result["transformer_per_edit_seconds"] = transformer_seconds(model, point, device) / point.batch_size
    if device.type == "cuda":
        result["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["cuda_device"] = torch.cuda.get_device_name(device)
    return result


def transformer_seconds(model, point: VariantPoint, device) -> float:
    """Seconds of the transformer and heads on one batch of ``batch_size`` feature rows, every pass (the
    strands of a reverse-complement point): the part of an edit's cost the engine cannot share. Warmed first."""
    import torch

    from ..inference import autocast_for

    positions = point.length // model.config.bin_size
    features = torch.randn(point.batch_size, positions, model.config.dim, device=device,
                           generator=torch.Generator(device=device).manual_seed(point.seed))
    passes = 2 if point.reverse_complement else 1
    with torch.inference_mode(), autocast_for(device, point.precision == "bf16"):
        model.head_outputs(features, (HEAD,))
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(passes):
            model.head_outputs(features, (HEAD,))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def equality_check(engine_reference, engine_edits, plain_reference, plain_edits, float32_reference=None,
                   float32_edits=None) -> dict[str, Any]:
    """The engine's equality with whole windows over every output (``{head: tensor}`` of the reference and of
    the edits).

    float32: ``max |engine - plain| <= FP32_BOUND max |plain|``. bf16 (``float32_reference`` given, and
    ``float32_edits``: the plain float32 path's outputs of the same windows): ``max |engine - plain| <= max
    |plain bf16 - plain fp32|`` over the same outputs (the reference window alone when no float32 edits are given).
    """
    def differences(first: Sequence[Mapping], second: Sequence[Mapping]):
        for a, b in zip(first, second):
            for name in b:
                yield a[name].double(), b[name].double()

    engine, plain = (engine_reference, engine_edits), (plain_reference, plain_edits)
    difference = max(float((a - b).abs().max()) for a, b in differences(engine, plain))
    scale = max(float(b.abs().max()) for _, b in differences(engine, plain))
    finite = all(bool(a.isfinite().all()) and bool(b.isfinite().all()) for a, b in differences(engine, plain))
    check = {"max_difference": difference, "max_plain": scale, "relative": difference / scale if scale else math.inf}
    if float32_reference is None:
        check.update(bound=FP32_BOUND, rule=f"max |engine - plain| <= {FP32_BOUND:g} max |plain| (float32)",
                     passed=finite and scale > 0 and check["relative"] <= FP32_BOUND)
    else:
        own = ([plain_reference, plain_edits], [float32_reference, float32_edits]) if float32_edits is not None \
            else ([plain_reference], [float32_reference])
        precision = max(float((a - b).abs().max()) for a, b in differences(*own))
        check.update(plain_bf16_vs_fp32=precision,
                     rule="max |engine - plain| <= max |plain bf16 - plain fp32| (bf16)",
                     passed=finite and difference <= precision)
    return check


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    return measure_point(VariantPoint(**payload["point"]))


# The parent: a resumable run -------------------------------------------------------------------------------
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


# Derived numbers -------------------------------------------------------------------------------------------
POINT_FIELDS = ("workload", "attention", "precision", "dim", "depth", "length", "batch_size", "device", "threads")


def summarize(records: Sequence[dict]) -> list[dict]:
    """One row per measured workload: engine and plain time per edit (or per variant), the speed-up and its
    FLOP bound; for ``snv``/``ism``/``cluster`` also amortised rows at :data:`AMORTISED_EDITS` /
    :data:`CLUSTER_SIZES` edits, computed as (reference + N x steady-state time) / N on both paths, the bound
    (N + 1) whole / (whole + N engine)."""
    rows = []
    for record in records:
        if record.get("status") != "ok":
            continue
        base = {name: record[name] for name in POINT_FIELDS}
        engine_reference, plain_reference = record["engine_reference_seconds"], record["plain_reference_seconds"]
        plain_per_edit = record["plain_per_edit_seconds"]
        floor = record.get("transformer_per_edit_seconds")  # older records lack it
        for name, timing in record["workloads"].items():
            whole, edit = timing["whole_flops_per_edit"], timing["engine_flops_per_edit"]
            if name.startswith("centred-"):
                # A variant-centred window on the plain path: reference and alternative windows, two whole passes.
                plain = 2 * plain_per_edit
                rows.append({**base, "scenario": name, "edits": 1, "timing": "per variant",
                             "engine_seconds": timing["per_variant_seconds"], "plain_seconds": plain,
                             "speedup": plain / timing["per_variant_seconds"],
                             "flop_bound": 2 * whole / (whole + edit),
                             # An indel recomputes part of the trunk too: the transformer alone is no floor for it.
                             **({"time_bound": plain / (engine_reference + floor)}
                                if floor and name == "centred-snv" else {})})
                continue
            scenario = f"anchored-{name}" if name in ("snv", "ism") else name
            steady = timing["per_edit_seconds"]
            rows.append({**base, "scenario": scenario, "edits": timing["edits"], "timing": "steady state",
                         "engine_seconds": steady, "plain_seconds": plain_per_edit,
                         "speedup": plain_per_edit / steady, "flop_bound": whole / edit,
                         **({"time_bound": plain_per_edit / floor} if floor else {})})
            for count in (CLUSTER_SIZES if name == "cluster" else AMORTISED_EDITS):
                engine = (engine_reference + count * steady) / count
                plain = (plain_reference + count * plain_per_edit) / count
                rows.append({**base, "scenario": scenario, "edits": count, "timing": "amortised",
                             "engine_seconds": engine, "plain_seconds": plain, "speedup": plain / engine,
                             "flop_bound": (count + 1) * whole / (whole + count * edit)})
    for row in rows:
        goal = GOALS.get(row["scenario"]) if row["timing"] in ("steady state", "per variant") else None
        if goal is not None and (row["attention"], row["precision"]) == ("full", "fp32"):
            row["goal"] = goal
            row["goal_met"] = row["speedup"] >= goal
        row["of_bound"] = row["speedup"] / row["flop_bound"]
        if "time_bound" in row:
            row["of_time_bound"] = row["speedup"] / row["time_bound"]
    return rows


CSV_FIELDS = ["scenario", "timing", "edits", *POINT_FIELDS[1:], "engine_seconds", "plain_seconds", "speedup",
              "flop_bound", "of_bound", "time_bound", "of_time_bound", "goal", "goal_met"]


def write_csv(rows: Sequence[dict], path: Path) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def markdown_report(document: dict, rows: Sequence[dict]) -> str:
    """The points' status and the speed-ups against the plain path and the FLOP bound (``variants.md``)."""
    lines = []
    for run in document.get("runs", [])[-1:]:
        machine = run.get("machine", {})
        lines.append(f"Machine: {machine.get('gpu') or machine.get('cpu', '?')}, {machine.get('usable_cpus', '?')} usable "
                     f"CPUs, native bf16 {machine.get('native_bf16')}, torch {machine.get('torch', '?')}, senformer "
                     f"commit {machine.get('senformer_commit')}; load average at start {run.get('load_average')}.")
    lines += ["", "Plain path: whole-window passes through predict_batch in the same process (same threads, "
              "inference_mode, batch size and conv tile), its reference computed once and shared. Steady state: "
              "((reference + N edits) - reference) / N, measured. Amortised and cluster rows: (reference + N x "
              "steady state) / N on both paths, computed from the measured times. FLOP bound: whole-window FLOPs "
              "over the engine's (senformer.edits.edit_flops), with the reference counted the same way. Time "
              "bound (SNVs, steady state and per variant): the plain path's time over the engine's if an edit cost only the "
              "transformer and heads, timed alone on the same batch (per variant: plus the engine's reference "
              "pass): what sharing the conv trunk can give on this machine, whose conv trunk runs faster per FLOP "
              "than its transformer. It is built from separately timed parts, so a measured speed-up can pass it "
              "by the timing noise (a few per cent).", "",
              "| workload | kind | precision | dim | depth | length (bp) | batch | status | check | peak memory (GB) |",
              "|" + "---|" * 10]
    for r in document["points"]:
        check = r.get("check", {})
        statistic = (f"{check['relative']:.1e} rel." if "relative" in check else "") + (
            f" (bf16 vs fp32 {check['plain_bf16_vs_fp32'] / check['max_plain']:.1e})" if "plain_bf16_vs_fp32" in check else "")
        memory_gb = (r.get("cuda_peak_allocated_bytes") or r.get("peak_rss_bytes") or 0) / GB
        lines.append(f"| {r['workload']} | {r['attention']} | {r['precision']} | {r['dim']} | {r['depth']} | "
                     f"{r['length']:,} | {r['batch_size']} | {r['status']} | {statistic} | "
                     f"{f'{memory_gb:.2f}' if memory_gb else ''} |")
    reasons = sorted({f"{r['workload']} {r['attention']} {r['precision']}: {r['reason']}" for r in document["points"]
                      if r.get("reason")})
    if reasons:
        lines += ["", "Not measured, and why:", "", *(f"- {reason}" for reason in reasons)]
    if rows:
        lines += ["", "| scenario | timing | N | kind | precision | engine (s) | plain (s) | speed-up | FLOP bound "
                  "| of bound | time bound | of time bound | goal |", "|" + "---|" * 13]
        for r in rows:
            goal = (f">= {r['goal']}x: {'met' if r['goal_met'] else 'not met'}" if "goal" in r else "")
            time_bound = (f"{r['time_bound']:.2f}x | {r['of_time_bound']:.0%}" if "time_bound" in r else " | ")
            lines.append(f"| {r['scenario']} | {r['timing']} | {r['edits']} | {r['attention']} | {r['precision']} | "
                         f"{r['engine_seconds']:.3g} | {r['plain_seconds']:.3g} | {r['speedup']:.2f}x | "
                         f"{r['flop_bound']:.2f}x | {r['of_bound']:.0%} | {time_bound} | {goal} |")
    return "\n".join(lines) + "\n"


# The figure ----------------------------------------------------------------------------------------------
def plot_speedups(rows: Sequence[dict], ax):
    """Speed-up over the plain path (bars) and its FLOP bound (black ticks) per scenario, kind and precision;
    steady state for anchored and cluster, per variant for variant-centred windows."""
    chosen = [r for r in rows if r["timing"] in ("steady state", "per variant")]
    labels = [f"{r['scenario']}\n{r['attention']} {r['precision']}" for r in chosen]
    colours = {"fp32": "tab:blue", "bf16": "tab:orange"}
    positions = range(len(chosen))
    ax.bar(positions, [r["speedup"] for r in chosen], color=[colours[r["precision"]] for r in chosen])
    ax.scatter(positions, [r["flop_bound"] for r in chosen], marker="_", s=400, color="black", label="FLOP bound",
               zorder=3)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("speed-up over the plain path (x)")
    ax.set_title("edit engine vs plain: steady state / per variant", fontsize=10)
    if chosen:
        ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_amortised(rows: Sequence[dict], ax):
    """Amortised speed-up against the number of edits sharing a reference (solid fp32, dashed bf16), and
    its FLOP bound (dotted)."""
    import matplotlib

    series = sorted({(r["scenario"], r["attention"], r["precision"]) for r in rows if r["timing"] == "amortised"})
    colours = matplotlib.colormaps["tab20"]
    for index, (scenario, attention, precision) in enumerate(series):
        chosen = sorted((r for r in rows if r["timing"] == "amortised" and
                         (r["scenario"], r["attention"], r["precision"]) == (scenario, attention, precision)),
                        key=lambda r: r["edits"])
        colour = colours(index % colours.N)
        ax.plot([r["edits"] for r in chosen], [r["speedup"] for r in chosen], "-" if precision == "fp32" else "--",
                marker="o", markersize=3, color=colour, label=f"{scenario} {attention} {precision}")
        ax.plot([r["edits"] for r in chosen], [r["flop_bound"] for r in chosen], ":", color=colour)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("edits sharing one reference (N)")
    ax.set_ylabel("speed-up, reference included (x)")
    ax.set_title("amortised, computed from reference + steady state (dotted: FLOP bound)", fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=6)
    return ax


def draw_figure(document: dict, path: Path) -> Path | None:
    rows = document.get("summary") or summarize(document["points"])
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    plot_speedups(rows, axes[0])
    plot_amortised(rows, axes[1])
    machine = document["runs"][-1]["machine"] if document.get("runs") else {}
    first = rows[0]
    figure.suptitle(f"senformer edit engine: dim {first['dim']}, depth {first['depth']}, {first['length']:,} bp, "
                    f"batch {first['batch_size']} — {machine.get('gpu') or machine.get('cpu', '')} "
                    f"({machine.get('usable_cpus', '?')} CPUs)", fontsize=11)
    figure.tight_layout()
    return save_figure(path, figure)


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
        atomic_write_text(benchmark.out_dir / "settings.json", json.dumps(settings, indent=2) + "\n")
        benchmark.run(points, settings)
        failures = benchmark.failures(points)
    figure = benchmark.plot()
    written = [benchmark.path, benchmark.out_dir / "variants.csv", benchmark.out_dir / "variants.md"]
    return written + ([figure] if figure else []), failures


POINT_SETTINGS = ("dim", "depth", "length", "target_length", "edits", "plain_edits", "batch_size", "cluster_bp",
                  "conv_tile_length", "device", "threads", "seed")


def grid_from_settings(settings: Mapping[str, Any]) -> list[VariantPoint]:
    return grid(settings["workloads"], settings["attentions"], settings["precisions"],
                **{name: settings[name] for name in POINT_SETTINGS})


def _describe(record: dict) -> str:
    if record["status"] == "ok":
        parts = [f"{name} {t.get('per_variant_seconds', t.get('per_edit_seconds')):.3g} s"
                 for name, t in record["workloads"].items()]
        return (f"reference {record['engine_reference_seconds']:.3g} s (plain {record['plain_reference_seconds']:.3g} s), "
                f"plain {record['plain_per_edit_seconds']:.3g} s/edit, engine " + ", ".join(parts)
                + f"; check {record['check']['relative']:.1e}")
    return record["status"] + (f" ({record['reason']})" if record.get("reason") else "")




if __name__ == "__main__":
    sys.exit(memory.child_main(measure, sys.argv[1:3]))
