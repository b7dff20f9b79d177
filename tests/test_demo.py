"""``senformer demo --quick``: every stage, the control, the report with its summary (checked in a headless
browser), resuming."""

import json
import re

import pandas as pd
import pytest
import torch

from senformer.cli import main
from senformer.commands.demo import STAGES, DemoSettings
from senformer.weights import load_model
from test_report import open_in_browser


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "2"]) == 0
    return out


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(demo_run, capsys):
    for stage in STAGES:
        marker = json.loads((demo_run / stage / ".done").read_text())
        assert marker["stage"] == stage and marker["seconds"] >= 0
    recorded = json.loads((demo_run / "demo.json").read_text())
    assert recorded["settings"] == DemoSettings.quick(threads=2).to_dict()
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
    assert main(["demo", "--quick", "--out", str(demo_run), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{demo_run} is up to date" in printed and "finished earlier" not in printed
    assert f"report: {(demo_run / 'report.html').resolve()}" in printed
    assert main(["demo", "--quick", "--out", str(demo_run), "--seed", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "other settings" in error and "--overwrite" in error


@pytest.mark.slow
def test_demo_rerun_resumes_an_unfinished_training_stage(demo_run, capsys):
    """A killed fine-tuning stage (checkpoints, no .done) resumes: train --resume proves the same inputs."""
    (demo_run / "train_bigbird" / ".done").unlink()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(demo_run), "--threads", "2"]) == 0
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
