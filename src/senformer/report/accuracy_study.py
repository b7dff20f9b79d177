"""The accuracy study in the demo's report: its table read from ``study.json`` (written by ``senformer study
accuracy``, see :mod:`senformer.study`) and a finding worded from it; when it has not been run, how to run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from .page import Report
from .sources import machine_text, read_json

# Where `benchmarks/study/run.sh` (``senformer study accuracy --results ...``) writes the accuracy study.
STUDY_RESULT = Path("accuracy_study") / "study.json"
STUDY_COMMAND = "benchmarks/study/run.sh   # senformer study accuracy --results benchmarks/results/accuracy_study"
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
    record = read_json(path)
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


def accuracy_study_section(report: Report, path: Path | None, numbers: dict) -> list[str]:
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
                     "interval." + (f" Machine: {machine_text(machine)}." if machine else ""))
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
    if record.get("decisions"):
        text += "; the rules fixed before the run decide: " + ", ".join(
            f"{d['name']} {d['verdict']}" for d in record["decisions"])
    else:
        # The issue-14 design: its hard-band data and record-only intervals cannot settle the cause.
        text += ("; an earlier design (hard-band signals only, intervals without seed variance): it does not "
                 "establish that missing positions caused the report's loss, and its redesign awaits its run")
    return [text + "."]
