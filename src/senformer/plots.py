"""Plot functions of the report's figures: each takes data and a matplotlib ``Axes``, draws, returns it.

No file IO and no pyplot state here; callers make figures with :func:`new_figure` and save them
(``senformer.io.save_figure``) or embed them (:func:`figure_png`, ``senformer.report``).
"""

from __future__ import annotations

import io
from typing import Mapping

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

BASE_COLORS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A matplotlib figure outside pyplot (no global state, no display needed)."""
    return Figure(figsize=(width, height), layout="constrained")


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def compare_scatter(ax: Axes, scores_a: np.ndarray, scores_b: np.ndarray, name_a: str, name_b: str,
                    title: str = "", correlation: float | None = None) -> Axes:
    """Figure 6 panel: per-example score of model A (x) against model B (y), with the diagonal."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    ax.scatter(a[keep], b[keep], s=8, alpha=0.6, linewidths=0)
    finite = np.concatenate([a[keep], b[keep]])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.5", linewidth=0.8, linestyle="--")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(f"{name_a} Pearson r")
    ax.set_ylabel(f"{name_b} Pearson r")
    label = title + (f"  (r = {correlation:.3f})" if correlation is not None and np.isfinite(correlation) else "")
    ax.set_title(label, fontsize=9)
    return ax


TRACK_UNITS = "model output and target (per 128-bp bin, the data's scale)"
"""What a Figure 7 panel's y-axis shows: the model's output beside the dataset's target values, one number per
bin on the scale the data was stored in (no transform)."""


def legend_outside(ax: Axes, **options) -> None:
    """The legend to the right of the axes, never over the data."""
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              **options)


def track_panel(ax: Axes, target: np.ndarray, predictions: Mapping[str, np.ndarray],
                positions: np.ndarray | None = None, title: str = "", ylabel: str = TRACK_UNITS,
                xlabel: str | None = None) -> Axes:
    """Figure 7 panel: the experiment (filled) and each model's prediction (lines) along the bins; the y-axis
    names the units (``ylabel``), the legend sits beside the axes."""
    target = np.asarray(target, dtype=float)
    x = np.arange(len(target)) if positions is None else np.asarray(positions)
    ax.fill_between(x, target, step="mid", color="0.75", label="experiment")
    for name, prediction in predictions.items():
        ax.plot(x, np.asarray(prediction, dtype=float), drawstyle="steps-mid", linewidth=1.0, label=name)
    ax.set_xlim(x[0], x[-1]) if len(x) > 1 else None
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=7)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=7)
    legend_outside(ax)
    return ax


def mark_region(ax: Axes, start: int, end: int, label: str | None = "queried region") -> Axes:
    """Shade the queried region ``[start, end)`` (genome bp) behind the data: the output window is wider than
    what was asked (Enformer's 896 bins cover 114,688 bp whatever the region)."""
    ax.axvspan(start, end, color="#F2C14E", alpha=0.25, linewidth=0, zorder=0, label=label)
    return ax


def gene_annotation(ax: Axes, genes, start: int, end: int) -> Axes:
    """Gene models (:class:`senformer.data.gtf.Gene`) overlapping ``[start, end)``: a line from first to last
    exon, a box per exon, the name and an arrow for the strand; genes on separate rows when they overlap."""
    shown = sorted((g for g in genes if g.end > start and g.start < end), key=lambda g: g.start)
    rows: list[int] = []  # the end of the last gene on each row
    for gene in shown:
        row = next((i for i, last in enumerate(rows) if last < gene.start), len(rows))
        rows[row:row + 1] = [gene.end]
        y = -row
        ax.plot([max(gene.start, start), min(gene.end, end)], [y, y], color="0.2", linewidth=0.8)
        for exon_start, exon_end in gene.exons:
            ax.add_patch(Rectangle((exon_start, y - 0.2), exon_end - exon_start, 0.4, color="0.2", linewidth=0))
        arrow = "\u2192" if gene.strand == "+" else "\u2190" if gene.strand == "-" else ""
        ax.text(max(gene.start, start), y + 0.25, f"{gene.name or gene.gene_id} {arrow}".strip(), fontsize=6,
                va="bottom", ha="left")
    ax.set_ylim(-max(len(rows), 1) + 0.4, 0.9)
    ax.set_xlim(start, end)
    ax.set_yticks([])
    ax.set_ylabel("genes (GTF)", fontsize=7)
    if not shown:
        ax.text(0.5, 0.5, "no gene in this window", transform=ax.transAxes, fontsize=7, ha="center", va="center")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


def grouped_bars(ax: Axes, table, value: str, group_column: str = "group", series_column: str = "model",
                 ylabel: str | None = None, title: str = "", reference: float | None = None) -> Axes:
    """Bars of ``value`` per group (x) and series (colour), e.g. Pearson per assay group per model."""
    groups = list(dict.fromkeys(table[group_column]))
    series = list(dict.fromkeys(table[series_column]))
    width = 0.8 / max(len(series), 1)
    for offset, name in enumerate(series):
        rows = table[table[series_column] == name].set_index(group_column)
        heights = [float(rows[value].get(group, np.nan)) for group in groups]
        ax.bar(np.arange(len(groups)) + (offset - (len(series) - 1) / 2) * width, heights, width, label=str(name))
    if reference is not None:
        ax.axhline(reference, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_xticks(np.arange(len(groups)), groups, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel or value)
    ax.set_title(title, fontsize=9)
    legend_outside(ax)
    return ax


def receptive_field_heatmap(ax: Axes, change: np.ndarray, positions: np.ndarray, bin_centers: np.ndarray,
                            title: str = "") -> Axes:
    """Figure 8 heatmap: mean |change| (log colour) of each output bin (x, input bp of its centre) for a
    mutation at each position (y)."""
    change = np.asarray(change, dtype=float)
    positive = change[change > 0]
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-6), vmax=positive.max()) if positive.size else None
    half_bin = (bin_centers[1] - bin_centers[0]) / 2 if len(bin_centers) > 1 else 64
    step = (positions[1] - positions[0]) / 2 if len(positions) > 1 else 1
    extent = (bin_centers[0] - half_bin, bin_centers[-1] + half_bin, positions[-1] + step, positions[0] - step)
    image = ax.imshow(np.where(change > 0, change, np.nan), aspect="auto", extent=extent, norm=norm,
                      cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="mean |change|")
    ax.set_xlabel("output bin centre (bp in the input)")
    ax.set_ylabel("mutated position (bp)")
    ax.set_title(title, fontsize=9)
    return ax


def receptive_field_profile(ax: Axes, change: np.ndarray, positions: np.ndarray, bin_centers: np.ndarray,
                            title: str = "", max_lines: int = 8) -> Axes:
    """Figure 8 profile: the change along the output for a few mutated positions (start to end)."""
    change = np.asarray(change, dtype=float)
    chosen = np.unique(np.linspace(0, len(positions) - 1, min(max_lines, len(positions))).round().astype(int))
    cmap = matplotlib.colormaps["plasma"]
    for rank, k in enumerate(chosen):
        color = cmap(0.9 * rank / max(len(chosen) - 1, 1))
        ax.plot(bin_centers, change[k], color=color, linewidth=1.0, label=f"{int(positions[k]):,} bp")
        ax.axvline(positions[k], color=color, linewidth=0.5, linestyle=":")
    if (change > 0).any():
        ax.set_yscale("log")
    ax.set_xlabel("output bin centre (bp in the input)")
    ax.set_ylabel("mean |change|")
    ax.set_title(title, fontsize=9)
    legend_outside(ax, title="mutation at", title_fontsize=6)
    return ax


def sequence_logo(ax: Axes, values: np.ndarray, start: int = 0, title: str = "", alphabet: str = "ACGT") -> Axes:
    """Letters stacked per position with heights ``values`` (positions, 4): positive above zero, negative
    below, larger letters further out (gradient x input or mean-centred ISM)."""
    values = np.asarray(values, dtype=float)
    font = FontProperties(family="DejaVu Sans", weight="bold")
    letters = {base: TextPath((0, 0), base, size=1, prop=font) for base in alphabet}
    for position, row in enumerate(values):
        for sign in (1, -1):
            order = [i for i in np.argsort(np.abs(row)) if np.sign(row[i]) == sign and row[i] != 0]
            offset = 0.0
            for i in order:
                height = abs(row[i])
                path = letters[alphabet[i]]
                box = path.get_extents()
                transform = (Affine2D().translate(-box.x0, -box.y0)
                             .scale(0.95 / box.width, height / box.height)
                             .translate(start + position - 0.475, offset if sign > 0 else -offset - height))
                ax.add_patch(PathPatch(transform.transform_path(path), facecolor=BASE_COLORS.get(alphabet[i], "k"),
                                       edgecolor="none"))
                offset += height
    extent = np.abs(values)
    top = max(np.where(values > 0, values, 0).sum(axis=1).max(initial=0), 1e-12)
    bottom = max(np.where(values < 0, -values, 0).sum(axis=1).max(initial=0), 0)
    ax.set_xlim(start - 0.5, start + len(values) - 0.5)
    ax.set_ylim(-bottom * 1.05, top * 1.05 if extent.size else 1)
    ax.axhline(0, color="0.3", linewidth=0.5)
    ax.set_xlabel("position (bp)")
    ax.set_title(title, fontsize=9)
    return ax


def mutagenesis_heatmap(ax: Axes, effects: np.ndarray, start: int = 0, title: str = "",
                        alphabet: str = "ACGT") -> Axes:
    """ISM effects (positions, 4) as a diverging heatmap, bases on the y axis."""
    effects = np.asarray(effects, dtype=float)
    limit = float(np.abs(effects).max()) or 1.0
    image = ax.imshow(effects.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                      extent=(start - 0.5, start + len(effects) - 0.5, 3.5, -0.5))
    ax.set_yticks(range(4), list(alphabet))
    ax.figure.colorbar(image, ax=ax, label="change of the prediction")
    ax.set_xlabel("position (bp)")
    ax.set_title(title, fontsize=9)
    return ax


def genome_track(ax: Axes, positions: np.ndarray, values: np.ndarray, bin_size: int, label: str,
                 color: str = "#255C99", experiment: bool = False, ylabel: str | None = None) -> Axes:
    """One genome-browser track: ``values`` (bins,) as filled steps over the bins starting at ``positions``
    (genome bp); predicted tracks in colour, experiments in grey. The label sits inside the panel;
    ``ylabel`` names the values' units."""
    positions = np.asarray(positions, dtype=float)
    values = np.asarray(values, dtype=float)
    edges = np.append(positions, positions[-1] + bin_size) if len(positions) else positions
    finite = np.where(np.isfinite(values), values, 0.0)
    ax.stairs(finite, edges, fill=True, color="0.55" if experiment else color, linewidth=0)
    ax.set_xlim(edges[0], edges[-1]) if len(edges) else None
    top = float(finite.max(initial=0.0))
    ax.set_ylim(min(0.0, float(finite.min(initial=0.0))), top * 1.15 if top > 0 else 1.0)
    ax.text(0.005, 0.95, label, transform=ax.transAxes, fontsize=7, va="top", ha="left")
    ax.tick_params(labelsize=7)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


STRAND_COLORS = {"+": "#255C99", "-": "#D62839"}


def stranded_track(ax: Axes, positions: np.ndarray, plus: np.ndarray, minus: np.ndarray, bin_size: int,
                   label: str, ylabel: str | None = None) -> Axes:
    """A stranded pair of tracks in one panel: the ``+`` strand's ``plus`` (bins,) above zero and the ``-``
    strand's ``minus`` (bins,) mirrored below it, each in its colour and named in the panel."""
    positions = np.asarray(positions, dtype=float)
    edges = np.append(positions, positions[-1] + bin_size) if len(positions) else positions
    plus = np.where(np.isfinite(plus), np.asarray(plus, dtype=float), 0.0)
    minus = np.where(np.isfinite(minus), np.asarray(minus, dtype=float), 0.0)
    ax.stairs(plus, edges, fill=True, color=STRAND_COLORS["+"], linewidth=0)
    ax.stairs(-minus, edges, fill=True, color=STRAND_COLORS["-"], linewidth=0)
    ax.axhline(0, color="0.3", linewidth=0.5)
    ax.set_xlim(edges[0], edges[-1]) if len(edges) else None
    reach = max(float(np.abs(plus).max(initial=0.0)), float(np.abs(minus).max(initial=0.0))) * 1.15 or 1.0
    ax.set_ylim(-reach, reach)
    ax.text(0.005, 0.95, label, transform=ax.transAxes, fontsize=7, va="top", ha="left")
    ax.text(0.995, 0.95, "+ strand", transform=ax.transAxes, fontsize=6, va="top", ha="right",
            color=STRAND_COLORS["+"])
    ax.text(0.995, 0.05, "- strand (mirrored)", transform=ax.transAxes, fontsize=6, va="bottom", ha="right",
            color=STRAND_COLORS["-"])
    ax.tick_params(labelsize=7)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def length_curves(ax: Axes, curves, xlabel: str, ylabel: str, title: str = "", log: bool = False,
                  cap: float | None = None, cap_label: str = "memory cap") -> Axes:
    """Cost against input length, one line per curve: ``curves`` holds dicts with ``x``, ``y``, ``label``
    and optionally ``color``, ``style`` and ``failed`` (lengths that ran out of memory, marked x). The cap
    is drawn only when a failure sits at it or a point comes within half of it, so the y-axis is never
    scaled to a limit nothing approaches. Values must be positive (per-layer differences that came out
    negative are noise, not costs: the caller leaves them out)."""
    highest = max((max(c["y"]) for c in curves if len(c["y"])), default=0.0)
    failures = any(len(c.get("failed", ())) for c in curves)
    show_cap = cap is not None and (failures or highest >= 0.5 * cap)
    marked = False
    for curve in curves:
        x, y = np.asarray(curve["x"], dtype=float), np.asarray(curve["y"], dtype=float)
        if (y <= 0).any():
            raise ValueError(f"curve {curve['label']!r} has values <= 0: {y.tolist()}")
        line = ax.plot(x, y, curve.get("style", "-"), marker="o", markersize=3.5, color=curve.get("color"),
                       label=curve["label"])[0]
        failed = list(curve.get("failed", ()))
        if failed:
            top = cap if show_cap else highest * 1.3
            # One legend entry for every mark: the colour already names the curve.
            ax.plot(failed, [top] * len(failed), "x", color=line.get_color(), markersize=9, markeredgewidth=2,
                    label="_" if marked else "x: out of memory")
            marked = True
    if show_cap:
        ax.axhline(cap, color="black", linewidth=0.7, linestyle=":", label=cap_label)
    if log:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if curves:
        legend_outside(ax)
    return ax
