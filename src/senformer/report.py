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
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import __version__
from .errors import UserError
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
.summary { background: #f6f8fa; border: 1px solid #dde3ea; padding: 0.2em 1.2em 0.6em; }
.summary h2 { border: none; margin-top: 0.6em; } .summary li { margin: 0.35em 0; }
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
        self.summary_blocks: list[_Block] = []

    def summary(self, title: str, items: Sequence[str], note: str = "") -> None:
        """Bullets shown first, above every section, whenever they are added (a summary of findings is
        written last, from the numbers the sections read)."""
        bullets = "".join(f"<li>{html.escape(item)}</li>" for item in items)
        extra = f'<p class="meta">{html.escape(note)}</p>' if note else ""
        self.summary_blocks.append(_Block("summary", f'<div class="summary"><h2>{html.escape(title)}</h2>'
                                                     f"<ul>{bullets}</ul>{extra}</div>"))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(_Block("bullets", "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"))

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
        body = "\n".join(block.html for block in [*self.summary_blocks, *self.blocks])
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
# Recorded results live in the repository (not in an installed wheel): benchmarks/results/ beside src/.
RECORDED_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
# Where `benchmarks/study/run.sh` (``senformer study accuracy --results ...``) writes the accuracy study.
STUDY_RESULT = Path("accuracy_study") / "study.json"
STUDY_COMMAND = "benchmarks/study/run.sh   # senformer study accuracy --results benchmarks/results/accuracy_study"
KIND_COLOURS = {"full": "tab:blue", "chunked": "tab:green", "bigbird": "tab:red", "control": "tab:gray",
                "enformer-pytorch": "tab:gray"}
CONTROL = "control"  # the demo's name for the full model with its attention output projections at zero


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


def _columns(frame: pd.DataFrame, wanted: Sequence[str]) -> pd.DataFrame:
    return frame[[column for column in wanted if column in frame.columns]]


def _done(folder: Path) -> dict | None:
    """The stage marker of a finished stage, else None."""
    marker = folder / ".done"
    return _read_json(marker) if marker.is_file() else None


def _kb(length: float) -> str:
    return f"{int(length):,} bp"


def build_study_report(run_dir: str | os.PathLike, recorded: str | os.PathLike | None = RECORDED_RESULTS,
                       study: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` and ``report.json`` for a study folder laid out by ``senformer demo``
    (``data/``, ``train_full/``, ``control/``, ``train_bigbird/``, ``evaluate/``, ``compare/``, ``tracks/``,
    ``receptive_field/``, ``attribution/``, ``attention/``), beside the recorded full-width benchmarks in
    ``recorded`` (``benchmarks/results/``; None: left out) and the accuracy study's ``study.json`` (default
    ``recorded/accuracy_study/study.json``; when absent the report says how to run it). A summary of findings
    comes first; stages that did not finish are listed as missing. Every table and figure names the file
    and run it comes from. Returns the HTML path."""
    run = Path(run_dir)
    recorded = Path(recorded) if recorded is not None else None
    study_path = Path(study) if study is not None else (recorded / STUDY_RESULT if recorded is not None else None)
    settings = _read_json(run / "demo.json") if (run / "demo.json").is_file() else {}
    numbers: dict[str, Any] = {}
    findings: list[str] = []
    report = Report("senformer study: Enformer with full and BigBird attention",
                    subtitle=f"run folder {run.resolve()}; command: {settings.get('command', 'senformer demo')}")

    stage_rows = _runs_section(report, run, settings, numbers)
    _data_section(report, run, numbers)
    _training_section(report, run, numbers)
    findings += _accuracy_section(report, run, numbers)
    _compare_section(report, run, numbers)
    _tracks_section(report, run, numbers)
    findings += _receptive_field_section(report, run, numbers)
    _attribution_section(report, run, numbers)
    findings += _recorded_scaling_section(report, recorded, numbers)
    findings += _live_attention_section(report, run, recorded, numbers)
    findings += _accuracy_study_section(report, study_path, numbers)

    missing = [row["stage"] for row in stage_rows if row["status"] == "missing"]
    if missing:
        report.section("Missing", "These stages have not finished, so their figures are absent: " + ", ".join(missing))
    report.summary("Summary of findings", findings or ["No stage has finished yet."],
                   note="Each number is read from the files named under the tables and figures below.")
    numbers["summary"] = findings
    html_path = run / "report.html"
    report.write(html_path)
    write_json(run / "report.json", {"run": str(run.resolve()), "settings": settings, "numbers": numbers,
                                      "missing": missing, "summary": findings})
    return html_path


def _runs_section(report: Report, run: Path, settings: dict, numbers: dict) -> list[dict]:
    report.section("Runs", "Each stage ran one senformer command into its own folder; every number below "
                   "names the file it was read from, and each folder holds its run record (settings.json or "
                   "run.json) or .done marker.")
    stage_names = settings.get("stages") or sorted(p.name for p in run.iterdir() if p.is_dir())
    rows = []
    for stage in stage_names:
        marker = _done(run / stage)
        rows.append({"stage": stage, "status": "finished" if marker else "missing",
                     "seconds": marker["seconds"] if marker else float("nan"),
                     "command": ("senformer " + " ".join(marker["argv"])) if marker and marker.get("argv")
                     else (marker or {}).get("what", "")})
    runs = pd.DataFrame(rows)
    report.table(runs, "Stages of this study", source=[str(Path(stage, ".done")) for stage in stage_names])
    numbers["runs"] = {"table": runs.to_dict(orient="records"), "source": "<stage>/.done"}
    if settings.get("settings"):
        flat = pd.DataFrame([{"setting": key, "value": json.dumps(value) if isinstance(value, (dict, list)) else str(value)}
                             for key, value in settings["settings"].items()])
        report.table(flat, "Demo settings and seeds", source="demo.json")
    return rows


def _data_section(report: Report, run: Path, numbers: dict) -> None:
    statistics_path = run / "data" / "statistics.json"
    if not (_done(run / "data") and statistics_path.is_file()):
        return
    statistics = _read_json(statistics_path)
    report.section("Data", "A synthetic dataset in the exact Basenji2 layout (ZLIB TFRecords, targets.txt, "
                   "sequences.bed), with long-range enhancer-promoter effects beyond the conv tower's reach.")
    report.table(pd.DataFrame([{"field": k, "value": str(v)} for k, v in statistics.items()]),
                 "Dataset statistics", source="data/statistics.json")
    numbers["data"] = {"statistics": statistics, "source": "data/statistics.json"}


def _training_section(report: Report, run: Path, numbers: dict) -> None:
    trained = [stage for stage in ("train_full", "train_bigbird") if _done(run / stage)]
    if not trained:
        return
    report.section("Training", "A full-attention model trained from scratch, then a BigBird model initialised "
                   "from it and fine-tuned (the S-Enformer report's Figure 5 procedure). The control is the "
                   "trained full model with every attention output projection set to zero (its value at "
                   "initialisation): the same network with attention removed.")
    numbers["training"] = {}
    for stage in trained:
        numbers["training"][stage] = {"source": f"{stage}/log.jsonl"}
        for kind, caption in (("train", "last logged training step"), ("eval", "last validation")):
            log = run / stage / f"{kind}_log.csv"
            frame = pd.read_csv(log) if log.is_file() else pd.DataFrame()
            if len(frame):
                last = frame.iloc[-1].to_dict()
                numbers["training"][stage][f"last_{kind}"] = last
                report.table(pd.DataFrame([last]), f"{stage}: {caption}",
                             source=[f"{stage}/{kind}_log.csv", f"{stage}/settings.json"])
        curves = run / stage / "curves.png"
        if curves.is_file():
            report.figure(curves.read_bytes(), f"{stage}: training curves", source=f"{stage}/log.jsonl")


def long_range_tracks(run: Path) -> list[int]:
    """Indices of the synthetic dataset's long-range tracks (``data/synthetic.json``)."""
    path = run / "data" / "synthetic.json"
    return [int(i) for i in _read_json(path).get("long_range_tracks", [])] if path.is_file() else []


def _accuracy_section(report: Report, run: Path, numbers: dict) -> list[str]:
    from .plots import grouped_bars

    if not _done(run / "evaluate"):
        return []
    per_assay = pd.read_csv(run / "evaluate" / "per_assay.csv")
    per_track = pd.read_csv(run / "evaluate" / "per_track.csv")
    report.section("Accuracy per assay group (Figure 4)", "Pearson r on the test split: pooled per track over "
                   "every example and bin, then averaged over the group's tracks; and the mean per-example r.")
    # The two metrics per model; the differences and constant-track counts stay in the CSV.
    shown = [c for c in per_assay.columns if c in ("assay_group", "tracks")
             or (c.startswith(("pooled_", "per_example_")) and "_minus_" not in c)]
    report.table(per_assay[shown], "Pearson r per assay group and model (all columns: evaluate/per_assay.csv)",
                 source=["evaluate/per_assay.csv", "evaluate/metrics.json"])
    numbers["evaluate"] = {"per_assay": per_assay.to_dict(orient="records"), "source": "evaluate/per_assay.csv"}
    pooled = [c for c in per_assay.columns if c.startswith("pooled_") and "_minus_" not in c]
    models = [c.removeprefix("pooled_") for c in pooled]
    if pooled:
        long = per_assay.melt(id_vars=["assay_group"], value_vars=pooled, var_name="model", value_name="pearson")
        long["model"] = long["model"].str.removeprefix("pooled_")
        figure = new_figure(7.5, 3.6)
        grouped_bars(figure.subplots(), long, "pearson", group_column="assay_group", ylabel="pooled Pearson r",
                     title="Test accuracy per assay group")
        report.figure(figure, "Figure 4: pooled Pearson r per assay group", source="evaluate/per_assay.csv")
    distal = long_range_tracks(run)
    if not models or not distal:
        return []
    reach = np.array(["long-range" if i in distal else "local" for i in per_track["index"]])
    rows = []
    for name in models:
        values = per_track[f"pooled_{name}"].to_numpy(dtype=float)
        rows.append({"model": name, "all tracks": float(np.nanmean(values)),
                     "long-range tracks": float(np.nanmean(values[reach == "long-range"])),
                     "local tracks": float(np.nanmean(values[reach == "local"]))})
    table = pd.DataFrame(rows)
    report.paragraph(f"The long-range tracks ({len(distal)} of {len(per_track)}: {', '.join(map(str, distal))}) "
                     "depend on enhancers beyond the conv tower's reach, so only attention can predict them; "
                     "the control shows what the trained network does without it.")
    report.table(table, "Pooled Pearson r (test), mean over tracks, by reach",
                 source=["evaluate/per_track.csv", "data/synthetic.json"])
    numbers["evaluate"]["by_reach"] = {"table": rows, "long_range_tracks": distal,
                                       "source": ["evaluate/per_track.csv", "data/synthetic.json"]}
    by_model = {row["model"]: row for row in rows}
    parts = [f"{name} {by_model[name]['all tracks']:.3f}" for name in models]
    distant = [f"{name} {by_model[name]['long-range tracks']:.3f}" for name in models]
    examples = _read_json(run / "evaluate" / "metrics.json").get("examples") if (run / "evaluate" / "metrics.json").is_file() else None
    finding = (f"Accuracy (test pooled Pearson r, mean over {len(per_track)} tracks"
               + (f", {examples} examples" if examples else "") + "): " + ", ".join(parts)
               + f". On the {len(distal)} long-range tracks: " + ", ".join(distant) + ".")
    if CONTROL in by_model and "full" in by_model:
        gain = by_model["full"]["long-range tracks"] - by_model[CONTROL]["long-range tracks"]
        finding += f" Attention adds {gain:+.3f} on the long-range tracks (full minus the control)."
    return [finding]


def _compare_section(report: Report, run: Path, numbers: dict) -> None:
    if not _done(run / "compare"):
        return
    table = pd.read_csv(run / "compare" / "compare.csv")
    report.section("Per-example comparison (Figure 6)", "Each example's mean Pearson r over a group's tracks, "
                   "model against model; the correlation of the two scores, who wins how often (ties apart), and "
                   "the pooled correlation between the two models' predictions.")
    report.table(table, "Model against model per assay group", source=["compare/compare.csv", "compare/run.json"])
    report.figure((run / "compare" / "compare.png").read_bytes(), "Figure 6: per-example Pearson r, model against "
                  "model, per assay group", source="compare/per_example.csv")
    numbers["compare"] = {"table": table.to_dict(orient="records"), "source": "compare/compare.csv"}


def _tracks_section(report: Report, run: Path, numbers: dict) -> None:
    if not _done(run / "tracks"):
        return
    table = pd.read_csv(run / "tracks" / "overprediction.csv")
    report.section("Tracks and over-prediction (Figure 7)", "Predicted against observed tracks for chosen test "
                   "examples, one panel per track; over the whole split, mean predicted over mean observed and "
                   "the share of bins over-predicted per assay group.")
    for png in sorted((run / "tracks").glob("tracks_example*.png")):
        report.figure(png.read_bytes(), f"Figure 7: {png.stem.replace('_', ' ')}",
                      source=["tracks/tracks.npz", "tracks/tracks.json"])
    report.table(table, "Over-prediction per assay group and model", source=["tracks/overprediction.csv", "tracks/run.json"])
    numbers["overprediction"] = {"table": table.to_dict(orient="records"), "source": "tracks/overprediction.csv"}


def _receptive_field_section(report: Report, run: Path, numbers: dict) -> list[str]:
    if not _done(run / "receptive_field"):
        return []
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
                 source=["receptive_field/receptive_field.json", "receptive_field/run.json"])
    for name in summary:
        for kind in ("heatmap", "profile"):
            png = run / "receptive_field" / f"receptive_field_{name}_{kind}.png"
            if png.is_file():
                report.figure(png.read_bytes(), f"Figure 8: {name}, {kind}",
                              source=f"receptive_field/receptive_field_{name}.npz")
    numbers["receptive_field"] = {"models": rows, "source": "receptive_field/receptive_field.json"}
    if not rows:
        return []
    shares = ", ".join(f"{row['model']} {100 * row['mean_share_of_bins_changed']:.0f}%" for row in rows)
    return [f"Receptive field: a single-base substitution changes on average this share of the "
            f"{rows[0]['sequence_length']:,}-bp input's output bins: {shares} (the conv tower alone reaches "
            "646 bp; attention carries the change further)."]


def _attribution_section(report: Report, run: Path, numbers: dict) -> None:
    if not _done(run / "attribution"):
        return
    info = _read_json(run / "attribution" / "attribution.json")
    report.section("Attribution", f"Gradient x input and in-silico mutagenesis of model {info['model']} for "
                   f"{info['region']}, output bins {info['bins']}.")
    for name, caption in (("gradient_x_input_logo", "gradient x input"), ("ism", "in-silico mutagenesis"),
                          ("ism_logo", "in-silico mutagenesis, mean-centred logo")):
        png = run / "attribution" / f"{name}.png"
        if png.is_file():
            report.figure(png.read_bytes(), caption, source="attribution/attribution.npz")
    numbers["attribution"] = {**info, "source": "attribution/attribution.json"}


# Recorded full-width benchmarks ------------------------------------------------------------------------
def scaling_command(settings: dict) -> str:
    """The ``senformer benchmark scaling`` command line equivalent to one recorded run's settings."""
    parts = ["senformer benchmark scaling", f"--dim {settings['dim']}",
             "--lengths " + ",".join(str(n) for n in settings["lengths"]),
             "--attention " + ",".join(settings["attentions"]), "--depths " + ",".join(str(n) for n in settings["depths"]),
             "--modes " + ",".join(settings["modes"]), "--precision " + ",".join(settings["precisions"]),
             "--checkpoint " + ("both" if len(settings["checkpoints"]) > 1 else settings["checkpoints"][0])]
    parts.append("--peer" if settings.get("peer") else "--no-peer")
    if settings.get("memory_cap_bytes"):
        parts.append(f"--memory-cap-gb {settings['memory_cap_bytes'] / 1e9:g}")
    if settings.get("timeout_s"):
        parts.append(f"--timeout {settings['timeout_s']:g}")
    parts += [f"--warmup {settings['warmup']}", f"--repeats {settings['repeats']}"]
    return " ".join(parts)


def _machine_text(machine: dict) -> str:
    memory = f", {machine['memory_bytes'] / 1e9:.0f} GB RAM" if machine.get("memory_bytes") else ""
    flags = f" ({', '.join(machine['cpu_bf16_flags'])})" if machine.get("cpu_bf16_flags") else ""
    cpu = machine.get("cpu") or machine.get("cpu_model") or machine.get("processor") or "CPU"
    device = machine.get("gpu") or f"{cpu}{flags}, {machine.get('usable_cpus') or machine.get('cpu_count', '?')} cores"
    return f"{device}{memory}, torch {machine.get('torch', '?')}"


def _provenance(document: dict, folder: str) -> pd.DataFrame:
    rows = []
    for index, entry in enumerate(document.get("runs", [])):
        machine = entry.get("machine", {})
        commit = machine.get("senformer_commit") or "?"
        changes = machine.get("senformer_uncommitted_changes")
        rows.append({"run": index + 1, "started (UTC)": entry.get("started", "?"),
                     "commit": commit[:7] + (" + uncommitted changes" if changes else ""),
                     "machine": _machine_text(machine), "command": scaling_command(entry["settings"])
                     + f" --out {folder}"})
    return pd.DataFrame(rows)


def _series(point: dict) -> str:
    return "enformer-pytorch" if point.get("implementation") == "enformer-pytorch" else point["attention"]


def _recorded_scaling_section(report: Report, recorded: Path | None, numbers: dict) -> list[str]:
    from .plots import length_curves

    folder = recorded / "scaling_train_cpu" if recorded is not None else None
    report.section("Memory and speed at full width (recorded, Figures 1-3)")
    if folder is None or not (folder / "scaling.json").is_file():
        report.paragraph("The recorded full-width sweep (benchmarks/results/scaling_train_cpu/ in the senformer "
                         "repository) was not found beside this installation; run the demo from a clone to show it, "
                         "or record it with the command in docs/scaling.md.")
        return []
    label = f"benchmarks/results/{folder.name}"
    document = _read_json(folder / "scaling.json")
    points = [p for p in document["points"] if p.get("status") in ("ok", "oom")]
    mode = "train"
    chosen = [p for p in points if p["mode"] == mode]
    dim, precision = chosen[0]["dim"], chosen[0]["precision"]
    checkpoint = chosen[0]["checkpoint"]
    chosen = [p for p in chosen if (p["dim"], p["precision"], p["checkpoint"]) == (dim, precision, checkpoint)]
    deepest = max(p["depth"] for p in chosen)
    cap = chosen[0]["memory_cap_bytes"] / 1e9
    report.paragraph(
        f"Not measured by this demo: the full-width sweep recorded on the development machine (dim {dim}, a "
        f"training step of forward, Poisson loss, backward and Adam, batch 1, {precision}, "
        f"{'stem and conv tower checkpointed' if checkpoint == 'conv' else 'checkpointing ' + checkpoint}), each "
        f"point in its own process under a {cap:g} GB resident-memory cap. The sweep was recorded in parts; "
        "each part's commit, machine and exact command are below. docs/scaling.md explains the settings.")
    report.table(_provenance(document, label), "Provenance of the recorded sweep", source=f"{label}/scaling.json")
    kinds = [k for k in ("full", "chunked", "bigbird", "enformer-pytorch") if any(_series(p) == k for p in chosen)]
    lengths = sorted({p["length"] for p in chosen})
    lookup = {(_series(p), p["depth"], p["length"]): p for p in chosen}
    rows = []
    for length in lengths:
        row: dict[str, Any] = {"length (bp)": f"{length:,}"}
        for kind in kinds:
            point = lookup.get((kind, deepest, length))
            if point is None:
                text = "-"
            elif point["status"] == "oom":
                text = "out of memory" + (" (inferred)" if point.get("inferred") else "")
            else:
                text = f"{point['median_seconds']:.1f} s / {point['peak_rss_bytes'] / 1e9:.2f} GB"
            row[kind] = text
        rows.append(row)
    report.table(pd.DataFrame(rows), f"Step time and peak resident memory, {deepest} layers",
                 source=[f"{label}/scaling.json", f"{label}/scaling.csv"])

    def curves(value, depth_filter, failures: bool) -> list[dict]:
        result = []
        depths = sorted({p["depth"] for p in chosen})
        for kind in kinds:
            for depth in depths:
                if not depth_filter(depth, depths):
                    continue
                series = sorted((p for p in chosen if _series(p) == kind and p["depth"] == depth), key=lambda p: p["length"])
                ok = [p for p in series if p["status"] == "ok"]
                failed = [p["length"] / 1e3 for p in series if p["status"] == "oom" and not p.get("inferred")] if failures else []
                if ok:
                    result.append({"x": [p["length"] / 1e3 for p in ok], "y": [value(p) for p in ok], "failed": failed,
                                   "label": f"{kind}, {depth} layer{'s' if depth > 1 else ''}",
                                   "color": KIND_COLOURS.get(kind), "style": "-" if depth == depths[-1] else "--"})
        return result

    both = lambda depth, depths: depth in (depths[0], depths[-1])  # noqa: E731 (the two depths Figure 1 shows)
    figure = new_figure(7.5, 4.6)
    length_curves(figure.subplots(), curves(lambda p: p["peak_rss_bytes"] / 1e9, both, failures=True), "input length (kbp)",
                  "peak resident memory (GB)", f"Figure 1: memory of a training step (dashed: {min(p['depth'] for p in chosen)} layer)",
                  cap=cap, cap_label=f"{cap:g} GB cap")
    report.figure(figure, "Figure 1 (recorded): peak memory against input length", source=f"{label}/scaling.json")
    figure = new_figure(7.5, 4.6)
    length_curves(figure.subplots(), curves(lambda p: p["median_seconds"], both, failures=False), "input length (kbp)", "step time (s)",
                  "Figure 3: time of a training step")
    report.figure(figure, "Figure 3 (recorded): step time against input length", source=f"{label}/scaling.json")

    per_layer = [p for p in document.get("summary", {}).get("per_layer", [])
                 if (p["mode"], p["dim"], p["precision"], p["checkpoint"]) == (mode, dim, precision, checkpoint)]
    for quantity, scale, ylabel, title in (("memory_bytes", 1e9, "memory per layer (GB)", "memory"),
                                           ("seconds", 1.0, "time per layer (s)", "step time")):
        layer_curves, dropped = [], []
        for kind in kinds:
            series = sorted((p for p in per_layer if _series(p) == kind), key=lambda p: p["length"])
            kept = [p for p in series if p[quantity] > 0]
            dropped += [f"{kind} at {p['length']:,} bp" for p in series if p[quantity] <= 0]
            if kept:
                layer_curves.append({"x": [p["length"] / 1e3 for p in kept], "y": [p[quantity] / scale for p in kept],
                                     "label": kind, "color": KIND_COLOURS.get(kind)})
        if not layer_curves:
            continue
        figure = new_figure(7.5, 4.6)
        length_curves(figure.subplots(), layer_curves, "input length (kbp)", ylabel,
                      f"Figure 2: {title} per transformer layer ((deep - shallow) / layers)")
        note = (" Left out, as a difference within noise (not positive): " + ", ".join(dropped) + ".") if dropped else ""
        report.figure(figure, f"Figure 2 (recorded): {title} per transformer layer.{note}", source=f"{label}/scaling.json")

    longest = _longest_table(recorded)
    if longest is not None:
        report.table(longest, "Longest input that fitted under the cap, per curve (all recorded sweeps)",
                     source=[f"benchmarks/results/{name}/scaling.json" for name in ("scaling_train_cpu", "scaling_long_cpu")])
    numbers["recorded_scaling"] = {"table": rows, "source": f"{label}/scaling.json"}

    # The finding: the longest length where both fit at full depth, and what happens beyond it.
    common = [n for n in lengths if all(lookup.get((k, deepest, n), {}).get("status") == "ok" for k in ("full", "bigbird"))]
    if not common:
        return []
    both_fit = common[-1]
    full, sparse = lookup[("full", deepest, both_fit)], lookup[("bigbird", deepest, both_fit)]
    text = (f"Recorded at full width ({label}: dim {dim}, {deepest} layers, {precision} training step, "
            f"{_machine_text(document['runs'][0]['machine'])}, commit "
            f"{(document['runs'][0]['machine'].get('senformer_commit') or '?')[:7]}): at {_kb(both_fit)} bigbird takes "
            f"{sparse['median_seconds']:.0f} s / {sparse['peak_rss_bytes'] / 1e9:.1f} GB per step against full's "
            f"{full['median_seconds']:.0f} s / {full['peak_rss_bytes'] / 1e9:.1f} GB")
    beyond = [n for n in lengths if n > both_fit and lookup.get(("full", deepest, n), {}).get("status") == "oom"
              and lookup.get(("bigbird", deepest, n), {}).get("status") == "ok"]
    if beyond:
        point = lookup[("bigbird", deepest, beyond[0])]
        text += (f"; at {_kb(beyond[0])} full runs out of the {cap:g} GB cap while bigbird fits in "
                 f"{point['peak_rss_bytes'] / 1e9:.1f} GB")
    layer = {(_series(p), p["length"]): p for p in per_layer}
    last = max((n for n in lengths if ("full", n) in layer and ("bigbird", n) in layer and layer[("bigbird", n)]["seconds"] > 0
                and layer[("full", n)]["seconds"] > 0), default=None)
    if last is not None:
        text += (f"; per transformer layer bigbird is {layer[('full', last)]['seconds'] / layer[('bigbird', last)]['seconds']:.1f}x "
                 f"faster than full at {_kb(last)}")
    return [text + "."]


def _longest_table(recorded: Path) -> pd.DataFrame | None:
    rows = []
    for name in ("scaling_train_cpu", "scaling_long_cpu"):
        path = recorded / name / "scaling.json"
        if not path.is_file():
            continue
        for entry in _read_json(path).get("summary", {}).get("longest", []):
            rows.append({"sweep": name, "curve": _series(entry), "mode": entry["mode"], "depth": entry["depth"],
                         "dim": entry["dim"], "precision": entry["precision"], "checkpointing": entry["checkpoint"],
                         "longest that fitted (bp)": f"{entry['longest_ok']:,}" if entry.get("longest_ok") else "-",
                         "shortest out of memory (bp)": f"{entry['shortest_oom']:,}" if entry.get("shortest_oom") else "-"})
    return pd.DataFrame(rows) if rows else None


# One attention layer: live on this machine, beside the recorded full-width run ------------------------------
def _attention_curves(records: Sequence[dict], suffix: str, key: str, style: str, failures: bool) -> list[dict]:
    """One curve per kind; lengths that ran out of memory are marked only on the memory panel."""
    curves = []
    for kind in ("full", "chunked", "bigbird"):
        series = sorted((r for r in records if r["kind"] == kind), key=lambda r: r["length"])
        ok = [r for r in series if r["status"] == "ok" and r[key] > 0]
        if ok:
            curves.append({"x": [r["length"] for r in ok], "y": [r[key] for r in ok], "style": style,
                           "failed": [r["length"] for r in series if r["status"] == "oom"] if failures else [],
                           "label": f"{kind}, {suffix}", "color": KIND_COLOURS[kind]})
    return curves


def _live_attention_section(report: Report, run: Path, recorded: Path | None, numbers: dict) -> list[str]:
    from .plots import length_curves

    live_path = run / "attention" / "attention.json"
    recorded_path = recorded / "attention_cpu" / "attention.json" if recorded is not None else None
    live = _read_json(live_path) if _done(run / "attention") and live_path.is_file() else None
    old = _read_json(recorded_path) if recorded_path is not None and recorded_path.is_file() else None
    if live is None and old is None:
        return []
    report.section("One attention layer: measured here, beside the recorded full width",
                   "Forward and backward of a single attention layer (batch 1), each point in its own process: "
                   "full attention's time and memory grow with the square of the positions, BigBird's linearly. "
                   "Solid lines: this run on this machine; dashed: the recorded run at the published width.")
    sources, curves_time, curves_memory, rows = [], [], [], []
    for document, label, style, source in ((live, "here", "-", "attention/attention.json"),
                                           (old, "recorded", "--", "benchmarks/results/attention_cpu/attention.json")):
        if document is None:
            continue
        sources.append(source)
        settings = document["settings"]
        suffix = f"{label} (dim {settings['dim']})"
        curves_time += _attention_curves(document["records"], suffix, "median_s", style, failures=False)
        curves_memory += _attention_curves(document["records"], suffix, "peak_memory_mb", style, failures=True)
        for record in document["records"]:
            rows.append({"run": label, "dim": settings["dim"], "heads": settings["heads"], "kind": record["kind"],
                         "positions": record["length"], "status": record["status"],
                         "seconds": record.get("median_s", float("nan")),
                         "peak MB": record.get("peak_memory_mb", float("nan")),
                         "speed-up vs full": record.get("speedup_vs_full", float("nan")),
                         "memory vs full": record.get("memory_vs_full", float("nan"))})
        report.paragraph(f"{label.capitalize()}: {_machine_text(document['machine'])}, {document['created']}; "
                         f"senformer benchmark attention --dim {settings['dim']} --heads {settings['heads']} --lengths "
                         + ",".join(str(n * 128) for n in settings["lengths"]) + " --kinds " + " ".join(settings["kinds"])
                         + f" --repeats {settings['repeats']}")
    report.table(pd.DataFrame(rows), "One attention layer, forward + backward", source=sources)
    for curves, ylabel, what in ((curves_time, "forward + backward (s)", "time"),
                                 (curves_memory, "peak memory above set-up (MB)", "memory")):
        figure = new_figure(7.5, 4.6)
        length_curves(figure.subplots(), curves, "positions (128 bp each)", ylabel, f"One attention layer: {what}", log=True)
        report.figure(figure, f"One attention layer: {what} against positions (log-log)", source=sources)
    numbers["attention"] = {"table": rows, "source": sources}
    if live is None:
        return []
    records = {(r["kind"], r["length"]): r for r in live["records"] if r["status"] == "ok"}
    lengths = sorted({r["length"] for r in live["records"]})
    if len(lengths) < 2 or not all((k, n) in records for k in ("full", "bigbird") for n in (lengths[0], lengths[-1])):
        return []
    first, last = lengths[0], lengths[-1]

    def growth(kind: str, key: str) -> float:
        return records[(kind, last)][key] / records[(kind, first)][key]

    return [f"One attention layer measured here (dim {live['settings']['dim']}, attention/attention.json): from "
            f"{first:,} to {last:,} positions ({last // first}x) full attention's time grows {growth('full', 'median_s'):.1f}x "
            f"and its memory {growth('full', 'peak_memory_mb'):.1f}x, bigbird's {growth('bigbird', 'median_s'):.1f}x and "
            f"{growth('bigbird', 'peak_memory_mb'):.1f}x; at {last:,} positions bigbird takes "
            f"{records[('bigbird', last)]['median_s'] / records[('full', last)]['median_s']:.2f} of full's time and "
            f"{records[('bigbird', last)]['peak_memory_mb'] / records[('full', last)]['peak_memory_mb']:.2f} of its memory."]


# The accuracy study (senformer study accuracy) -------------------------------------------------------------
STUDY_METRICS = ("pooled", "pooled/long-range")


def read_accuracy_study(path: Path) -> tuple[pd.DataFrame, dict]:
    """The table of an accuracy study's ``study.json``: per model its row, name, description, steps, seeds,
    mean +- SD over seeds of the pooled Pearson r (all and long-range tracks) and the difference from row 1
    with its 95% bootstrap interval. The schema read (written by ``senformer study accuracy``)::

        {"models": [{"name", "row", "description", "steps", "seeds": [...],
                     "metrics": {"pooled": {"mean", "sd", "values"}, "pooled/long-range": {...}, ...},
                     "minus_row1": {"pooled": {"difference", "low", "high"}, ...}}, ...],
         "attention_matters": {"loss_on_long_range", "required_loss", "met"}, "machine": {...}, ...}
    """
    record = _read_json(path)
    models = record.get("models")
    if not isinstance(models, list) or not models:
        raise UserError(f"{path}: no 'models' list; not a study.json of `senformer study accuracy`")
    rows = []
    for index, model in enumerate(models):
        missing = [key for key in ("name", "row", "metrics") if key not in model]
        if missing:
            raise UserError(f"{path}: models[{index}] lacks {', '.join(missing)}")
        row: dict[str, Any] = {"row": str(model["row"]), "model": model["name"],
                               "description": model.get("description", ""),
                               "steps": model.get("steps") if model.get("steps") is not None else "-",
                               "seeds": len(model.get("seeds", []))}
        for metric in STUDY_METRICS:
            value = model["metrics"].get(metric) or {}
            mean, sd = value.get("mean"), value.get("sd")
            row[f"{metric} r"] = "-" if mean is None else f"{mean:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
            difference = (model.get("minus_row1") or {}).get(metric)
            row[f"{metric} minus row 1 [95% CI]"] = "-" if not difference else (
                f"{difference['difference']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]")
        rows.append(row)
    return pd.DataFrame(rows), record


def _accuracy_study_section(report: Report, path: Path | None, numbers: dict) -> list[str]:
    report.section("Why the S-Enformer report's sparse model lost accuracy (the accuracy study)")
    if path is None or not path.is_file():
        where = str(path) if path is not None else "benchmarks/results/accuracy_study/study.json"
        report.paragraph(f"Not run yet: {where} is absent. The study trains rows 1-7 (full attention, attention "
                         "removed, BigBird zero-shot, fine-tuned, fresh layers ours and the report's) over three "
                         f"seeds and takes hours on this machine. Run it from a clone with: {STUDY_COMMAND} "
                         "(`--quick`: one seed, a quarter of the steps); the next demo report shows its table.")
        numbers["accuracy_study"] = {"status": "absent", "path": where}
        return [f"Accuracy study: not run yet ({where} absent); run {STUDY_COMMAND.split('   #')[0]} and rerun the demo's report."]
    table, record = read_accuracy_study(path)
    machine = record.get("machine") or {}
    report.paragraph("Rows as in the study's write-up (docs/accuracy-study.md): mean ± SD over seeds of the pooled "
                     "Pearson r on the test split, and each row's difference from row 1 with its bootstrap 95% "
                     "interval." + (f" Machine: {_machine_text(machine)}." if machine else ""))
    quick = " (quick run)" if (record.get("run") or {}).get("quick") else ""
    report.table(table, f"Accuracy study: pooled Pearson r per row{quick}", source=str(path))
    numbers["accuracy_study"] = {"table": table.to_dict(orient="records"), "source": str(path)}
    for name in ("curves.png", "per_example.png"):
        png = path.parent / name
        if png.is_file():
            report.figure(png.read_bytes(), f"Accuracy study: {name.removesuffix('.png').replace('_', ' ')}",
                          source=str(png))
    check = record.get("attention_matters") or {}
    models = {m["name"]: m for m in record["models"]}
    parts = []
    def longest(row: str) -> list[dict]:
        # A row's longest-trained model at the row's own learning rate (rows 5-7 are also reported earlier).
        chosen = [m for m in record["models"] if str(m["row"]) == row and m.get("lr_factor") is None]
        return [max(chosen, key=lambda m: m.get("steps") or 0)] if chosen else []

    for model in [m for row in ("1", "2", "3", "5", "6") for m in longest(row)]:
        mean = (model["metrics"].get("pooled/long-range") or {}).get("mean")
        if mean is not None:
            parts.append(f"row {model['row']} {model['name']} {mean:.3f}")
    run = record.get("run") or {}
    kind = (f"quick run: {len(record.get('settings', {}).get('seeds', []))} seed, a quarter of the steps, so "
            "row 1 is under-trained; " if run.get("quick") else "")
    text = f"Accuracy study ({kind}{path.name}, {len(models)} models): long-range pooled r " + ", ".join(parts)
    if check.get("loss_on_long_range") is not None:
        text += (f"; removing attention loses {check['loss_on_long_range']:.3f} on the long-range tracks "
                 f"({'meets' if check.get('met') else 'misses'} the study's {check.get('required_loss')} bar)")
    return [text + "."]
