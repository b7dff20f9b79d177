"""The variants benchmark's child: one point measured in its own capped subprocess
(:func:`senformer.bench.memory.run_isolated`, ``python -m senformer.bench.variant_measure PAYLOAD RESULT``).

The model is randomly weighted (speed does not depend on the weights; every BatchNorm's moving statistics and
the attention output layer are randomised so that the equality check below is not between near-constant
outputs).

The plain path is today's fastest whole-window path in the same process (:func:`senformer.inference.predict_batch`
through ``EditEngine(plain=True)``): same threads, ``inference_mode``, batch size and conv tile; its reference
is computed once and shared, so its cost per edit is one whole-window pass of the edited batch (both strands
with RC averaging).

Before the engine is timed, its outputs for the reference and the edits the plain path is timed on are
compared with the plain path's (issue 13's bound: float32 ``max |engine - plain| <= FP32_BOUND max |plain|``;
bf16 the engine's difference from plain bf16 no larger than plain bf16's own from plain float32). A point
that fails is recorded as ``mismatch`` without timings: a fast wrong answer is not a result.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Mapping, Sequence

from ..device import bf16_supported, no_native_bf16_reason
from . import memory
from .variant_points import HEAD, VariantPoint, edit_costs

MODULE = "senformer.bench.variant_measure"
FP32_BOUND = 1e-4
"""float32 equality gate: max |engine - plain| / max |plain|. Issue 13 expects about 1e-6 at float32 (the
statistic is recorded); a wrong patch gives differences of order one, so the gate has room for rounding
through eleven layers without letting an error through."""


def build_model(point: VariantPoint, device):
    """The point's model with random weights, every BatchNorm's moving statistics and every attention output
    layer randomised (the official initialisation zeroes the latter, which would make positions independent
    through attention and the equality check weaker), in evaluation mode on ``device``."""
    import torch
    from torch import nn

    from ..model.borzoi import build_model as build_family

    torch.manual_seed(point.seed)
    model = build_family(point.config())
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
    from ..sequence import BASES

    return BASES[int(tokens[position])]


def _other(base: str, step: int = 1) -> str:
    from ..sequence import BASES

    return BASES[(BASES.index(base) + step) % 4]


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
        # Each batch's outputs are dropped as they come, as a scoring command reduces them: Borzoi's are
        # 0.5 GB per edit at 524,288 bp (16,352 bins x 7,611 tracks), 16 GB kept for 32 edits.
        seconds, _ = timed(lambda: _drain(engine.score(edits)))
        whole, edit = edit_costs(config, point.length, edits, point.reverse_complement)
        timings[name] = {"edits": len(edits), "seconds": seconds, "per_edit_seconds": seconds / len(edits),
                         "whole_flops_per_edit": whole / len(edits), "engine_flops_per_edit": edit / len(edits)}
    if point.workload == "centred":
        # Variant-centred windows: each variant its own fresh window and reference, scored alone.
        for name, make in (("centred-snv", centre_snv), ("centred-indel", centre_insertion)):
            window = _random_bases(generator, point.length)
            variant = make(window)
            fresh = engine_for(window)
            seconds, _ = timed(lambda: (fresh.reference_output(), fresh.score_all([variant])))
            whole, edit = edit_costs(config, point.length, [variant], True)
            timings[name] = {"edits": 1, "seconds": seconds, "per_variant_seconds": seconds, "variant": str(variant),
                             "whole_flops_per_edit": whole, "engine_flops_per_edit": edit}
    result["workloads"] = timings
    # The engine's floor: each edit still runs the transformer and heads (all passes) on patched features.
    result["transformer_per_edit_seconds"] = transformer_seconds(model, point, device) / point.batch_size
    if device.type == "cuda":
        result["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["cuda_device"] = torch.cuda.get_device_name(device)
    return result


def _drain(batches) -> int:
    """Run a scoring iterator to its end, keeping nothing; the number of edits scored."""
    return sum(len(edits) for edits, _ in batches)


def transformer_seconds(model, point: VariantPoint, device) -> float:
    """Seconds of the transformer and heads on one batch of ``batch_size`` feature rows, every pass (the
    strands of a reverse-complement point): the part of an edit's cost the engine cannot share. Warmed first."""
    import torch

    from ..inference import autocast_for

    sequence = torch.randint(0, 4, (1, point.length), generator=torch.Generator().manual_seed(point.seed))
    passes = 2 if point.reverse_complement else 1
    with torch.inference_mode(), autocast_for(device, point.precision == "bf16"):
        # Real conv features (Borzoi's carry the U-Net's skips), one row repeated to the batch: untimed.
        features = model.conv_features(sequence.to(device))
        if isinstance(features, tuple):
            features = (features[0].expand(point.batch_size, -1, -1),
                        [skip.expand(point.batch_size, -1, -1) for skip in features[1]])
        else:
            features = features.expand(point.batch_size, -1, -1)
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


if __name__ == "__main__":
    sys.exit(memory.child_main(measure, sys.argv[1:3]))
