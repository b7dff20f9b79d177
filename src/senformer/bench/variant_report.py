"""The variants benchmark's derived numbers and their presentation: per-edit and amortised speed-ups beside
their FLOP and time bounds (``variants.csv``), the run's table (``variants.md``) and figure (``variants.png``).

Times per edit: steady state ((reference + N edits) - reference) / N, measured; amortised (reference included,
N = 16, 64, 256, and cluster sizes) computed from the measured reference and steady-state times, each beside
its FLOP bound (:func:`senformer.edits.edit_flops`). Baskerville-style clustering on the plain path is one
reference pass shared by the cluster and a whole pass per alternative allele. A variant-centred window on the
plain path is two whole passes (reference and alternative windows batched together), so its cost is twice the
plain per-edit time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import atomic_write_text, save_figure
from .summary import GB

AMORTISED_EDITS = (16, 64, 256)
CLUSTER_SIZES = (2, 4, 8, 16)
# Issue 13's goals for full attention in fp32 (bigbird and bf16 report what they reach): steady-state anchored
# SNVs, and a variant-centred SNV with RC averaging.
GOALS = {"anchored-snv": 3.5, "centred-snv": 1.4}
# Issue 22's goal for Borzoi (fp32, per SNV, steady state): within 80% of the FLOP bound.
BORZOI_OF_BOUND = 0.8


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
        base = {**{name: record[name] for name in POINT_FIELDS}, "model": record.get("family", "enformer")}
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
        if goal is not None and (row["model"], row["attention"], row["precision"]) == ("enformer", "full", "fp32"):
            row["goal"] = goal
            row["goal_met"] = row["speedup"] >= goal
        row["of_bound"] = row["speedup"] / row["flop_bound"]
        if (row["model"], row["scenario"], row["timing"], row["precision"]) == (
                "borzoi", "anchored-snv", "steady state", "fp32"):
            row["goal_of_bound"] = BORZOI_OF_BOUND
            row["goal_met"] = row["of_bound"] >= BORZOI_OF_BOUND
        if "time_bound" in row:
            row["of_time_bound"] = row["speedup"] / row["time_bound"]
    return rows


CSV_FIELDS = ["scenario", "timing", "edits", "model", *POINT_FIELDS[1:], "engine_seconds", "plain_seconds", "speedup",
              "flop_bound", "of_bound", "time_bound", "of_time_bound", "goal", "goal_of_bound", "goal_met"]


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
        lines.append(f"| {r['workload']} | {_kind(r)} | {r['precision']} | {r['dim']} | {r['depth']} | "
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
            goal = (f">= {r['goal']}x: {'met' if r['goal_met'] else 'not met'}" if "goal" in r else
                    f">= {r['goal_of_bound']:.0%} of bound: {'met' if r['goal_met'] else 'not met'}"
                    if "goal_of_bound" in r else "")
            time_bound = (f"{r['time_bound']:.2f}x | {r['of_time_bound']:.0%}" if "time_bound" in r else " | ")
            lines.append(f"| {r['scenario']} | {r['timing']} | {r['edits']} | {_kind(r)} | {r['precision']} | "
                         f"{r['engine_seconds']:.3g} | {r['plain_seconds']:.3g} | {r['speedup']:.2f}x | "
                         f"{r['flop_bound']:.2f}x | {r['of_bound']:.0%} | {time_bound} | {goal} |")
    return "\n".join(lines) + "\n"


def _kind(record: dict) -> str:
    """The attention kind, after the model's name for Borzoi (an Enformer row reads as before)."""
    model = record.get("model", record.get("family", "enformer"))
    return record["attention"] if model == "enformer" else f"{model} {record['attention']}"


# The figure ----------------------------------------------------------------------------------------------
def plot_speedups(rows: Sequence[dict], ax):
    """Speed-up over the plain path (bars) and its FLOP bound (black ticks) per scenario, kind and precision;
    steady state for anchored and cluster, per variant for variant-centred windows."""
    chosen = [r for r in rows if r["timing"] in ("steady state", "per variant")]
    labels = [f"{r['scenario']}\n{_kind(r)} {r['precision']}" for r in chosen]
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
