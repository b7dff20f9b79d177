"""The accuracy study (issue 14): row 6's settings through the CLI, and the whole study on a micro
configuration end to end, resumed after a finished run and after a killed one; a small custom study whose
rows 5-7 train row 4's steps only (``fresh_multiple`` 1) end to end."""

from __future__ import annotations

import json
import re
import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import randomize_
from safetensors.torch import load_file

from senformer import Enformer, EnformerConfig, save_model
from senformer.cli import main
from senformer.data.synthetic import make_synthetic
from senformer.errors import UserError
from senformer.study import StudySettings, answer, bootstrap_difference, model_entries, spread, study_runs
from senformer.study.writeup import verdict_lines
from senformer.study import evaluation_output, execute_run, prepare, run_output
from senformer.study.runs import DATA, RUN, data_output, finished
from senformer.train import TrainSettings
from senformer.train.loop import build_model
from senformer.weights import ATTENTION_TENSORS

# A model of a few thousand parameters on the tiny synthetic data (4,096 bp: 32 positions, 16 blocks of 2).
MICRO_MODEL = {
    "dim": 24, "depth": 1, "heads": 2, "key_size": 4, "conv_tower_divisible_by": 4, "block_size": 2,
    "num_window_blocks": 3, "num_global_blocks": 2, "num_random_blocks": 1, "dropout_rate": 0.1,
    "attention_dropout_rate": 0.05, "positional_dropout_rate": 0.0, "final_dropout_rate": 0.0,
}


def micro_settings(**changes) -> StudySettings:
    values = dict(seeds=(0,), data_size="tiny", model=MICRO_MODEL, batch_size=2, full_steps=2, finetune_steps=1,
                  fresh_multiple=2, lr_factors=(3.0,), full_warmup_steps=1, finetune_warmup_steps=1, eval_every=1,
                  eval_examples=2, test_batch_size=2, bootstrap=50, receptive_field_sequences=1,
                  receptive_field_positions=2)
    values.update(changes)
    return StudySettings(**values)


def test_row_6_settings_train_only_the_fresh_report_layer(tmp_path, capsys):
    """Row 6 as the study runs it (report preset, init_skip attention, attention-only), one step: every tensor
    from --init and every BatchNorm statistic is bit-identical, every fresh attention tensor moved, and the
    output projection is no longer zero."""
    settings = micro_settings()
    out = tmp_path / "study"
    data = make_synthetic(out / "data", "tiny", seed=0)  # 8 tracks
    # Row 1's weights, randomised (BatchNorm statistics included) so "unchanged" cannot pass by accident. A
    # second head makes one step two optimizer updates (human, then mouse): the fresh output projection starts
    # at zero, so the first update moves only it and the second is the first to reach queries, keys and values.
    config = EnformerConfig(**{**MICRO_MODEL, "output_heads": {"human": 8, "mouse": 8}, "target_length": 16})
    row1 = save_model(randomize_(Enformer(config), seed=3), out / "runs" / "full-seed0" / "weights")
    (row6,) = [run for run in study_runs(out, settings) if run.name == "fresh-report-seed0"]
    assert {"--preset", "s-enformer-report", "--init-skip", "attention", "--train", "attention"} <= set(row6.arguments)
    status = main(["train", *row6.arguments, "--data", f"mouse={data}", "--steps", "1", "--out", str(tmp_path / "row6")])
    assert status == 0, capsys.readouterr().err

    initial = load_file(str(row1 / "model.safetensors"))
    trained = load_file(str(tmp_path / "row6" / "weights" / "model.safetensors"))
    is_attention = re.compile(ATTENTION_TENSORS).search
    loaded = [name for name in initial if not is_attention(name)]
    statistics = [name for name in loaded if name.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert statistics and len(loaded) > len(statistics)
    for name in loaded:
        assert torch.equal(trained[name], initial[name]), name

    # The report's layer: no relative-position tensors, key size dim / heads = 12 (the weights had 4).
    fresh = sorted(name for name in trained if is_attention(name))
    assert fresh == sorted(f"transformer.0.attention.{part}" for part in
                           ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.weight", "to_out.bias"))
    assert trained["transformer.0.attention.to_q.weight"].shape == (24, 24)
    assert initial["transformer.0.attention.to_q.weight"].shape == (8, 24)
    run_settings = TrainSettings.from_file(tmp_path / "row6" / "settings.json")
    torch.manual_seed(run_settings.seed)
    start = build_model(run_settings)[0].state_dict()  # the run's own starting point
    assert not start["transformer.0.attention.to_out.weight"].any()
    for name in fresh:
        assert not torch.equal(trained[name], start[name]), name
    assert trained["transformer.0.attention.to_out.weight"].abs().sum() > 0


@pytest.mark.slow
def test_study_runs_end_to_end_and_resumes(tmp_path, capsys):
    settings_file = tmp_path / "micro.json"
    settings_file.write_text(json.dumps(micro_settings().to_dict()))
    out, results, docs = tmp_path / "study", tmp_path / "results", tmp_path / "docs" / "accuracy-study.md"
    arguments = ["study", "accuracy", "--out", str(out), "--results", str(results), "--docs", str(docs),
                 "--settings", str(settings_file)]
    assert main(arguments) == 0, capsys.readouterr().err
    first = json.loads((results / "study.json").read_text())
    names = [model["name"] for model in first["models"]]
    assert names == ["full@2", "control", "zero-shot", "finetune@1", "finetune-distill@1", "fresh-ours@1",
                     "fresh-ours@2", "fresh-report@1", "fresh-report@2", "report-all@1", "report-all@2",
                     "fresh-ours@1 lr x3", "fresh-report@1 lr x3"]
    by_name = {model["name"]: model for model in first["models"]}
    for model in first["models"]:
        pooled = model["metrics"]["pooled"]
        assert pooled["values"] and np.isfinite(pooled["mean"]), model["name"]
    # Row 2 is row 1 with every attention output projection zero: what a fresh layer adds at step 0, so a
    # fresh row's step-0 validation equals row 2's model (same weights) on the validation curve.
    fresh_start = first["curves"]["fresh-ours-seed0"]["points"][0]
    assert fresh_start["step"] == 0
    assert first["curves"]["fresh-report-seed0"]["points"][0]["pearson"] == pytest.approx(fresh_start["pearson"], abs=1e-9)
    assert by_name["full@2"]["minus_row1"] == {}
    assert set(by_name["control"]["minus_row1"]) == {"pooled", "pooled/long-range"}
    assert {"r_with_row1/long-range", "beats_row1/CAGE"} <= set(by_name["zero-shot"]["metrics"])
    assert set(first["receptive_field"]["0"]) == {"full", "zero-shot", "fresh-report"}
    for name in ("study.json", "table.csv", "summary.md", "curves.png", "per_example.png", "receptive_field.png"):
        assert (results / name).stat().st_size > 0, name
    text = docs.read_text()
    assert f"`{by_name['full@2']['name']}`" in text and "../results/curves.png" in text
    assert f"{by_name['control']['metrics']['pooled']['mean']:.3f}" in text  # the numbers are study.json's

    # A rerun skips every finished run and the evaluation, and writes the same numbers.
    logs = {path: path.stat().st_mtime for path in (out / "runs").glob("*/log.jsonl")}
    logs[out / "evaluation" / "seed-0" / "metrics.json"] = (out / "evaluation" / "seed-0" / "metrics.json").stat().st_mtime
    assert main(arguments) == 0
    assert {path: path.stat().st_mtime for path in logs} == logs
    assert json.loads((results / "study.json").read_text())["models"] == first["models"]

    # A run killed after its first checkpoint of phase 2: the rerun resumes it with `train --resume`, exactly.
    run = out / "runs" / "report-all-seed0"
    final = load_file(str(run / "weights" / "model.safetensors"))
    (run / "run.json").unlink()  # the study's record of the finished run
    shutil.rmtree(run / "weights")
    (run / "checkpoints" / "step-00000002.pt").unlink()
    assert main(arguments) == 0
    assert "--resume" in (run / "train.out").read_text()
    resumed = load_file(str(run / "weights" / "model.safetensors"))
    assert all(torch.equal(resumed[name], final[name]) for name in final)
    again = json.loads((results / "study.json").read_text())
    assert again["models"] == first["models"]

    # Other settings in the same folder are refused, naming what differs.
    settings_file.write_text(json.dumps(micro_settings(full_steps=3).to_dict()))
    assert main(arguments) == 2
    assert "full_steps" in capsys.readouterr().err


def test_rows_5_to_7_at_row_4s_steps_are_one_model_each():
    """fresh_multiple 1: rows 5-7 train row 4's steps in one phase and are reported once. Two models of one
    name would share their per-example sums (the bootstrap read the wrong row, then past the last one)."""
    settings = micro_settings(fresh_multiple=1)
    out = Path("study")
    assert settings.fresh_reported_steps == (1,)
    fresh = [run for run in study_runs(out, settings) if run.key == "fresh-ours" and "-lr" not in run.name]
    assert [run.phases for run in fresh] == [(1,)]
    entries = model_entries(out, settings, 0)
    names = [entry.name for entry in entries]
    assert len(set(names)) == len(names)
    rows = {entry.name: entry for entry in entries if entry.key == "report-all"}
    assert list(rows) == ["report-all@1"] and rows["report-all@1"].weights == str(out / "runs" / "report-all-seed0" / "weights")
    assert micro_settings().fresh_reported_steps == (1, 2)
    with pytest.raises(UserError, match="lr_factors"):
        micro_settings(lr_factors=(3.0, 3.0001))
    with pytest.raises(UserError, match="lr_factors"):
        micro_settings(lr_factors=(0.0,))


def test_a_piece_of_the_study_is_done_exactly_when_its_run_record_says_so(tmp_path):
    """The dataset, every run and every seed's evaluation is one Output: a run is done when its run record
    carries its fingerprint (its settings, the dataset's and what the runs it starts from produced), and the
    evaluation's fingerprint names the seed's models and what each run produced: new weights in row 1 make
    every run built on it, and the evaluation, stale; row 1 itself stays done."""
    settings = micro_settings(fresh_multiple=1)
    out = tmp_path / "study"
    prepare(out, settings)  # the tiny dataset, through its Output
    assert finished(out / "data", DATA)["fingerprint"] == data_output(out, settings).fingerprint
    runs = study_runs(out, settings)
    for run in runs:  # dependencies first: row 1 leads
        run_output(run, out, produced=f"weights of {run.name}").write_record()
    assert {execute_run(run, out, print) for run in runs} == {"skipped (done)"}
    evaluated = evaluation_output(out, settings, 0).fingerprint

    row1 = next(run for run in runs if run.key == "full")
    run_output(row1, out, produced="other weights of row 1").write_record()
    stale = {run.name for run in runs if finished(out / "runs" / run.name, RUN)["fingerprint"]
             != run_output(run, out).fingerprint}
    assert stale == {run.name for run in runs if row1.name in run.depends} and row1.name not in stale
    assert evaluation_output(out, settings, 0).fingerprint != evaluated
    models = evaluation_output(out, settings, 0).settings["models"]
    assert models == [entry.name for entry in model_entries(out, settings, 0)]


@pytest.mark.slow
def test_a_small_custom_study_runs_end_to_end(tmp_path, capsys):
    """`senformer study accuracy --settings` with rows 5-7 at row 4's steps and no learning-rate runs: every
    model once, a finite difference from row 1 with its interval, the write-up, exit 0."""
    settings_file = tmp_path / "small.json"
    settings_file.write_text(json.dumps(micro_settings(fresh_multiple=1, lr_factors=(), bootstrap=20).to_dict()))
    results, docs = tmp_path / "results", tmp_path / "accuracy-study.md"
    status = main(["study", "accuracy", "--out", str(tmp_path / "study"), "--results", str(results), "--docs",
                   str(docs), "--settings", str(settings_file)])
    assert status == 0, capsys.readouterr().err
    record = json.loads((results / "study.json").read_text())
    assert [model["name"] for model in record["models"]] == [
        "full@2", "control", "zero-shot", "finetune@1", "finetune-distill@1", "fresh-ours@1", "fresh-report@1",
        "report-all@1"]
    for model in record["models"][1:]:
        for metric in ("pooled", "pooled/long-range"):
            difference = model["minus_row1"][metric]
            assert difference["low"] <= difference["difference"] <= difference["high"], (model["name"], metric)
    assert set(record["contrasts"]) == {"fresh layer, ours (row 5 - row 4)", "no relative positions (row 6 - row 5)",
                                        "training every weight (row 7 - row 6)",
                                        "sparsity alone, zero-shot (row 3 - row 1)"}
    text = docs.read_text()
    assert "rows 5-7 trained no longer" in text and "no learning-rate runs" in text
    assert f"wrote {results / 'study.json'}" in capsys.readouterr().out


def test_spread_and_bootstrap_of_a_known_difference():
    assert spread([0.5, 0.7, 0.6]) == {"mean": pytest.approx(0.6), "sd": pytest.approx(0.1), "values": [0.5, 0.7, 0.6]}
    assert spread([0.5])["sd"] is None
    # Two models on 64 examples x 4 bins x 2 tracks: "same" predicts the targets exactly (r = 1), "half"
    # predicts them plus independent noise; the difference and its interval follow from the sums.
    generator = np.random.default_rng(0)
    target = generator.normal(size=(64, 4, 2))
    noisy = target + generator.normal(size=target.shape)

    def sums(prediction):
        return np.stack([prediction.sum(1), (prediction**2).sum(1), (prediction * target).sum(1)], axis=-1)

    per_seed = {0: {"names": np.array(["same", "noisy"]), "model_sums": np.stack([sums(target), sums(noisy)]),
                    "target_sums": np.stack([target.sum(1), (target**2).sum(1)], axis=-1), "bins": np.array(4)}}
    result = bootstrap_difference(per_seed, "noisy", "same", None, resamples=400)
    expected = np.mean([np.corrcoef(noisy[..., t].ravel(), target[..., t].ravel())[0, 1] for t in range(2)]) - 1.0
    assert result["difference"] == pytest.approx(expected, abs=1e-12)
    assert result["low"] < result["difference"] < result["high"] < 0
    only_second_track = bootstrap_difference(per_seed, "noisy", "same", [1], resamples=10)
    assert only_second_track["difference"] == pytest.approx(
        np.corrcoef(noisy[..., 1].ravel(), target[..., 1].ravel())[0, 1] - 1.0, abs=1e-12)


RECORDED = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "accuracy_study"


def test_the_recorded_write_up_and_readme_say_what_the_recorded_study_gives():
    record = json.loads((RECORDED / "study.json").read_text())
    docs = (RECORDED.parent.parent.parent / "docs" / "accuracy-study.md").read_text()
    # Issue 23's design states the rules' verdicts instead of the earlier design's worded answer.
    assert all(line in docs for line in verdict_lines(record)) if "decisions" in record else answer(record) in docs
    readme = (RECORDED.parent.parent.parent / "README.md").read_text()
    rows = [line for line in (RECORDED / "summary.md").read_text().splitlines() if line.startswith("| ")]
    assert rows and all(line in readme for line in rows)
    assert record["run"]["commit"][:7] in readme


def test_the_answer_says_when_the_gap_depends_on_the_learning_rate():
    record = json.loads((RECORDED / "study.json").read_text())
    if not record["attention_matters"]["met"] or not record["settings"].get("lr_factors"):
        pytest.skip("the recorded study is a quick run or has no learning-rate runs (issue 23's design)")
    text = answer(record)
    assert "not a learning-rate artefact" in text and "What it predicts for the real model" in text
    # At 3x the learning rate, make the report's layer beat ours on the first seed: the verdict must turn.
    changed = copy.deepcopy(record)
    for model in changed["models"]:
        if model["key"] == "fresh-report" and model["lr_factor"] == 3.0:
            ours = next(m for m in changed["models"] if m["key"] == "fresh-ours" and m["lr_factor"] == 3.0)
            model["metrics"]["pooled/long-range"]["values"][0] = ours["metrics"]["pooled/long-range"]["values"][0] + 0.01
    assert "depends on the learning rate" in answer(changed)
    # Attention that does not matter: no prediction for the real model.
    changed["attention_matters"]["met"] = False
    assert "What it predicts" not in answer(changed)


def test_a_study_into_a_folder_held_by_another_run_is_refused(tmp_path, capsys):
    """The whole study (and its estimate) holds OUT.lock: a second one into the same folder is one line."""
    import os

    from senformer.outputs import output_lock

    settings_file = tmp_path / "micro.json"
    settings_file.write_text(json.dumps(micro_settings().to_dict()))
    out = tmp_path / "study"
    for extra in ([], ["--estimate"]):
        with output_lock(out):
            assert main(["study", "accuracy", "--out", str(out), "--settings", str(settings_file), *extra]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and f"pid {os.getpid()}" in error and not out.exists()
