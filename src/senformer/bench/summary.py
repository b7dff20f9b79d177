"""Numbers derived from a scaling sweep's points, as in the S-Enformer report: per-layer cost (Figure 2),
fitted scaling exponents, ratios against ``full``, against the peer and of bf16 against fp32, and the
longest length each curve reached."""

from __future__ import annotations

import math
from typing import Any, Sequence

from .points import PEER, Point

GB = 1e9
# The fields that make a curve: a point's settings but its length and depth.
CURVE_FIELDS = ("implementation", "attention", "mode", "dim", "precision", "checkpoint", "conv_tile_length",
                "device", "threads")


def _curve(record: dict) -> tuple:
    return tuple(record[name] for name in CURVE_FIELDS)


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
            full_key = Point.from_record(record, attention="full").key
            full_oom = [r for r in records if r.get("status") == "oom" and r["key"] == full_key]
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
        peer_key = Point.from_record(record, implementation=PEER, attention="full", conv_tile_length=None).key
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
        fp32_key = Point.from_record(record, precision="fp32").key
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

