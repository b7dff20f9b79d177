"""The report's benchmark sections: the full-width scaling sweep recorded on the development machine
(Figures 1-3, ``benchmarks/results/scaling_*``, with each part's commit, machine and command), and one attention
layer measured live by the demo beside the recorded run at the published width."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..plots import length_curves, new_figure
from .page import Report
from .sources import machine_text, read_json, stage_finished

KIND_COLOURS = {"full": "tab:blue", "chunked": "tab:green", "bigbird": "tab:red", "control": "tab:gray",
                "enformer-pytorch": "tab:gray"}


def _bp(length: float) -> str:
    return f"{int(length):,} bp"


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


def _provenance(document: dict, folder: str) -> pd.DataFrame:
    rows = []
    for index, entry in enumerate(document.get("runs", [])):
        machine = entry.get("machine", {})
        commit = machine.get("senformer_commit") or "?"
        changes = machine.get("senformer_uncommitted_changes")
        rows.append({"run": index + 1, "started (UTC)": entry.get("started", "?"),
                     "commit": commit[:7] + (" + uncommitted changes" if changes else ""),
                     "machine": machine_text(machine), "command": scaling_command(entry["settings"])
                     + f" --out {folder}"})
    return pd.DataFrame(rows)


def _series(point: dict) -> str:
    return "enformer-pytorch" if point.get("implementation") == "enformer-pytorch" else point["attention"]


def recorded_scaling_section(report: Report, recorded: Path | None, numbers: dict) -> list[str]:
    folder = recorded / "scaling_train_cpu" if recorded is not None else None
    report.section("Memory and speed at full width (recorded, Figures 1-3)")
    if folder is None or not (folder / "scaling.json").is_file():
        report.paragraph("The recorded full-width sweep (benchmarks/results/scaling_train_cpu/ in the senformer "
                         "repository) was not found beside this installation; run the demo from a clone to show it, "
                         "or record it with the command in docs/scaling.md.")
        return []
    label = f"benchmarks/results/{folder.name}"
    document = read_json(folder / "scaling.json")
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
            f"{machine_text(document['runs'][0]['machine'])}, commit "
            f"{(document['runs'][0]['machine'].get('senformer_commit') or '?')[:7]}): at {_bp(both_fit)} bigbird takes "
            f"{sparse['median_seconds']:.0f} s / {sparse['peak_rss_bytes'] / 1e9:.1f} GB per step against full's "
            f"{full['median_seconds']:.0f} s / {full['peak_rss_bytes'] / 1e9:.1f} GB")
    beyond = [n for n in lengths if n > both_fit and lookup.get(("full", deepest, n), {}).get("status") == "oom"
              and lookup.get(("bigbird", deepest, n), {}).get("status") == "ok"]
    if beyond:
        point = lookup[("bigbird", deepest, beyond[0])]
        text += (f"; at {_bp(beyond[0])} full runs out of the {cap:g} GB cap while bigbird fits in "
                 f"{point['peak_rss_bytes'] / 1e9:.1f} GB")
    layer = {(_series(p), p["length"]): p for p in per_layer}
    last = max((n for n in lengths if ("full", n) in layer and ("bigbird", n) in layer and layer[("bigbird", n)]["seconds"] > 0
                and layer[("full", n)]["seconds"] > 0), default=None)
    if last is not None:
        text += (f"; per transformer layer bigbird is {layer[('full', last)]['seconds'] / layer[('bigbird', last)]['seconds']:.1f}x "
                 f"faster than full at {_bp(last)}")
    return [text + "."]


def _longest_table(recorded: Path) -> pd.DataFrame | None:
    rows = []
    for name in ("scaling_train_cpu", "scaling_long_cpu"):
        path = recorded / name / "scaling.json"
        if not path.is_file():
            continue
        for entry in read_json(path).get("summary", {}).get("longest", []):
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


def live_attention_section(report: Report, run: Path, recorded: Path | None, numbers: dict) -> list[str]:
    live_path = run / "attention" / "attention.json"
    recorded_path = recorded / "attention_cpu" / "attention.json" if recorded is not None else None
    live = read_json(live_path) if stage_finished(run / "attention") and live_path.is_file() else None
    old = read_json(recorded_path) if recorded_path is not None and recorded_path.is_file() else None
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
        report.paragraph(f"{label.capitalize()}: {machine_text(document['machine'])}, {document['created']}; "
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

    def spread(kind: str, length: int) -> float:
        """max / min of a point's repeated timings (1.0 when only one was kept)."""
        times = [t for t in records[(kind, length)].get("times_s") or [] if t > 0]
        return max(times) / min(times) if len(times) > 1 else 1.0

    def time_growth(kind: str) -> str:
        # A change no larger than the repeats' own spread is noise, not a finding (one noisy timing once made
        # bigbird's time seem to fall with length).
        noise = max(spread(kind, first), spread(kind, last))
        value = growth(kind, "median_s")
        if max(value, 1 / value) <= noise:
            return f"changes only within timing noise (its repeats differ by up to {noise:.2f}x)"
        return f"grows {value:.1f}x"

    def time_share() -> str:
        share = records[("bigbird", last)]["median_s"] / records[("full", last)]["median_s"]
        noise = max(spread("bigbird", last), spread("full", last))
        if max(share, 1 / share) <= noise:
            return "the same time as full within timing noise"
        return f"{share:.2f} of full's time"

    repeats = live["settings"].get("repeats")
    return [f"One attention layer measured here (dim {live['settings']['dim']}, median of "
            f"{repeats} repeats, attention/attention.json): from "
            f"{first:,} to {last:,} positions ({last // first}x) full attention's time {time_growth('full')} "
            f"and its memory {growth('full', 'peak_memory_mb'):.1f}x, bigbird's time {time_growth('bigbird')} and its "
            f"memory {growth('bigbird', 'peak_memory_mb'):.1f}x; at {last:,} positions bigbird takes {time_share()} "
            f"and {records[('bigbird', last)]['peak_memory_mb'] / records[('full', last)]['peak_memory_mb']:.2f} of "
            "its memory."]
