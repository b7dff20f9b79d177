"""``senformer demo --quick``: every stage, the control, the report with its summary (checked in a headless
browser), resuming."""

import contextlib
import json
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
import torch

from senformer.cli import main
from senformer.commands.demo import READS, STAGES, DemoSettings
from senformer.weights import load_model
from test_report import open_in_browser


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    return out


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(demo_run, capsys):
    for stage in STAGES:  # each finished stage's run record, with the fingerprint of its settings and inputs
        record = json.loads((demo_run / stage / "run.json").read_text())
        assert record["command"] == f"demo {stage}" and record["settings"]["seconds"] >= 0
        assert len(record["fingerprint"]) == 64 and set(record["inputs"]) == set(READS[stage])
    assert not list(demo_run.rglob(".done"))
    recorded = json.loads((demo_run / "demo.json").read_text())
    assert recorded["settings"] == DemoSettings.quick(threads=1).to_dict()
    numbers = json.loads((demo_run / "report.json").read_text())
    assert numbers["missing"] == []
    for section in ("data", "training", "evaluate", "compare", "overprediction", "receptive_field", "attribution",
                    "attention", "recorded_scaling"):
        assert section in numbers["numbers"], section
        assert numbers["numbers"][section].get("source") or all(
            "source" in item for item in numbers["numbers"][section].values())
    # The control is the trained full model with its attention output projections at zero.
    control = load_model(demo_run / "control" / "weights")
    full = load_model(demo_run / "train_full" / "weights")
    for name, tensor in control.state_dict().items():
        if re.search(r"attention\.to_out\.", name):
            assert not tensor.any(), name
        else:
            assert torch.equal(tensor, full.state_dict()[name]), name
    by_reach = {row["model"]: row for row in numbers["numbers"]["evaluate"]["by_reach"]["table"]}
    assert set(by_reach) == {"full", "bigbird", "control"}
    per_track = pd.read_csv(demo_run / "evaluate" / "per_track.csv")
    distal = json.loads((demo_run / "data" / "synthetic.json").read_text())["long_range_tracks"]
    expected = per_track.loc[per_track["index"].isin(distal), "pooled_control"].mean()
    assert by_reach["control"]["long-range tracks"] == pytest.approx(expected)
    # The summary comes first and carries this run's numbers.
    assert 3 <= len(numbers["summary"]) <= 5
    assert f"control {by_reach['control']['all tracks']:.3f}" in numbers["summary"][0]
    live = json.loads((demo_run / "attention" / "attention.json").read_text())
    assert {r["status"] for r in live["records"]} == {"ok"}
    assert {(r["kind"], r["length"]) for r in live["records"]} == {
        (kind, n) for kind in ("full", "bigbird") for n in DemoSettings.quick().attention_positions}
    compare = {row["group"]: row for row in numbers["numbers"]["compare"]["table"]}
    assert set(compare) == {"DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE", "all"}
    fields = {row["model"] for row in numbers["numbers"]["receptive_field"]["models"]}
    assert fields == {"full", "bigbird"}
    html = (demo_run / "report.html").read_text(encoding="utf-8")
    for source in ("evaluate/per_assay.csv", "compare/compare.csv", "tracks/overprediction.csv",
                   "receptive_field/receptive_field.json", "attention/attention.json", "data/statistics.json",
                   "benchmarks/results/scaling_train_cpu/scaling.json"):
        assert f"source: {source}" in html, source
    assert html.index("Summary of findings") < html.index("<h2>Runs</h2>")
    assert html.count("<li>") >= 3


@pytest.mark.slow
def test_demo_report_renders_in_a_headless_browser(demo_run, tmp_path):
    result = open_in_browser(demo_run / "report.html", tmp_path)
    html = (demo_run / "report.html").read_text(encoding="utf-8")
    assert len(result["images"]) == html.count("data:image/png;base64,") >= 10
    for image in result["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 50, image
    assert result["tables"] >= 8


@pytest.mark.slow
def test_demo_rerun_skips_finished_stages_and_guards_its_settings(demo_run, capsys):
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(demo_run), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"{demo_run} is up to date" in printed and "finished earlier" not in printed
    assert f"report: {(demo_run / 'report.html').resolve()}" in printed
    assert main(["demo", "--quick", "--out", str(demo_run), "--seed", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "other settings" in error and "--overwrite" in error


@pytest.mark.slow
def test_demo_rerun_resumes_an_unfinished_training_stage(demo_run, capsys):
    """A killed fine-tuning stage (checkpoints, no run record of the demo's) resumes: train --resume proves the
    same inputs, and the weights it ends with are those the later stages were computed from, so they stay."""
    (demo_run / "train_bigbird" / "run.json").unlink()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(demo_run), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "--resume" in printed and printed.count("finished earlier") == len(STAGES) - 1
    assert json.loads((demo_run / "run.json").read_text())["command"] == "demo"


def test_a_demo_into_a_folder_held_by_another_run_is_refused(tmp_path, capsys):
    import os

    from senformer.outputs import output_lock

    out = tmp_path / "demo"
    with output_lock(out):
        assert main(["demo", "--quick", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"pid {os.getpid()}" in error and not out.exists()


def test_default_stage_commands_parse_and_name_the_tuned_settings(tmp_path):
    """The default (minutes-long) demo's commands, checked without running them: every stage's argv is one
    the CLI accepts, and the data and training stages carry the settings the demo documents."""
    from senformer.cli import build_parser
    from senformer.commands.demo import _stage_argv

    settings = DemoSettings()
    out = tmp_path / "demo"
    (out / "data").mkdir(parents=True)
    (out / "data" / "statistics.json").write_text(json.dumps({"seq_length": 8192, "target_length": 32,
                                                              "num_targets": 16}))
    parser = build_parser()
    for stage in STAGES:
        if stage == "control":  # not a command: train_full's weights with attention removed
            continue
        argv = _stage_argv(out, stage, settings)
        assert parser.parse_args(argv).run is not None, stage
    data = _stage_argv(out, "data", settings)
    assert data[data.index("--size") + 1] == settings.data_size
    assert [data[data.index(flag) + 1] for flag in ("--train", "--valid", "--test")] == [
        str(n) for n in settings.data_examples]
    import yaml

    full = yaml.safe_load((out / "train_full" / "train.yaml").read_text())
    assert (full["steps"], full["learning_rate"], full["warmup_steps"]) == (
        settings.full_steps, settings.learning_rate, settings.warmup_steps)
    assert full["model_overrides"]["dim"] == settings.model["dim"]
    bigbird = yaml.safe_load((out / "train_bigbird" / "train.yaml").read_text())
    assert (bigbird["attention"], bigbird["train"], bigbird["learning_rate"]) == (
        "bigbird", "attention", settings.finetune_learning_rate)


@pytest.mark.slow
def test_a_stage_made_anew_with_other_contents_makes_what_reads_it_stale(demo_run, tmp_path):
    """Stages are up to date by the fingerprint in their run records: when what train_full produced changes,
    every stage reading it loses its record (and the demo computes it again); the others keep theirs."""
    from senformer.commands.demo import _invalidate_stale_stages
    from senformer.report import stage_finished

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)  # records hold digests, never paths: the copy is up to date as it is
    settings = DemoSettings.quick(threads=1)
    assert _invalidate_stale_stages(run, settings) == list(STAGES)
    record_path = run / "train_full" / "run.json"
    record = json.loads(record_path.read_text())
    record["settings"]["produced"] = "0" * 64
    record_path.write_text(json.dumps(record))
    assert _invalidate_stale_stages(run, settings) == ["data", "train_full", "attention"]
    stale = {"control", "train_bigbird", "evaluate", "compare", "tracks", "receptive_field"}
    assert {stage for stage in STAGES if stage_finished(run / stage) is None} == stale
    # attribution reads only train_bigbird, which is unfinished now: it waits to see what that makes.
    assert stage_finished(run / "attribution") is not None


@contextlib.contextmanager
def small_disk(path):
    """A tmpfs mounted at ``path`` (root, or a user allowed to mount), unmounted at the end."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        # Lazily: file handles the in-process stages left to the garbage collector may still be open.
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.mark.slow
def test_a_full_disk_ends_the_demo_in_one_line_and_a_rerun_finishes_it(demo_run, tmp_path, capsys):
    """The disk fills during a stage: one line naming the file, exit 2, no stage or report claims to be
    complete that is not; once there is room again the rerun resumes and finishes, finished stages kept."""
    from senformer.report import stage_finished

    with small_disk(tmp_path / "disk") as disk:
        run = disk / "run"
        run.mkdir()
        done = ("data", "train_full", "control", "train_bigbird", "evaluate")
        for stage in done:
            shutil.copytree(demo_run / stage, run / stage)
        shutil.copy(demo_run / "demo.json", run / "demo.json")
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler = disk / "filler"
        filler.write_bytes(bytes(free - 48 * 1024))  # room for compare's run record, not for its results
        capsys.readouterr()
        assert main(["demo", "--quick", "--out", str(run), "--threads", "1"]) == 2
        # Above it, the stages' progress bars (each stage shows one); the error is one line, the last.
        *bars, error = capsys.readouterr().err.strip().split("\n")
        assert "no space left" in error and f"{run / 'compare'}" in error, error
        assert not any("error" in line for line in bars), bars
        assert [stage for stage in STAGES if stage_finished(run / stage)] == list(done)
        assert not (run / "compare").exists() and not (run / "report.html").exists()
        assert not (run / "run.json").exists()

        filler.unlink()
        assert main(["demo", "--quick", "--out", str(run), "--threads", "1"]) == 0
        printed = capsys.readouterr().out
        assert printed.count("finished earlier") == len(done)
        assert [stage for stage in STAGES if stage_finished(run / stage)] == list(STAGES)
        assert json.loads((run / "report.json").read_text())["missing"] == []
        assert json.loads((run / "run.json").read_text())["command"] == "demo"


def test_the_demo_says_up_front_how_long_its_stages_took_when_measured(tmp_path):
    """The time comes from the recorded stage times (resources/demo_times.json), stages already finished
    apart; other settings were never measured, and the demo says so rather than guess."""
    from senformer.commands.demo import expected_time, recorded_times

    times = recorded_times()
    assert times["total_seconds"] >= sum(times["stages"].values()) > 0
    line = expected_time(tmp_path / "fresh", DemoSettings())
    assert line.startswith(f"[time] about {max(round(times['total_seconds'] / 60), 1)} min on a 2-core machine like "
                           "the one measured (10 stages") and line.endswith("slower under load")
    assert "(1 stage;" in expected_time(tmp_path / "fresh", DemoSettings(), only=["train_full"])
    assert "no recorded time for these settings" in expected_time(tmp_path / "fresh", DemoSettings.quick())


def test_make_demo_passes_threads():
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    def demo_line(*variables):
        shown = subprocess.run([make, "-n", "--no-print-directory", "-C", root, "demo", *variables],
                               capture_output=True, text=True, check=True).stdout
        return [line.strip() for line in shown.splitlines() if "senformer demo" in line][-1]

    assert demo_line("THREADS=3").endswith("senformer demo --threads 3")
    assert demo_line().endswith("senformer demo")
