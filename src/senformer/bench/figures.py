"""The scaling sweep's figures (Figures 1-3 of the S-Enformer report). Plot functions take data and an
``ax`` and return it; :func:`draw_scaling_figure` assembles the four panels of ``scaling.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..config import ATTENTION_KINDS
from ..io import save_figure
from .points import PEER
from .summary import GB, step_memory

COLOURS = {**dict(zip(ATTENTION_KINDS, ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:orange"))),
           PEER: "tab:gray"}
CHECKPOINT_TITLES = {"off": "", "conv": ", stem + conv tower checkpointed", "all": ", checkpointing"}


def figure_selection(records: Sequence[dict]) -> dict[str, Any]:
    """The settings the figure shows: the most measured mode/precision/width/checkpointing combination."""
    counts: dict[tuple, int] = {}
    for record in records:
        if record.get("status") in ("ok", "oom"):
            combo = (record["mode"], record["precision"], record["dim"], record["checkpoint"])
            counts[combo] = counts.get(combo, 0) + 1
    mode, precision, dim, checkpoint = max(counts, key=lambda c: (c[0] == "train", counts[c])) if counts else (
        "train", "fp32", 1536, "off")
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
        series = sorted((p for p in rows if _series_name(p) == name),
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



def draw_scaling_figure(document: dict[str, Any], path: Path) -> Path | None:
    """Write ``path`` (PNG): memory, per-layer memory, step time and per-layer time against length for the
    most measured settings (:func:`figure_selection`). None, and nothing written, before any point."""
    points = document["points"]
    if not any(r.get("status") in ("ok", "oom") for r in points):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(22, 5.2))
    selection = figure_selection(points)
    plot_memory(points, axes[0], **selection)
    plot_per_layer(document["summary"], axes[1], "memory_bytes", **selection)
    plot_time(points, axes[2], **selection)
    plot_per_layer(document["summary"], axes[3], "seconds", **selection)
    machine = document["runs"][-1]["machine"] if document["runs"] else {}
    figure.suptitle(
        f"senformer scaling: {selection['mode']}, {selection['precision']}, dim {selection['dim']}"
        f"{CHECKPOINT_TITLES[selection['checkpoint']]} — {machine.get('gpu') or machine.get('cpu', '')}"
        f" ({machine.get('usable_cpus', '?')} CPUs)", fontsize=11)
    figure.tight_layout()
    return save_figure(path, figure)
