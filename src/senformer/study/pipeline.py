"""The whole study from one call: :func:`run_study` prepares ``OUT``, runs every training run and every
seed's evaluation as jobs (two at a time, each after what it needs; a rerun resumes), then summarises and
writes the results and the write-up; :func:`estimate` times a few steps of each kind of run first and
projects the study's total time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import UserError
from ..io import write_json
from .evaluation import PER_SEED, _evaluate_in_subprocess, evaluation_folder, model_entries
from .results import summarise, write_results
from .runs import HEAD, ROW_1, Job, StudySettings, _machine, execute_run, prepare, run_jobs, run_name, study_runs
from .writeup import write_docs


# The whole study -----------------------------------------------------------------------------------------
def run_study(out: str | os.PathLike, settings: StudySettings, parallel: int = 2, fresh: bool = False,
              results: str | os.PathLike | None = None, docs: str | os.PathLike | None = None,
              command: str = "senformer study accuracy", extra: Mapping[str, Any] | None = None,
              log: Callable[[str], None] = print, rules: str | os.PathLike | None = None) -> Path:
    """Run (or resume) the whole study into ``out``, holding ``OUT.lock``; write ``study.json``, ``table.csv``,
    the figures and the per-seed files into ``results`` (default ``out/results``) and, with ``docs``, the
    write-up. With ``rules`` (the settings file, :mod:`.rules`) the record holds its sha256 and every rule's
    verdict. Returns the ``study.json`` path."""
    with _holding(Path(out)):
        return _run_study(Path(out), settings, parallel, fresh, results, docs, command, extra, log, rules)


def _holding(out: Path):
    """The lock of a whole study folder (``OUT.lock``): a second study or estimate into it is refused in one
    line, and a rerun resumes under it."""
    from ..outputs import DIRECTORY, Output

    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, but a directory is due there; choose another --out")
    return Output(out, DIRECTORY, command="study accuracy", grown=True)


def _run_study(out: Path, settings: StudySettings, parallel: int, fresh: bool, results: str | os.PathLike | None,
               docs: str | os.PathLike | None, command: str, extra: Mapping[str, Any] | None,
               log: Callable[[str], None], rules: str | os.PathLike | None = None) -> Path:
    from .rules import read_rules_file, settings_digest

    rule_values = read_rules_file(rules) if rules is not None else None
    started = time.perf_counter()
    prepare(out, settings, fresh)
    lock = threading.Lock()

    def locked_log(message: str) -> None:
        with lock:
            log(message)

    runs = study_runs(out, settings)
    jobs = [Job(run.name, (lambda run=run: execute_run(run, out, locked_log)), run.depends) for run in runs]
    for seed in settings.seeds:
        needed = tuple(run.name for run in runs if run.seed == seed)
        jobs.append(Job(f"evaluate-seed{seed}", (lambda seed=seed: _evaluate_in_subprocess(out, seed, locked_log)), needed))
    seconds = run_jobs(jobs, parallel, locked_log)
    # Every invocation's wall time, so a resumed study reports the time it took in total, not its last part.
    sessions_path = out / "sessions.json"
    sessions = json.loads(sessions_path.read_text(encoding="utf-8")) if sessions_path.is_file() else []
    sessions.append({"command": command, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "seconds": time.perf_counter() - started, "job_seconds": seconds})
    write_json(sessions_path, sessions, indent=1)
    record = summarise(out, settings, rule_values)
    record["run"] = {"command": command, "parallel": parallel, "seconds": sum(s["seconds"] for s in sessions),
                     "sessions": len(sessions), "commit": _commit(), **(extra or {})}
    if rules is not None:
        # The digest of the rules as read for this run: git history shows the file was committed before it.
        record["rules"] = {"file": str(rules), "sha256": settings_digest(rules)}
    results_dir = Path(results) if results is not None else out / "results"
    per_seed = [evaluation_folder(out, seed) / PER_SEED for seed in settings.seeds]
    path = write_results(record, results_dir, [file for file in per_seed if file.is_file()])
    if docs is not None:
        write_docs(record, Path(docs), results_dir)
    return path


def _commit() -> str | None:
    try:
        source = Path(__file__).resolve().parents[3]
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return result.stdout.strip() or None
    except OSError:
        return None


# Measuring before running --------------------------------------------------------------------------------
def estimate(out: str | os.PathLike, settings: StudySettings, steps: int = 20, parallel: int = 2,
             label: str = "the study", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time ``steps`` training steps of each kind of run (one at a time, one thread each) and project the
    study's total time with ``parallel`` jobs; written to ``OUT/estimate.json`` (holding ``OUT.lock``)."""
    with _holding(Path(out)):
        return _estimate(Path(out), settings, steps, parallel, label, log)


def _estimate(out: Path, settings: StudySettings, steps: int, parallel: int, label: str,
              log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from ..data.basenji import BasenjiDataset
    from ..evaluate import evaluate
    from ..weights import load_model

    prepare(out, settings, record=False)
    work = out / "estimate"
    shutil.rmtree(work, ignore_errors=True)
    probe = dataclasses.replace(settings, seeds=settings.seeds[:1], other_seeds=None, lr_factors=(), eval_every=0,
                                full_warmup_steps=1, finetune_warmup_steps=1)
    # One run of every kind, in the study's order (a run's dependencies come before it).
    runs = {}
    continued = {}  # a continuation trains at the rate of the run it goes on from
    for run in study_runs(work, probe):
        if run.continues is not None:
            continued.setdefault(run.key, next(r.key for r in runs.values() if r.name == run.continues))
        else:
            runs.setdefault(run.key, run)
    (work / "runs").mkdir(parents=True)
    os.symlink((out / "data").resolve(), work / "data")
    shutil.copy(out / "model.json", work / "model.json")
    rates: dict[str, float] = {}
    for key in runs:
        run = dataclasses.replace(runs[key], phases=(steps,))
        started = time.perf_counter()
        execute_run(run, work, log)
        log_path = work / "runs" / run.name / "log.jsonl"
        windows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if '"train"' in line]
        # The first window includes start-up; later windows are steady state.
        rates[key] = float(np.median([w["examples_per_s"] for w in windows[1:] or windows]))
        log(f"{key}: {rates[key]:.1f} examples/s ({time.perf_counter() - started:.0f} s for {steps} steps with start-up)")
    rates.update({key: rates[source] for key, source in continued.items()})
    torch.set_num_threads(1)
    model = load_model(work / "runs" / run_name(ROW_1, settings.seeds[0]) / "weights")
    dataset = BasenjiDataset(out / "data", "test", max_examples=64)
    started = time.perf_counter()
    evaluate({"probe": model}, dataset, HEAD, batch_size=settings.test_batch_size, progress=False)
    forward = 64 / (time.perf_counter() - started)  # examples per second, inference
    full = study_runs(out, settings)
    seconds: dict[str, float] = {}
    for run in full:
        steps_trained = run.phases[-1] - run.first_step
        train = steps_trained * settings.batch_size / rates[run.key]
        evaluations = (steps_trained // max(settings.eval_every, 1) + 1) * (settings.eval_examples or 256) / forward
        seconds[run.name] = train + evaluations + 10  # + start-up of each phase's process
    test_examples = int(json.loads((out / "data" / "statistics.json").read_text())["test_seqs"])
    receptive = 3 * settings.receptive_field_sequences * (settings.receptive_field_positions + 1)
    for seed in settings.seeds:
        models = len(model_entries(out, settings, seed))
        seconds[f"evaluate-seed{seed}"] = (2 * models * test_examples + receptive) / forward + 20
    # Two jobs at a time: the busiest slot sets the time (rows 5-7 are long and start early).
    slots = [0.0] * parallel
    for value in sorted(seconds.values(), reverse=True):
        slots[slots.index(min(slots))] += value
    # A plateau run is projected to its max_steps: an upper bound (the rule may stop it earlier).
    projection = {"for": label, "steps_measured": steps, "examples_per_second": rates,
                  "inference_examples_per_second": forward,
                  "job_seconds": seconds, "total_job_minutes": sum(seconds.values()) / 60,
                  "projected_minutes": max(slots) / 60, "parallel": parallel, "machine": _machine(),
                  "note": "measured one job at a time; two jobs at once on 2 free cores run at about the same rate each"}
    write_json(out / "estimate.json", projection, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    return projection
