"""A self-contained HTML report: sections of text, tables and PNG figures embedded as base64.

The page needs no network and no other file to view. Every table and figure carries the run (folder or
file) its numbers come from, so a reader can trace each number back.

>>> report = Report("senformer study")
>>> report.section("Accuracy")
>>> report.table(frame, caption="Pearson r per assay group", source="evaluate/metrics.json")
>>> report.write("report.html")
"""

from __future__ import annotations

import base64
import datetime as _datetime
import html
import io
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import __version__
from .io import atomic_write_text, write_json

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.table { overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { font-size: 0.9em; color: #444; }
.source { font-size: 0.8em; color: #777; font-family: monospace; }
.meta { color: #666; font-size: 0.9em; }
"""


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A matplotlib figure outside pyplot (no global state, no display needed)."""
    return Figure(figsize=(width, height), layout="constrained")


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


@dataclass
class _Block:
    kind: str
    html: str


class Report:
    """Builds one HTML page: ``section``, ``paragraph``, ``table``, ``figure``; ``write`` saves it atomically."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self.blocks: list[_Block] = []

    def section(self, title: str, text: str = "") -> None:
        self.blocks.append(_Block("section", f"<h2>{html.escape(title)}</h2>"))
        if text:
            self.paragraph(text)

    def paragraph(self, text: str) -> None:
        self.blocks.append(_Block("paragraph", f"<p>{html.escape(text)}</p>"))

    def table(self, frame: pd.DataFrame, caption: str, source: str | Sequence[str], digits: int = 4) -> None:
        """A table; floats shown with ``digits`` significant digits, NaN as an em dash."""
        header = "".join(f'<th class="{_cell_class(frame[c])}">{html.escape(str(c))}</th>' for c in frame.columns)
        rows = []
        for _, row in frame.iterrows():
            cells = "".join(
                f'<td class="{_cell_class(frame[c])}">{html.escape(_format(row[c], digits))}</td>' for c in frame.columns
            )
            rows.append(f"<tr>{cells}</tr>")
        self.blocks.append(_Block("table", (
            f'<div class="table"><p class="caption">{html.escape(caption)}</p>'
            f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"{_source(source)}</div>"
        )))

    def figure(self, figure: Figure | bytes, caption: str, source: str | Sequence[str], alt: str = "") -> None:
        """A figure (a matplotlib ``Figure`` or PNG bytes) embedded as a base64 data URI."""
        png = figure if isinstance(figure, (bytes, bytearray)) else figure_png(figure)
        if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"figure {caption!r} is not a PNG image")
        data = base64.b64encode(bytes(png)).decode("ascii")
        self.blocks.append(_Block("figure", (
            f'<figure><img alt="{html.escape(alt or caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption>{_source(source)}</figure>"
        )))

    def to_html(self) -> str:
        created = _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        subtitle = f'<p class="meta">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        body = "\n".join(block.html for block in self.blocks)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{subtitle}"
            f'<p class="meta">senformer {__version__}, written {created}</p>\n{body}\n</body></html>\n'
        )

    def write(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_html())


def _source(source: str | Sequence[str]) -> str:
    sources = [source] if isinstance(source, str) else list(source)
    return f'<p class="source">source: {html.escape(", ".join(str(s) for s in sources))}</p>'


def _cell_class(column: pd.Series) -> str:
    return "num" if pd.api.types.is_numeric_dtype(column) else "text"


def _format(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "—"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


# The study report of ``senformer demo`` --------------------------------------------------------------
def _read_json(path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _columns(frame: pd.DataFrame, wanted: Sequence[str]) -> pd.DataFrame:
    return frame[[column for column in wanted if column in frame.columns]]


def _done(folder) -> dict | None:
    """The stage marker of a finished stage, else None."""
    marker = folder / ".done"
    return _read_json(marker) if marker.is_file() else None


def build_study_report(run_dir: str | os.PathLike) -> "os.PathLike":
    """Write ``report.html`` and ``report.json`` for a study folder laid out by ``senformer demo``
    (``data/``, ``train_full/``, ``train_bigbird/``, ``evaluate/``, ``compare/``, ``tracks/``,
    ``receptive_field/``, ``attribution/``, ``scaling/``); stages that did not finish are listed as missing.
    Every table and figure names the file and run it comes from. Returns the HTML path."""
    import json
    from pathlib import Path

    from .plots import grouped_bars

    run = Path(run_dir)
    settings = _read_json(run / "demo.json") if (run / "demo.json").is_file() else {}
    numbers: dict[str, dict] = {}
    report = Report("senformer study: Enformer with full and BigBird attention",
                    subtitle=f"run folder {run.resolve()}; command: {settings.get('command', 'senformer demo')}")

    def rel(*parts: str) -> str:
        return str(Path(*parts))

    # Runs --------------------------------------------------------------------------------------------
    report.section("Runs", "Each stage ran one senformer command into its own folder; every number below "
                   "names the file it was read from, and each folder holds its run record (settings.json or "
                   "run.json) or .done marker.")
    stage_names = settings.get("stages") or sorted(p.name for p in run.iterdir() if p.is_dir())
    stage_rows = []
    for stage in stage_names:
        marker = _done(run / stage)
        stage_rows.append({"stage": stage, "status": "finished" if marker else "missing",
                     "seconds": marker["seconds"] if marker else float("nan"),
                     "command": "senformer " + " ".join(marker["argv"]) if marker else ""})
    runs = pd.DataFrame(stage_rows)
    report.table(runs, "Stages of this study", source=[rel(stage, ".done") for stage in stage_names])
    numbers["runs"] = {"table": runs.to_dict(orient="records"), "source": "<stage>/.done"}
    if settings.get("settings"):
        flat = pd.DataFrame([{"setting": key, "value": json.dumps(value) if isinstance(value, (dict, list)) else str(value)}
                             for key, value in settings["settings"].items()])
        report.table(flat, "Demo settings and seeds", source="demo.json")

    # Data ---------------------------------------------------------------------------------------------
    statistics_path = run / "data" / "statistics.json"
    if _done(run / "data") and statistics_path.is_file():
        statistics = _read_json(statistics_path)
        report.section("Data", "A synthetic dataset in the exact Basenji2 layout (ZLIB TFRecords, targets.txt, "
                       "sequences.bed), with long-range enhancer-promoter effects beyond the conv tower's reach.")
        report.table(pd.DataFrame([{"field": k, "value": str(v)} for k, v in statistics.items()]),
                     "Dataset statistics", source=rel("data", "statistics.json"))
        numbers["data"] = {"statistics": statistics, "source": rel("data", "statistics.json")}

    # Training (Figure 5's shape) ----------------------------------------------------------------------
    trained = [stage for stage in ("train_full", "train_bigbird") if _done(run / stage)]
    if trained:
        report.section("Training", "A full-attention model trained from scratch, then a BigBird model initialised "
                       "from it and fine-tuned (the S-Enformer report's Figure 5 procedure).")
        numbers["training"] = {}
        for stage in trained:
            numbers["training"][stage] = {"source": rel(stage, "log.jsonl")}
            for kind, caption in (("train", "last logged training step"), ("eval", "last validation")):
                log = run / stage / f"{kind}_log.csv"
                frame = pd.read_csv(log) if log.is_file() else pd.DataFrame()
                if len(frame):
                    last = frame.iloc[-1].to_dict()
                    numbers["training"][stage][f"last_{kind}"] = last
                    report.table(pd.DataFrame([last]), f"{stage}: {caption}",
                                 source=[rel(stage, f"{kind}_log.csv"), rel(stage, "settings.json")])
            curves = run / stage / "curves.png"
            if curves.is_file():
                report.figure(curves.read_bytes(), f"{stage}: training curves", source=rel(stage, "log.jsonl"))

    # Accuracy (Figure 4) ------------------------------------------------------------------------------
    if _done(run / "evaluate"):
        per_assay = pd.read_csv(run / "evaluate" / "per_assay.csv")
        report.section("Accuracy per assay group (Figure 4)", "Pearson r on the test split: pooled per track over "
                       "every example and bin, then averaged over the group's tracks; and the mean per-example r.")
        report.table(per_assay, "Pearson r per assay group and model",
                     source=[rel("evaluate", "per_assay.csv"), rel("evaluate", "metrics.json")])
        numbers["evaluate"] = {"per_assay": per_assay.to_dict(orient="records"), "source": rel("evaluate", "per_assay.csv")}
        pooled = [c for c in per_assay.columns if c.startswith("pooled_") and "_minus_" not in c]
        if pooled:
            long = per_assay.melt(id_vars=["assay_group"], value_vars=pooled, var_name="model", value_name="pearson")
            long["model"] = long["model"].str.removeprefix("pooled_")
            figure = new_figure(6.5, 3.2)
            grouped_bars(figure.subplots(), long, "pearson", group_column="assay_group", ylabel="pooled Pearson r",
                         title="Test accuracy per assay group")
            report.figure(figure, "Figure 4: pooled Pearson r per assay group", source=rel("evaluate", "per_assay.csv"))

    # Figure 6 ---------------------------------------------------------------------------------------
    if _done(run / "compare"):
        table = pd.read_csv(run / "compare" / "compare.csv")
        report.section("Per-example comparison (Figure 6)", "Each example's mean Pearson r over a group's tracks, "
                       "model against model; the correlation of the two scores, who wins how often (ties apart), and "
                       "the pooled correlation between the two models' predictions.")
        report.table(table, "Model against model per assay group",
                     source=[rel("compare", "compare.csv"), rel("compare", "run.json")])
        report.figure((run / "compare" / "compare.png").read_bytes(), "Figure 6: per-example Pearson r, model against "
                      "model, per assay group", source=rel("compare", "per_example.csv"))
        numbers["compare"] = {"table": table.to_dict(orient="records"), "source": rel("compare", "compare.csv")}

    # Figure 7 ---------------------------------------------------------------------------------------
    if _done(run / "tracks"):
        table = pd.read_csv(run / "tracks" / "overprediction.csv")
        report.section("Tracks and over-prediction (Figure 7)", "Predicted against observed tracks for chosen test "
                       "examples, one panel per track; over the whole split, mean predicted over mean observed and "
                       "the share of bins over-predicted per assay group.")
        for png in sorted((run / "tracks").glob("tracks_example*.png")):
            report.figure(png.read_bytes(), f"Figure 7: {png.stem.replace('_', ' ')}",
                          source=[rel("tracks", "tracks.npz"), rel("tracks", "tracks.json")])
        report.table(table, "Over-prediction per assay group and model",
                     source=[rel("tracks", "overprediction.csv"), rel("tracks", "run.json")])
        numbers["overprediction"] = {"table": table.to_dict(orient="records"), "source": rel("tracks", "overprediction.csv")}

    # Figure 8 ---------------------------------------------------------------------------------------
    if _done(run / "receptive_field"):
        summary = _read_json(run / "receptive_field" / "receptive_field.json")
        report.section("Receptive field (Figure 8)", "Single-base substitutions at positions spread over the input; "
                       "the mean absolute change of every output bin. The conv tower alone reaches 646 bp; attention "
                       "carries a change to every output bin.")
        rows = [{"model": name, "attention": item["attention"], "depth": item["depth"],
                 "sequence_length": item["sequence_length"],
                 "mean_share_of_bins_changed": float(np.mean(item["reach_share"])),
                 "min_share_of_bins_changed": float(np.min(item["reach_share"])), "max_change": item["max_change"]}
                for name, item in summary.items()]
        report.table(pd.DataFrame(rows), "Share of output bins changed by more than 1e-3 of the largest change",
                     source=[rel("receptive_field", "receptive_field.json"), rel("receptive_field", "run.json")])
        for name in summary:
            for kind in ("heatmap", "profile"):
                png = run / "receptive_field" / f"receptive_field_{name}_{kind}.png"
                if png.is_file():
                    report.figure(png.read_bytes(), f"Figure 8: {name}, {kind}",
                                  source=rel("receptive_field", f"receptive_field_{name}.npz"))
        numbers["receptive_field"] = {"models": rows, "source": rel("receptive_field", "receptive_field.json")}

    # Attribution ------------------------------------------------------------------------------------
    if _done(run / "attribution"):
        info = _read_json(run / "attribution" / "attribution.json")
        report.section("Attribution", f"Gradient x input and in-silico mutagenesis of model {info['model']} for "
                       f"{info['region']}, output bins {info['bins']}.")
        for name, caption in (("gradient_x_input_logo", "gradient x input"), ("ism", "in-silico mutagenesis"),
                              ("ism_logo", "in-silico mutagenesis, mean-centred logo")):
            png = run / "attribution" / f"{name}.png"
            if png.is_file():
                report.figure(png.read_bytes(), caption, source=rel("attribution", "attribution.npz"))
        numbers["attribution"] = {**info, "source": rel("attribution", "attribution.json")}

    # Figures 1-3 --------------------------------------------------------------------------------------
    if _done(run / "scaling"):
        sweep = _read_json(run / "scaling" / "scaling.json") if (run / "scaling" / "scaling.json").is_file() else {}
        lengths = sorted({int(point["length"]) for point in sweep.get("points", []) if "length" in point})
        report.section("Memory and speed against sequence length (Figures 1-3)", "A training step per attention "
                       "kind and depth, each point in its own process under a memory cap"
                       + (f", at {', '.join(f'{n:,}' for n in lengths)} bp" if lengths else "") + ". Short inputs "
                       "keep the demo fast but sit below the lengths where full attention's quadratic memory "
                       "dominates (about 300 kb in the S-Enformer report); `senformer benchmark scaling` runs the "
                       "full sweep.")
        csv = run / "scaling" / "scaling.csv"
        if csv.is_file():
            table = _columns(pd.read_csv(csv), ["length", "attention", "depth", "mode", "dim", "status",
                                                "median_seconds", "peak_rss_bytes", "reason"])
            if "peak_rss_bytes" in table.columns:
                table = table.assign(peak_rss_gib=table["peak_rss_bytes"] / 2**30).drop(columns="peak_rss_bytes")
            report.table(table, "Scaling sweep", source=[rel("scaling", "scaling.csv"), rel("scaling", "scaling.json")])
            numbers["scaling"] = {"table": table.to_dict(orient="records"), "source": rel("scaling", "scaling.csv")}
        for png in sorted((run / "scaling").glob("*.png")):
            report.figure(png.read_bytes(), f"Figures 1-3: {png.stem.replace('_', ' ')}",
                          source=rel("scaling", "scaling.json"))

    missing = [row["stage"] for row in stage_rows if row["status"] == "missing"]
    if missing:
        report.section("Missing", "These stages have not finished, so their figures are absent: " + ", ".join(missing))
    html_path = run / "report.html"
    report.write(html_path)
    write_json(run / "report.json", {"run": str(run.resolve()), "settings": settings, "numbers": numbers,
                                      "missing": missing})
    return html_path

