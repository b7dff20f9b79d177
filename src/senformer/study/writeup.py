"""The study's prose, worded from ``study.json``'s record alone: :func:`summary_markdown` (the README's short
table, ``summary.md``), :func:`write_docs` (the write-up, e.g. docs/accuracy-study.md) and :func:`answer`
(its conclusion: each contrast's size and whether its interval excludes 0). Every number in the text is one
the study wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..io import atomic_write_text
from .runs import FRESH_ROWS, ROWS


# A record of the issue-14 design (no decision rules) says what replaces it and that it has not run yet.
REDESIGN_NOTE = (
    "> **A redesigned study is built and awaits its recorded run** (issue 23): graded long-range signals (hard "
    "band, power-law decay, distance-agnostic count), the report's layer as the report built it, positions "
    "separated from key size, rotary and absolute positions, a retrained no-attention model, row 1 continued "
    "and trained to a plateau, a deeper model, 5 seeds for the conclusion rows, intervals over seeds, and "
    "decision rules fixed beforehand in `benchmarks/study/settings.json`: `benchmarks/study/run.sh WORK_DIR` "
    "runs it and regenerates this page. Until then this page is the earlier design's recorded run: its "
    "long-range tracks are all hard-band tracks, its intervals resample test records only (not seeds), and "
    "its row 6 changes key size together with positions, so its conclusion about positions is not established.")


# What the real-weights protocol measures (every write-up says it; it has not run here: no weights, genome or GPU).
REAL_WEIGHTS_SECTION = [
    "## The same study on real weights",
    "",
    "`senformer study real-weights --weights enformer --fasta hg38.fa --out WORK` (`--estimate` first prints its "
    "cost on the current device) runs rows 3-6 on converted Enformer weights (11 layers, 1,536 positions, BigBird "
    "blocks of 64) and measures exactly one thing: how closely each sparse variant reproduces the unmodified "
    "model's own predictions, its *teacher correlation* (pooled Pearson over the test windows' bins, per track, "
    "mean over every 19th human track), when only its attention layers are trained on the unmodified model's "
    "outputs (distillation). The teacher is the weights as converted, with full attention; windows of 196,608 bp "
    "tile the genome (at most 1% N), chr8 is held out for scoring and chr9 for validation, every other chromosome "
    "trains (2,048 / 64 / 256 windows by default). Rows: 3 the weights run with BigBird and relative positions, "
    "untrained; 4 the same fine-tuned attention-only; 5 fresh BigBird layers with relative positions; 6 fresh "
    "report layers (no relative positions, key size 192); each 2,000 steps at lr 1e-4 per seed (0, 1, 2). It "
    "reports row 6 - row 5 and row 5 - row 4 with a paired interval over seeds and a two-level bootstrap. It does "
    "not measure accuracy against experimental data (the teacher's own error bounds that), and it does not repeat "
    "the synthetic study's other rows.",
]


def summary_markdown(record: Mapping[str, Any]) -> str:
    """A short table for the README (``summary.md``): pooled Pearson overall and on the long-range tracks,
    mean ± SD over seeds, and the difference from row 1 with its interval; commit and seeds named."""
    run = record.get("run", {})
    seeds = ", ".join(map(str, record["settings"]["seeds"]))
    lines = [f"Accuracy study (`{run.get('command', '')}`, commit `{run.get('commit')}`, seeds {seeds}"
             + ("; **quick run**" if run.get("quick") else "") + "; test split, pooled Pearson):", "",
             "| row | model | all tracks | long-range | long-range minus row 1 [95%] |", "|---|---|---|---|---|"]
    for model in record["models"]:
        metrics = model["metrics"]
        lines.append(f"| {model['row']} | `{model['name']}` | {_format(metrics.get('pooled'))} | "
                     f"{_format(metrics.get('pooled/long-range'))} | {_interval(model['minus_row1'].get('pooled/long-range'))} |")
    return "\n".join(lines) + "\n"


def _format(value: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not value or value.get("mean") is None:
        return "-"
    text = f"{value['mean']:.{digits}f}"
    if value.get("sd") is not None:
        text += f" ± {value['sd']:.{digits}f}"
    values = [v for v in value.get("values", [])]
    if len(values) > 1:
        text += " (" + ", ".join("nan" if v is None else f"{v:.{digits}f}" for v in values) + ")"
    return text


def _interval(difference: Mapping[str, Any] | None) -> str:
    if not difference or difference.get("difference") is None:
        return "-"
    return f"{difference['difference']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"


def write_docs(record: Mapping[str, Any], path: Path, results: Path) -> Path:
    """The write-up (markdown) generated from ``record`` (study.json): every number in it is one the
    study wrote; figures are linked relative to ``path``."""
    settings = record["settings"]
    run = record.get("run", {})
    quick = run.get("quick", False)
    link = Path(os.path.relpath(Path(results).resolve(), Path(path).resolve().parent))
    seeds = settings["seeds"]
    short, long = settings["finetune_steps"], settings["finetune_steps"] * settings["fresh_multiple"]
    model = record["model"]
    data = record["data"]["settings"]
    lines = [
        "# Why the S-Enformer report lost accuracy: a controlled study",
        "",
        "<!-- generated by `senformer study accuracy` from study.json; do not edit by hand -->",
        "",
    ]
    if "decisions" not in record:
        lines += [REDESIGN_NOTE, ""]
    if quick:
        lines += ["> **Quick run** (`--quick`: one seed, a quarter of the steps): a smoke test of the study, not its",
                  "> result; its row 1 is far from trained. The full study (3 seeds, all steps) is the same command",
                  "> without `--quick`: `" + run.get("full_command", "senformer study accuracy") + "`, which regenerates "
                  "this page.", ""]
    lines += [
        f"Command: `{run.get('command', '')}` at commit `{run.get('commit')}`; seeds {', '.join(map(str, seeds))}; "
        f"{run.get('parallel')} jobs of one thread each; measured time {run.get('seconds', 0) / 60:.1f} min "
        f"({run.get('sessions', 1)} invocation(s), resumed ones included) on "
        f"{record['machine'].get('cpu')} ({record['machine'].get('usable_cpus', record['machine'].get('cpu_count'))} "
        f"cores, torch {record['machine'].get('torch')}).",
        "",
        *_estimate_lines(record.get("estimate"), settings),
        "## Set-up",
        "",
        f"- Data: `senformer data synthetic --size {record['data']['size']} --seed {record['data']['seed']}` "
        f"({data['sequence_length']:,} bp records, {data['num_tracks']} tracks, {data['train']}/{data['valid']}/{data['test']} "
        f"train/valid/test; enhancers {data['long_range_bp'][0]:,}-{data['long_range_bp'][1]:,} bp from promoters, "
        f"enhancer motifs at {data.get('enhancer_rate') or data['motif_rate']} per kb each, CAGE baseline "
        f"{data.get('long_range_baseline', 0.2)}, {data.get('cage_kernel', 'sharp')} CAGE peaks); "
        f"long-range tracks {record['data']['long_range_tracks']}. Every seed uses this one dataset.",
        f"- Model: dim {model['dim']}, {model['depth']} layers, {model['heads']} heads, key size {model['key_size']}; "
        f"BigBird blocks of {model['block_size']} positions: {data['sequence_length'] // 128 // model['block_size']} blocks, each "
        f"query block attending {model['num_window_blocks']} window + {model['num_global_blocks']} global + "
        f"{model['num_random_blocks']} random.",
        f"- Steps: row 1 {settings['full_steps']} (lr {settings['full_learning_rate']}); row 4 {short}; rows 5-7 {long} "
        f"(lr {settings['finetune_learning_rate']}, constant after {settings['finetune_warmup_steps']} warm-up steps), "
        f"reported at {short}" + (f" and {long}" if long != short else "") + "; "
        + (f"learning-rate runs x{', x'.join(f'{f:.3g}' for f in settings['lr_factors'])} for rows 5 and 6, seed "
           f"{seeds[0]}, {short} steps" if settings["lr_factors"] else "no learning-rate runs")
        + f". Batch {settings['batch_size']}.",
        "- A seed sets initialisation, data order, augmentation, dropout and `attention_seed`.",
        "- Metrics on the test split: pooled Pearson per track (mean over tracks), per-example Pearson; "
        "\"r with row 1\": pooled correlation of the predictions with row 1's; \"beats row 1\": share of test "
        "examples whose per-example Pearson (mean over the tracks) exceeds row 1's. Mean ± SD over seeds (the "
        f"seed values in brackets); differences from row 1 with a bootstrap 95% interval ({settings['bootstrap']} "
        "resamples of the test examples, the same draw for every seed).",
        "",
        "## Results",
        "",
        "| row | model | pooled, all | long-range | DNase/ATAC | ChIP-Histone | ChIP-TF | CAGE | per-example | r with row 1 (long-range) | beats row 1 (long-range) | minus row 1, all [95%] | minus row 1, long-range [95%] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_record in record["models"]:
        m = model_record["metrics"]
        lines.append("| " + " | ".join([
            model_record["row"], f"`{model_record['name']}`", _format(m.get("pooled")), _format(m.get("pooled/long-range")),
            _format(m.get("pooled/DNase/ATAC")), _format(m.get("pooled/ChIP-Histone")), _format(m.get("pooled/ChIP-TF")),
            _format(m.get("pooled/CAGE")), _format(m.get("per_example")),
            _format(m.get("r_with_row1/long-range")), _format(m.get("beats_row1/long-range")),
            _interval(model_record["minus_row1"].get("pooled")), _interval(model_record["minus_row1"].get("pooled/long-range")),
        ]) + " |")
    check = record["attention_matters"]
    present = {model_record["key"] for model_record in record["models"]} | {"full", "control"}
    lines += [
        "",
        f"Rows: {'; '.join(f'{row} {key}: {description}' for key, (row, description) in ROWS.items() if key in present)}. "
        f"`NAME@STEPS` is a model after that many steps of its run.",
        "",
        "**Does attention matter on this data?** Removing it (row 2) costs "
        + (f"{check['loss_on_long_range']:.3f}" if check["loss_on_long_range"] is not None else "-")
        + " pooled Pearson on the long-range tracks (required: at least "
        f"{check['required_loss']:.2f} and more than {check['required_seed_sds']:.0f} seed SDs of row 1, "
        + (f"SD {check['full_model_seed_sd']:.4f}" if check["full_model_seed_sd"] is not None else "SD not measured with one seed")
        + f"): **{'met' if check['met'] else 'not met'}**.",
        "",
        "**The two causes, separated** (mean over seeds of the difference, bootstrap 95% interval):",
        "",
        "| contrast | pooled, all | pooled, long-range |",
        "|---|---|---|",
    ]
    for label, contrast in record["contrasts"].items():
        lines.append(f"| {label}: `{contrast['first']}` - `{contrast['second']}` | {_interval(contrast['pooled'])} | "
                     f"{_interval(contrast['pooled/long-range'])} |")
    starts = {key: [c["points"][0]["pearson/long-range"] for c in record["curves"].values()
                    if c["key"] == key and c["lr_factor"] is None and c["points"] and c["points"][0]["step"] == 0]
              for key in FRESH_ROWS}
    if all(starts.values()):
        lines += ["", "Fresh attention layers start with a zero output projection, so at step 0 rows 5-7 are row 2: "
                  "their validation long-range Pearson at step 0 is " + ", ".join(
                      f"{key} {np.mean([v for v in values if v is not None]):.3f}" for key, values in starts.items())
                  + " (mean over seeds; the curves start there)."]
    lines += ["", *(verdict_lines(record) if "decisions" in record else [answer(record)]), "",
              f"![training curves]({link / 'curves.png'})", "",
              f"![per-example comparison with row 1]({link / 'per_example.png'})", "",
              f"![receptive field]({link / 'receptive_field.png'})", "",
              f"Numbers: `{link / 'study.json'}` and `{link / 'table.csv'}` (every seed's value). Rerun and regenerate "
              f"this page: `{run.get('full_command', run.get('command', ''))}`.", "", *REAL_WEIGHTS_SECTION, ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def verdict_lines(record: Mapping[str, Any]) -> list[str]:
    """The verdicts of the rules fixed before the run (the settings file's digest named): each rule's one
    allowed sentence, then both intervals of every contrast behind it. Nothing else is concluded."""
    rules = record.get("rules", {})
    lines = [f"## Verdicts", "",
             f"Decided by the rules in `{rules.get('file')}` (sha256 `{str(rules.get('sha256'))[:16]}`), fixed before "
             "the run; each sentence is the one its rule allows for the verdict reached.", ""]
    if record.get("run", {}).get("quick"):
        lines += ["**Smoke run**: too few seeds and steps for the rules to decide anything; the sentences below "
                  "show the mechanism only.", ""]
    for decision in record["decisions"]:
        lines.append(f"- **{decision['name']}** ({decision['verdict']}): {decision['statement']}")
    coverage = record.get("attended_blocks")
    if coverage:
        lines += ["", f"Sparsity: a sparse query block attends {coverage['per_head']:.1f} of {coverage['blocks']} key "
                  f"blocks per head, but {coverage['across_heads']:.1f} across the heads together (random blocks "
                  "differ per head), so what the layer as a whole can see is larger than one head's share."]
    plateau = record.get("plateau")
    if plateau:
        rule = plateau["rule"]
        lines += ["", f"Row 1p's stopping rule, fixed beforehand: validation every {rule['every']} steps; stop once the "
                  f"best long-range Pearson of the last {rule['patience']} points beats the best before them by less "
                  f"than {rule['min_gain']}, or at {rule['max_steps']} steps. It stopped at step(s) "
                  + ", ".join(f"{step} (seed {seed})" for seed, step in plateau["stopped_at"].items()) + "."]
    lines += ["", "| rule | tracks | difference | paired t over seeds [95%] | two-level bootstrap [95%] | seeds |",
              "|---|---|---|---|---|---|"]
    for decision in record["decisions"]:
        numbers = decision["numbers"]
        for part in numbers["contrasts"] if decision["kind"] == "ordered" else [numbers]:
            lines.append(f"| {decision['name']}: `{part['first']}` - `{part['second']}` | {part['tracks']} | "
                         f"{part['paired']['difference']:+.3f} | {_bounds(part['paired'])} | "
                         f"{_bounds(part['bootstrap'])} | {len(part['seeds'])} |")
    return lines


def _bounds(interval: Mapping[str, Any]) -> str:
    return "-" if interval.get("low") is None else f"[{interval['low']:+.3f}, {interval['high']:+.3f}]"


def _estimate_lines(estimate: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> list[str]:
    if not estimate:
        return []
    rates = ", ".join(f"{key} {value:.1f}" for key, value in estimate["examples_per_second"].items())
    return [f"Measured first (`--estimate`: {estimate['steps_measured']} steps of each kind of run, one at a time, "
            f"training examples per second: {rates}; inference {estimate['inference_examples_per_second']:.1f}): "
            f"{estimate.get('for', 'the study')} was projected at {estimate['total_job_minutes']:.0f} job-minutes, "
            f"{estimate['projected_minutes']:.0f} min with {estimate['parallel']} jobs.", ""]


def answer(record: Mapping[str, Any]) -> str:
    """The conclusion, worded from the numbers: each contrast's size and whether its interval excludes 0."""
    contrasts = record["contrasts"]

    def find(prefix: str) -> Mapping[str, Any] | None:
        return next((c["pooled/long-range"] for label, c in contrasts.items() if label.startswith(prefix)), None)

    def clear_loss(difference: Mapping[str, Any] | None) -> bool:
        return bool(difference and difference.get("high") is not None and difference["high"] < 0)

    def describe(difference: Mapping[str, Any] | None) -> str:
        if not difference or difference.get("difference") is None:
            return "not measured"
        text = f"{difference['difference']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"
        if difference["low"] > 0:
            return text + " (a gain)"
        return text + ("" if clear_loss(difference) else " (the interval includes 0)")

    fresh = find("fresh layer")
    positions = find("no relative positions (row 6")
    positions_long = find("no relative positions, longer")
    zero_shot = find("sparsity alone")
    steps = record["settings"]["finetune_steps"]
    parts = [
        "**Answer (long-range tracks, pooled Pearson, mean over seeds, 95% interval).** Sparsity alone, with our "
        f"relative positions and row 1's weights (row 3 - row 1): {describe(zero_shot)}. Fresh instead of trained "
        f"attention layers (row 5 - row 4, the same layer and {steps} steps): {describe(fresh)}. No relative "
        f"positions and the report's key size (row 6 - row 5, both fresh): {describe(positions)} after {steps} "
        + (f"steps, {describe(positions_long)} after {record['settings']['fresh_multiple']}x as many."
           if record["settings"]["fresh_multiple"] > 1 else "steps (rows 5-7 trained no longer).")
    ]
    causes = {"fresh, untrained attention layers": fresh, "the missing relative positions": positions}
    losses = {name: value["difference"] for name, value in causes.items() if clear_loss(value)}
    if not losses:
        parts.append("Neither cause costs accuracy beyond the test-set and seed noise at this scale.")
    elif len(losses) == 1:
        (name, size), = losses.items()
        parts.append(f"Only {name} cost accuracy beyond the noise ({size:+.3f}).")
    else:
        larger = min(losses, key=losses.get)  # the more negative difference is the larger loss
        other = next(name for name in losses if name != larger)
        parts.append(f"Both cost accuracy; {larger} more ({losses[larger]:+.3f}) than {other} ({losses[other]:+.3f}).")
    check = record["attention_matters"]
    if not check["met"]:
        loss = check["loss_on_long_range"]
        parts.append("But removing attention cost only " + ("an unmeasured amount" if loss is None else f"{loss:.3f}")
                     + " here, below the study's bar: on this run attention barely matters, so these contrasts "
                     "cannot say what the report's gap comes from.")
        return " ".join(parts)
    sparsity_harmless = bool(zero_shot and zero_shot.get("low") is not None and zero_shot["low"] <= 0 <= zero_shot["high"])
    if sparsity_harmless and losses:
        parts.append("Block sparsity itself cost nothing measurable here, so for the real model the report's gap "
                     "points at how its layers were made, not at BigBird: converted Enformer attention weights run "
                     "with BigBird and relative positions (row 3), fine-tuned (row 4), are the ones to try.")
    paragraphs = [" ".join(parts)]
    paragraphs += [text for text in (_closing_text(positions, positions_long, record),
                                     _learning_rate_text(record), _prediction_text(record, losses)) if text]
    return "\n\n".join(paragraphs)


def _long_range(record: Mapping[str, Any], key: str, steps: int | None = None, lr_factor: float | None = None,
                field: str = "minus_row1") -> Mapping[str, Any] | None:
    """A model's long-range entry (``minus_row1``: its difference from row 1; ``metrics``: its values)."""
    for model in record["models"]:
        if model["key"] == key and (steps is None or model["steps"] == steps) and model["lr_factor"] == lr_factor:
            return model[field].get("pooled/long-range")
    return None


def _closing_text(at_steps: Mapping[str, Any] | None, longer: Mapping[str, Any] | None,
                  record: Mapping[str, Any]) -> str | None:
    """Whether the relative-position gap narrows when the fresh layers train 4x longer (Figure 5's question)."""
    if not at_steps or not longer or at_steps.get("difference") is None or longer.get("difference") is None:
        return None
    first, last = at_steps["difference"], longer["difference"]
    multiple = record["settings"]["fresh_multiple"]
    steps = record["settings"]["finetune_steps"]
    overlap = longer["low"] <= at_steps["high"] and at_steps["low"] <= longer["high"]
    trend = ("does not narrow" if abs(last) >= 0.8 * abs(first) else f"narrows by {abs(first) - abs(last):.3f}")
    report_first = _long_range(record, "fresh-report", steps)
    report_last = _long_range(record, "fresh-report", steps * multiple)
    ours_last = _long_range(record, "fresh-ours", steps * multiple)
    text = (f"**Is the gap closing?** With {multiple}x the steps the relative-position gap (row 6 - row 5) "
            f"{trend}: {first:+.3f} after {steps} steps, {last:+.3f} after {steps * multiple}"
            + (" (the intervals overlap)." if overlap else ".") + " Both rows still improve")
    if report_first and report_last and ours_last:
        text += (f": row 6 goes from {report_first['difference']:+.3f} to {report_last['difference']:+.3f} against "
                 f"row 1, row 5 reaches {ours_last['difference']:+.3f}")
    return text + ("; the report's layer climbs alongside ours, not towards it." if trend == "does not narrow"
                   else ".")


def _learning_rate_text(record: Mapping[str, Any]) -> str | None:
    """Row 6 - row 5 on one seed at each learning rate tried: is the gap a learning-rate artefact?"""
    steps = record["settings"]["finetune_steps"]
    gaps = {}
    for factor in [None, *record["settings"].get("lr_factors", [])]:
        ours = _long_range(record, "fresh-ours", steps, factor, field="metrics")
        report = _long_range(record, "fresh-report", steps, factor, field="metrics")
        if ours and report:
            gaps[1.0 if factor is None else factor] = report["values"][0] - ours["values"][0]  # the first seed
    if len(gaps) < 2:
        return None
    listed = ", ".join(f"x{factor:.3g} {gap:+.3f}" for factor, gap in sorted(gaps.items()))
    base = gaps.get(1.0)
    artefact = not all(gap < 0 for gap in gaps.values()) or (
        base is not None and min(abs(gap) for gap in gaps.values()) < 0.5 * abs(base))
    verdict = ("the gap depends on the learning rate, so part of it may be a tuning artefact" if artefact else
               "row 6 trails row 5 at every learning rate tried, so the gap is not a learning-rate artefact")
    return (f"**Learning rate** (rows 5 and 6, seed {record['settings']['seeds'][0]}, {steps} steps, long-range "
            f"row 6 - row 5 at each multiple of the learning rate): {listed}: {verdict}.")


def _prediction_text(record: Mapping[str, Any], losses: Mapping[str, float]) -> str | None:
    """What the contrasts predict for the published model (only when attention matters on the data)."""
    if not record["attention_matters"]["met"]:
        return None
    steps = record["settings"]["finetune_steps"]
    multiple = record["settings"]["fresh_multiple"]
    finetune = _long_range(record, "finetune", steps)
    fresh_ours = _long_range(record, "fresh-ours", steps * multiple)
    zero_shot = _long_range(record, "zero-shot")
    everything = _long_range(record, "report-all", steps * multiple)
    if not (finetune and fresh_ours and zero_shot and everything):
        return None
    model = record["settings"]["model"]
    attended = model["num_window_blocks"] + model["num_global_blocks"] + model["num_random_blocks"]
    blocks = record["data"]["settings"]["sequence_length"] // 128 // model["block_size"]
    text = "**What it predicts for the real model.** "
    if "the missing relative positions" in losses:
        text += ("The report's layers, without relative positions, should leave a gap that more attention-only "
                 "training narrows slowly at best. ")
    reach = (f"come within {abs(finetune['difference']):.3f} of" if finetune["difference"] < 0
             else f"end {finetune['difference']:+.3f} against")
    text += (f"BigBird layers with relative positions {reach} the full "
             f"model after {steps} steps of attention-only fine-tuning from its weights (row 4), and fresh ones "
             f"reach {fresh_ours['difference']:+.3f} after {steps * multiple} (row 5). Converted Enformer weights "
             f"run with BigBird without fine-tuning (row 3) lose {abs(zero_shot['difference']):.3f} here, on a "
             f"pattern sparser than the published one ({attended} of {blocks} blocks attended per query block "
             "against 8 of 24), so a short attention-only fine-tune of converted weights is the path to take. Training every "
             f"weight with the report's layer (row 7) still ends {everything['difference']:+.3f} on the long-range "
             "tracks: the trunk can improve the local tracks, but it does not stand in for the positions.")
    return text
