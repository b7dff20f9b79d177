"""``senformer study accuracy``: the controlled study of why the S-Enformer report lost accuracy.

A thin layer over :mod:`senformer.study`: every row trains through ``senformer train`` subprocesses, two
(row, seed) jobs at a time with one thread each; a rerun skips finished runs and resumes killed ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from .options import MAX_THREADS, add_device_argument, add_set_argument, whole


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "study", help="controlled studies on synthetic data (accuracy: why the S-Enformer report lost accuracy)",
        description="Controlled studies on synthetic data; see docs/accuracy-study.md.",
    )
    studies = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    accuracy = studies.add_parser(
        "accuracy", help="the study's seven rows over 3 seeds: study.json, table.csv, figures and the write-up",
        description="Full attention from scratch, attention removed, BigBird zero-shot, attention-only "
        "fine-tuning with and without distillation, fresh BigBird layers (ours and the report's) on a frozen "
        "trunk and trained everywhere; mean +- SD over seeds and bootstrap intervals. Resumable.",
    )
    accuracy.add_argument("--out", required=True, help="work folder: data, runs, evaluations (and results/)")
    accuracy.add_argument("--results", help="folder for study.json, table.csv and the figures (default OUT/results)")
    accuracy.add_argument("--docs", help="write the markdown write-up here (e.g. docs/accuracy-study.md)")
    accuracy.add_argument("--quick", action="store_true", help="1 seed and a quarter of the steps")
    accuracy.add_argument("--jobs", type=whole(1, MAX_THREADS), default=2, help="(row, seed) runs at a time, one thread each (default 2)")
    accuracy.add_argument("--settings", help="JSON file of StudySettings fields replacing the defaults")
    accuracy.add_argument("--rules", help="the study's settings file fixed before the run (benchmarks/study/"
                          "settings.json): its settings, seeds per row and decision rules; the run records its "
                          "sha256 and the write-up states only the rules' verdicts")
    accuracy.add_argument("--estimate", action="store_true",
                          help="only time 20 steps of each kind of run and print the projected total")
    accuracy.add_argument("--fresh", action="store_true", help="delete an earlier study in --out and start again")
    real = studies.add_parser(
        "real-weights", help="rows 3-6 on converted Enformer weights, scored by distillation from the unmodified "
        "model on held-out chromosomes (teacher correlation)",
        description="The accuracy study on real weights (issue 23): the teacher is the weights as converted "
        "(full attention); rows 4-6 train attention only on the teacher's outputs for windows of the genome; "
        "each row's pooled Pearson with the teacher on held-out chromosomes, with intervals. See "
        "docs/accuracy-study.md.")
    real.add_argument("--weights", required=True, help="converted Enformer weights (a path or a name, e.g. enformer)")
    real.add_argument("--fasta", required=True, help="the genome FASTA the model was trained on (hg38)")
    real.add_argument("--out", required=True, help="work folder: teacher data, runs, real-weights.json and .md")
    real.add_argument("--test-chromosomes", nargs="+", default=["chr8"], help="held out for scoring (default chr8)")
    real.add_argument("--valid-chromosomes", nargs="+", default=["chr9"], help="held out for validation (default chr9)")
    real.add_argument("--records", type=whole(1, 10**7), nargs=3, metavar=("TRAIN", "VALID", "TEST"),
                      default=[2048, 64, 256], help="windows per split (default 2048 64 256)")
    real.add_argument("--sequence-length", type=whole(128, 10**7), default=196_608, help="window length in bp (default 196,608, the published input)")
    real.add_argument("--steps", type=whole(1, 10**8), default=2000, help="training steps per row and seed (default 2000)")
    real.add_argument("--seed-count", type=whole(1, 100), default=3,
                      help="seeds 0 .. N-1, each row trained once per seed (1-100, default 3)")
    real.add_argument("--track-step", type=whole(1, 10**5), default=19, help="every Nth human track (default 19)")
    add_device_argument(real)
    add_set_argument(real, help="model config overrides for every row and the teacher (e.g. target_length=16 on a "
                                "tiny model)")
    real.add_argument("--estimate", action="store_true", help="only time the teacher and a few training steps on "
                      "this device and print the projected total")
    real.set_defaults(run=run_real)
    parser.set_defaults(run=run)


def run_real(args: argparse.Namespace) -> int:
    from ..hub import resolve_weights
    from ..study.real_weights import RealWeightsSettings, estimate_real_weights, run_real_weights
    from .common import parse_set_options

    if not Path(args.fasta).is_file():
        raise UserError(f"--fasta {args.fasta}: no such file (pass the path of the hg38 FASTA)")
    settings = RealWeightsSettings(
        sequence_length=args.sequence_length, test_chromosomes=tuple(args.test_chromosomes),
        valid_chromosomes=tuple(args.valid_chromosomes), records=dict(zip(("train", "valid", "test"), args.records)),
        track_step=args.track_step, steps=args.steps, seeds=tuple(range(args.seed_count)), device=args.device,
        model_overrides=parse_set_options(args.set))
    weights = str(resolve_weights(args.weights))
    if args.estimate:
        estimate_real_weights(weights, args.fasta, settings)
        return 0
    path = run_real_weights(weights, args.fasta, args.out, settings)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "study", None) == "real-weights":
        return run_real(args)
    from ..study import StudySettings, estimate, run_study

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs} must be at least 1")
    settings = StudySettings()
    if args.rules and args.settings:
        raise UserError("--rules fixes the study's settings: leave out --settings (or edit the rules file first)")
    if args.rules:
        from ..study.rules import read_rules_file, settings_from_rules

        settings = settings_from_rules(read_rules_file(args.rules), source=args.rules)
    if args.settings:
        path = Path(args.settings)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a JSON object of study settings")
        settings = StudySettings.from_dict(values, source=str(path))
    if args.quick:
        settings = settings.quick()
    if args.estimate:
        projection = estimate(args.out, settings, parallel=args.jobs,
                              label="the quick run" if args.quick else "the full study")
        print(f"projected: {projection['projected_minutes']:.0f} min with {args.jobs} jobs "
              f"({projection['total_job_minutes']:.0f} job-minutes); {Path(args.out) / 'estimate.json'}")
        return 0
    rest = (f" --results {args.results}" if args.results else "") + (f" --docs {args.docs}" if args.docs else "") + \
        (f" --settings {args.settings}" if args.settings else "") + (f" --rules {args.rules}" if args.rules else "")
    command = f"senformer study accuracy --out {args.out}{rest}" + (" --quick" if args.quick else "") + \
        (f" --jobs {args.jobs}" if args.jobs != 2 else "")
    # A quick run's folder holds quick settings: the full study needs a folder of its own.
    full = f"senformer study accuracy --out {'NEW_WORK_DIR' if args.quick else args.out}{rest}"
    path = run_study(args.out, settings, parallel=args.jobs, fresh=args.fresh, results=args.results, docs=args.docs,
                     command=command, extra={"quick": args.quick, "full_command": full}, rules=args.rules)
    record = json.loads(path.read_text(encoding="utf-8"))
    check = record["attention_matters"]
    if args.quick and not check["met"]:
        # A quick run too short for attention to matter: say so before any number is read as a verdict.
        print("SMOKE RUN (--quick): attention does not matter yet on this run, so no row below is evidence; "
              f"the study is `{full}`")
    for model in record["models"]:
        metrics = model["metrics"]
        print(f"row {model['row']:>1} {model['name']:<32} pooled {_short(metrics.get('pooled'))}  "
              f"long-range {_short(metrics.get('pooled/long-range'))}")
    print(f"attention matters (row 2 loses >= {check['required_loss']} on long-range): "
          f"{'met' if check['met'] else 'NOT met'} ({check['loss_on_long_range']})")
    for decision in record.get("decisions", []):
        print(f"rule {decision['name']}: {decision['verdict']}")
    print(f"wrote {path}")
    return 0


def _short(value) -> str:
    if not value or value.get("mean") is None:
        return "-"
    return f"{value['mean']:.3f}" + (f" ± {value['sd']:.3f}" if value.get("sd") is not None else "")
