"""``senformer demo``: the whole study end to end on built-in synthetic data, then ``report.html``.

Stages run the other commands in-process, each into its own folder under ``--out``. Each stage folder is
one :class:`senformer.outputs.Output` whose fingerprint is the demo's settings and the digests of what the
stages it reads produced (:data:`READS`); a finished stage's run record (``<stage>/run.json``, command
``demo <stage>``) carries that fingerprint, so a stage is up to date exactly when its record says so, and
stages downstream of one computed again are computed again too. An interrupted training stage resumes from
its checkpoints (``train --resume`` checks its inputs' digests); any other unfinished stage starts again.
The settings and seeds are saved in ``demo.json``; a rerun with other settings stops unless ``--overwrite``
(or its older name ``--fresh``). The whole run holds ``OUT.lock``; a finished demo writes ``OUT/run.json``
last, with the fingerprint of its settings, so a rerun of the same settings is "up to date" at once. A
fault while writing (a full disk) ends in one line naming the file, exit 2; finished stages stay finished.
Before the first stage the demo chooses its torch threads (``--threads``, else the cores free then:
:mod:`senformer.threads`) and says how long the stages still to run took when measured
(``resources/demo_times.json``); every stage shows its progress bar, training's steps included.

    data            senformer data synthetic            (the Basenji2-layout dataset)
    train_full      senformer train --attention full    (a small model from scratch)
    control         train_full's weights with every attention output projection at zero (attention removed)
    train_bigbird   senformer train --attention bigbird --init train_full/weights   (fine-tuned from it)
    evaluate        senformer evaluate                  (Figure 4 table: Pearson r per assay group, and control)
    compare         senformer analyze compare           (Figure 6)
    tracks          senformer analyze tracks            (Figure 7)
    receptive_field senformer analyze receptive-field   (Figure 8)
    attribution     senformer analyze attribution       (gradient x input, ISM)
    attention       senformer benchmark attention       (one attention layer's time and memory against length)
    report          report.html + report.json: a summary of findings, these results, and beside them the
                    recorded full-width benchmarks (Figures 1-3, benchmarks/results/) and the accuracy study
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .benchmark import POSITION_BP
from ..io import atomic_write_text, write_json
from .options import MAX_THREADS, SEED, whole


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo does; saved as ``demo.json``. How long the defaults took is recorded in
    ``resources/demo_times.json`` (the demo says it before it starts)."""

    seed: int = 0
    # 8,192-bp records, 32 bins x 16 tracks; rare enhancers 0.5-2.8 kb from promoters (beyond the conv tower's
    # reach) switch the long-range tracks on and off, so attention matters (the accuracy study's dataset).
    data_size: str = "study"
    # (train, valid, test) records; None: the size's own. 1,024 training records are plenty for the steps
    # below, and 128 test records keep the evaluation stages short.
    data_examples: tuple[int, int, int] | None = (1024, 64, 128)
    # A small Enformer: the published architecture at dim 64 (tower 32 -> 64 filters), 2 layers.
    model: dict[str, Any] = field(default_factory=lambda: {
        "dim": 64, "depth": 2, "heads": 4, "key_size": 16, "num_relative_position_features": 24,
        "conv_tower_divisible_by": 8, "block_size": 4, "num_random_blocks": 2, "chunk_size": 16,
        "dropout_rate": 0.1, "attention_dropout_rate": 0.05, "positional_dropout_rate": 0.01,
        "final_dropout_rate": 0.05,
    })
    # Training leaves a plateau (the per-track means are learned, the motifs not yet) somewhere between 200
    # and 800 steps depending on the seed: seed 0 was at validation r 0.27 after 600 steps and 0.55 after 900
    # (long-range tracks 0.25 -> 0.55), seed 1 at 0.32 after 300. 150 steps stopped long before either.
    full_steps: int = 1200
    finetune_steps: int = 60
    finetune_train: str = "attention"  # as the S-Enformer report: only the new attention layers learn
    batch_size: int = 8
    learning_rate: float = 2e-3
    finetune_learning_rate: float = 1e-3
    warmup_steps: int = 20
    eval_examples: int | None = None  # None: the whole test split
    track_examples: tuple[int, ...] = (0, 1)
    receptive_field_sequences: int = 2
    receptive_field_positions: int = 16
    ism_width: int = 32
    # Live beside the recorded full-width benchmarks: one attention layer's forward + backward at these
    # positions (x 128 bp), where full attention's quadratic cost shows within seconds on a laptop-class CPU.
    attention_positions: tuple[int, ...] = (1024, 2048, 4096)
    attention_kinds: tuple[str, ...] = ("full", "bigbird")
    attention_dim: int = 192  # dim / heads a multiple of 6 (the relative position features)
    attention_heads: int = 4
    threads: int | None = None

    @classmethod
    def quick(cls, **changes: Any) -> "DemoSettings":
        """Seconds instead of minutes: the tiny dataset and a few steps (tests, smoke runs)."""
        values = dict(data_size="tiny", data_examples=None, full_steps=3, finetune_steps=2, batch_size=2, warmup_steps=1,
                      eval_examples=4, receptive_field_sequences=1, receptive_field_positions=4, ism_width=4,
                      attention_positions=(256, 512), attention_dim=96)
        values.update(changes)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for name in ("track_examples", "attention_positions", "attention_kinds", "data_examples"):
            values[name] = list(values[name]) if values[name] is not None else None
        return values


STAGES = ("data", "train_full", "control", "train_bigbird", "evaluate", "compare", "tracks", "receptive_field",
          "attribution", "attention")
# The earlier stages whose outputs each stage reads: their digests count in its fingerprint.
READS: dict[str, tuple[str, ...]] = {
    "data": (), "train_full": ("data",), "control": ("train_full",), "train_bigbird": ("data", "train_full"),
    "evaluate": ("data", "train_full", "control", "train_bigbird"),
    "compare": ("data", "train_full", "train_bigbird"), "tracks": ("data", "train_full", "train_bigbird"),
    "receptive_field": ("data", "train_full", "train_bigbird"), "attribution": ("data", "train_bigbird"),
    "attention": (),
}
# The control: the trained full model with every attention output projection (to_out) at its value at
# initialisation, zero, so each transformer block adds nothing from attention (as the accuracy study's row 2).
ATTENTION_REMOVED = r"^transformer\.\d+\.attention\.to_out\."


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole study on built-in synthetic data and write report.html",
        description="Synthetic data -> train a full-attention model -> fine-tune a BigBird one -> evaluate, "
        "compare, tracks, receptive field, attribution, scaling -> one self-contained report.html. "
        "Finished stages are skipped on a rerun.",
    )
    parser.add_argument("--out", default="senformer-demo", help="output folder (default senformer-demo)")
    parser.add_argument("--seed", type=SEED, default=0,
                        help="seeds the data, the initialisation and the data order (default: 0)")
    parser.add_argument("--quick", action="store_true", help="tiny data and a few steps (a smoke run in seconds)")
    parser.add_argument("--overwrite", "--fresh", dest="fresh", action="store_true",
                        help="delete earlier results in --out (another demo's) and start again")
    parser.add_argument("--threads", type=whole(1, MAX_THREADS), default=None,
                        help="torch threads (default: the cores free when it starts, the usable cores less the load "
                        "average; `make demo THREADS=N` passes it)")
    parser.add_argument("--only", nargs="+", choices=STAGES, help="run only these stages (and the report)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = (DemoSettings.quick if args.quick else DemoSettings)(seed=args.seed, threads=args.threads)
    command = f"senformer demo --out {args.out} --seed {args.seed}" + (" --quick" if args.quick else "")
    report = run_demo(Path(args.out), settings, fresh=args.fresh, only=args.only, command=command)
    print(f"report: {report.resolve()}")
    return 0


def run_demo(out: Path, settings: DemoSettings, fresh: bool = False, only: list[str] | None = None,
             log=print, command: str = "senformer demo") -> Path:
    """Run (or resume) every stage into ``out`` and write ``out/report.html``; returns its path."""
    from ..outputs import DIRECTORY, Output

    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, but a directory is due there; choose another --out")
    with Output(out, DIRECTORY, command="demo", grown=True):
        return _run_demo(out, settings, fresh, only, log, command)


def _run_demo(out: Path, settings: DemoSettings, fresh: bool, only: list[str] | None, log, command: str) -> Path:
    from ..fingerprint import value_digest
    from ..outputs import DIRECTORY, Output
    from ..report import build_study_report

    fingerprint = value_digest({"command": "demo", "settings": _comparable(settings.to_dict())})
    output = Output(out, DIRECTORY, command="demo", fingerprint=fingerprint, grown=True)  # locked by run_demo
    recorded = out / "demo.json"
    if out.is_dir() and any(out.iterdir()) and not recorded.exists() and not fresh:
        raise UserError(f"{out} is a directory that senformer demo did not write (no demo.json); choose another "
                        "--out")
    if fresh:
        output.remove_record()
        for stage in STAGES:
            shutil.rmtree(out / stage, ignore_errors=True)
    elif recorded.exists():
        previous = json.loads(recorded.read_text(encoding="utf-8")).get("settings") or {}
        if _comparable(previous) != _comparable(settings.to_dict()):
            raise UserError(f"{out} holds a demo run with other settings ({recorded}); pass --overwrite to replace "
                            "it or choose another --out")
        finished = _invalidate_stale_stages(out, settings) == list(STAGES) and (out / "report.html").is_file()
        if not only and finished and (output.recorded() or {}).get("fingerprint") == fingerprint:
            # The report also reads what lies outside the run (the recorded benchmarks, the accuracy study's
            # study.json), so it is written again; the stages are not run.
            report = build_study_report(out)
            log(f"{out} is up to date; {report.name} rewritten with the recorded results as they are now")
            return report
    out.mkdir(parents=True, exist_ok=True)
    output.remove_record()  # written again only once every stage is done
    with output.writing("the demo's settings", recorded):
        write_json(recorded, {"settings": settings.to_dict(), "stages": list(STAGES), "command": command})
    _invalidate_stale_stages(out, settings)  # so the report never shows a stage of other inputs as finished
    from ..threads import choose_threads, usable_cores

    # Chosen once, before the demo loads the machine itself: its own threads would count as load later.
    threads = choose_threads(settings.threads)
    log(f"[threads] {threads} torch thread{'s' if threads != 1 else ''} of {usable_cores()} usable core"
        f"{'s' if usable_cores() != 1 else ''} ({'as asked' if settings.threads else 'the cores free now'}; "
        "THREADS=N with make demo, --threads N here)")
    log(expected_time(out, settings, only))
    started = time.perf_counter()
    for stage in STAGES:
        if only and stage not in only:
            continue
        _run_stage(out, stage, settings, log)
    report = build_study_report(out)
    if not only or set(only) >= set(STAGES):
        Output(out, DIRECTORY, command="demo", settings=settings.to_dict(), fingerprint=fingerprint,
               grown=True).write_record()
    log(f"[report] {report} ({time.perf_counter() - started:.0f} s this run)")
    return report


def recorded_times() -> dict[str, Any]:
    """The measured stage times of the default demo (``resources/demo_times.json``, written by
    ``benchmarks/demo_times.py`` from a finished demo's run records)."""
    from importlib import resources

    return json.loads((resources.files("senformer") / "resources" / "demo_times.json").read_text(encoding="utf-8"))


def expected_time(out: Path, settings: DemoSettings, only: list[str] | None = None) -> str:
    """One line saying how long the stages still to run took when measured, or that they were not measured
    with these settings. Stages already finished in ``out`` (and those ``only`` leaves out) do not count; a
    stage measured only inside the recorded total counts as the total's unassigned share, spread evenly."""
    if _comparable(settings.to_dict()) != _comparable(DemoSettings(seed=settings.seed).to_dict()):
        return "[time] no recorded time for these settings (the recorded one is of the default demo)"
    times = recorded_times()
    stages = times.get("stages") or {}
    unassigned = [stage for stage in STAGES if stage not in stages]
    rest = max(float(times.get("total_seconds") or 0) - sum(stages.values()), 0) / max(len(unassigned), 1)
    due = [stage for stage in STAGES if (not only or stage in only) and not _up_to_date(out, stage, settings)]
    seconds = sum(float(stages.get(stage, rest)) for stage in due)
    if not due:
        return "[time] every stage is finished: only the report is written"
    minutes = max(round(seconds / 60), 1)
    return (f"[time] about {minutes} min on a 2-core machine like the one measured ({len(due)} "
            f"stage{'s' if len(due) != 1 else ''}; senformer/resources/demo_times.json, {times.get('measured')}); "
            "slower under load")


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings that change results: the thread count does not."""
    return {key: value for key, value in settings.items() if key != "threads"}


def _stage_argv(out: Path, stage: str, settings: DemoSettings) -> list[str]:
    data = out / "data"
    full, bigbird = out / "train_full" / "weights", out / "train_bigbird" / "weights"
    models = ["--weights", f"full={full}", "--weights", f"bigbird={bigbird}"]
    control = ["--weights", f"control={out / 'control' / 'weights'}"]
    if stage == "data":
        examples = settings.data_examples
        counts = ["--train", str(examples[0]), "--valid", str(examples[1]), "--test", str(examples[2])] if examples else []
        return ["data", "synthetic", str(out / stage), "--size", settings.data_size, "--seed", str(settings.seed), *counts]
    if stage in ("train_full", "train_bigbird"):
        config = out / stage / "train.yaml"
        _write_train_settings(config, out, stage, settings)
        return ["train", "--config", str(config), "--out", str(out / stage)]
    if stage == "evaluate":
        limit = ["--max-examples", str(settings.eval_examples)] if settings.eval_examples else []
        return ["evaluate", "--data", str(data), "--split", "test", *models, *control, "--out", str(out / stage),
                *limit]
    if stage == "compare":
        limit = ["--max-examples", str(settings.eval_examples)] if settings.eval_examples else []
        return ["analyze", "compare", "--data", str(data), *models, "--out", str(out / stage), *limit]
    if stage == "tracks":
        examples = [str(e) for e in settings.track_examples]
        limit = ["--max-examples", str(settings.eval_examples)] if settings.eval_examples else []
        return ["analyze", "tracks", "--data", str(data), *models, "--examples", *examples, "--out",
                str(out / stage), *limit]
    if stage == "receptive_field":
        length = _statistics(out)["seq_length"]
        return ["analyze", "receptive-field", *models, "--data", str(data), "--length", str(length),
                "--sequences", str(settings.receptive_field_sequences), "--positions",
                str(settings.receptive_field_positions), "--seed", str(settings.seed), "--out", str(out / stage)]
    if stage == "attribution":
        return ["analyze", "attribution", "--weights", f"bigbird={bigbird}", "--data", str(data), "--example", "0",
                "--ism-width", str(settings.ism_width), "--out", str(out / stage)]
    if stage == "attention":
        return ["benchmark", "attention", "--out", str(out / stage), "--dim", str(settings.attention_dim),
                "--heads", str(settings.attention_heads),
                "--lengths", ",".join(str(n * POSITION_BP) for n in settings.attention_positions),
                "--kinds", *settings.attention_kinds, "--repeats", "3", "--device", "cpu", "--timeout", "300"]
    raise ValueError(f"unknown stage {stage!r}")


def _statistics(out: Path) -> dict[str, Any]:
    path = out / "data" / "statistics.json"
    if not path.is_file():
        raise UserError(f"{path} is missing: run the data stage first")
    return json.loads(path.read_text(encoding="utf-8"))


def _write_train_settings(path: Path, out: Path, stage: str, settings: DemoSettings) -> None:
    import yaml

    statistics = _statistics(out)
    model = {**settings.model, "target_length": int(statistics["target_length"]),
             "output_heads": {"human": int(statistics["num_targets"])}}
    values: dict[str, Any] = {
        "data": {"human": str(out / "data")}, "model_overrides": model, "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate, "warmup_steps": settings.warmup_steps, "seed": settings.seed,
        "eval_examples": 64, "checkpoint_every": 100, "keep_checkpoints": 1, "log_every": 10,
        "batchnorm": "local", "progress": True, "shuffle_buffer": 64,
    }
    if settings.threads:
        values["threads"] = settings.threads
    if stage == "train_full":
        values.update(attention="full", steps=settings.full_steps, eval_every=max(settings.full_steps // 6, 1))
    else:
        values.update(attention="bigbird", steps=settings.finetune_steps, train=settings.finetune_train,
                      eval_every=max(settings.finetune_steps // 3, 1), init_weights=str(out / "train_full" / "weights"),
                      learning_rate=settings.finetune_learning_rate, warmup_steps=max(settings.warmup_steps // 2, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))


def _stage_output(out: Path, stage: str, settings: DemoSettings, **record: Any):
    """The Output of ``out/<stage>``: its fingerprint is the demo's settings (the thread count apart) and the
    digests of what the stages in :data:`READS` produced, read from their run records; ``record``: what this
    stage's own record keeps besides (its command line, seconds, the digest of what it produced)."""
    from ..outputs import DIRECTORY, Output, fingerprint

    inputs = {name: (_stage_record(out, name) or {}).get("settings", {}).get("produced") for name in READS[stage]}
    digest = fingerprint(f"demo {stage}", {"demo": _comparable(settings.to_dict())}, inputs)
    return Output(out / stage, DIRECTORY, command=f"demo {stage}", settings=record, inputs=inputs,
                  fingerprint=digest, grown=stage != "control")


def _stage_record(out: Path, stage: str) -> dict | None:
    """The run record in ``out/<stage>`` when the demo wrote it (a finished stage), else None."""
    from ..report import stage_finished

    return stage_finished(out / stage)


def _up_to_date(out: Path, stage: str, settings: DemoSettings) -> bool:
    recorded = _stage_record(out, stage)
    return recorded is not None and recorded.get("fingerprint") == _stage_output(out, stage, settings).fingerprint


def _invalidate_stale_stages(out: Path, settings: DemoSettings) -> list[str]:
    """Remove the run record of every finished stage that is no longer up to date (in stage order, so what
    follows a stale stage is stale too); returns the stages up to date. A stage whose only changed inputs are
    unfinished keeps its record until they finish: a resumed training run may make them again unchanged."""
    current = []
    for stage in STAGES:
        record = _stage_record(out, stage)
        if record is None:
            continue
        output = _stage_output(out, stage, settings)
        if record.get("fingerprint") == output.fingerprint:
            current.append(stage)
            continue
        recorded = record.get("inputs") or {}
        waiting = any(digest is None for digest in output.inputs.values())
        changed = any(digest is not None and digest != recorded.get(name) for name, digest in output.inputs.items())
        if changed or not waiting:
            output.remove_record()
    return current


def _produced(out: Path, stage: str, folder: Path) -> str | None:
    """The digest of what later stages read from ``stage`` (written into ``folder``): the dataset, or the
    weights by their tensors and configuration (the same weights saved twice differ in their files' bytes:
    safetensors writes its metadata in no fixed order)."""
    from ..fingerprint import value_digest
    from ..inputs import dataset_digest
    from ..outputs import weights_identity
    from ..weights import load_model

    if stage == "data":
        return dataset_digest(folder)
    if any(stage in reads for reads in READS.values()):
        return value_digest(weights_identity(load_model(folder / "weights")))
    return None


def _write_control(out: Path, settings: DemoSettings) -> str:
    """Save the control model (train_full's weights, attention removed) as ``control/weights``, through the
    stage's Output: into ``control.partial`` and moved into place with its run record once complete."""
    from ..weights import load_model, save_model

    what = "train_full/weights with every attention output projection (to_out) at zero, saved as control/weights"
    started = time.perf_counter()
    with _stage_output(out, "control", settings, what=what) as output:
        folder = output.start()
        model = load_model(out / "train_full" / "weights", skip=ATTENTION_REMOVED)
        with output.writing("the control's weights"):
            save_model(model, folder / "weights")
        output.finish(seconds=round(time.perf_counter() - started, 2), produced=_produced(out, "control", folder))
    return what


def _run_command(out: Path, stage: str, argv: list[str]) -> None:
    """One senformer command in this process; its one-line error (a full disk, a bad input) ends the demo as it
    is, prefixed with the stage, rather than after a second line saying that the stage failed. A write fault
    the command left unnamed names the stage's folder."""
    from ..cli import build_parser
    from ..outputs import WRITE_FAULTS

    args = build_parser().parse_args(argv)
    try:
        status = int(args.run(args) or 0)
    except UserError as error:
        raise UserError(f"stage {stage}: {error}") from None
    except OSError as error:
        if error.errno not in WRITE_FAULTS:
            raise
        raise UserError(f"stage {stage}: cannot write {error.filename or out / stage} ({WRITE_FAULTS[error.errno]}); "
                        "a rerun resumes the demo once the fault is cleared") from None
    if status:
        raise UserError(f"stage {stage} failed (exit status {status}): senformer {' '.join(argv)}")


def _run_stage(out: Path, stage: str, settings: DemoSettings, log) -> None:
    folder = out / stage
    if _up_to_date(out, stage, settings):
        log(f"[{stage}] finished earlier ({folder / 'run.json'}), skipped")
        return
    # A training stage stopped part-way (checkpoints, no record of the demo's) resumes; anything else unfinished,
    # or finished from other inputs, starts again from nothing.
    resume = (stage.startswith("train") and _stage_record(out, stage) is None
              and any((folder / "checkpoints").glob("*")))
    if folder.exists() and not resume:
        shutil.rmtree(folder)
    if stage == "control":
        started = time.perf_counter()
        what = _write_control(out, settings)
        log(f"[{stage}] {what} ({time.perf_counter() - started:.1f} s)")
        return
    argv = _stage_argv(out, stage, settings)
    if resume:
        argv.append("--resume")
    log(f"[{stage}] senformer {' '.join(argv)}")
    started = time.perf_counter()
    _run_command(out, stage, argv)
    if stage == "attention":  # out of memory is a data point; an error is not
        records = json.loads((folder / "attention.json").read_text(encoding="utf-8"))["records"]
        failed = [f"{r['kind']} at {r['length']}: {r.get('error', r['status'])}" for r in records if r["status"] == "error"]
        if failed:
            raise UserError(f"stage attention: {len(failed)} point(s) failed ({folder / 'attention.json'}): {failed[0]}")
    seconds = time.perf_counter() - started
    ran = _stage_output(out, stage, settings).recorded()  # the command's own run record, kept inside the stage's
    _stage_output(out, stage, settings, argv=argv, seconds=round(seconds, 2), produced=_produced(out, stage, folder),
                  ran=ran).write_record()
    log(f"[{stage}] done in {seconds:.1f} s")
