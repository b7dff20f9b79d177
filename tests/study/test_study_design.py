"""Issue 23's design: the settings file fixes the rows and seeds; the new rows' runs train what they claim;
row 1's plateau rule; and every step after training (evaluation, per-seed files, verdicts, write-up,
recomputation) on models that stand in for trained ones, without the minutes the training would take."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import randomize_
from safetensors.torch import load_file

from senformer import Enformer, EnformerConfig, save_model
from senformer.cli import main
from senformer.errors import UserError
from senformer.study import StudySettings, model_entries, study_runs
from senformer.study.evaluation import PER_SEED, evaluate_seed, evaluation_folder
from senformer.study.results import recompute, summarise, write_results
from senformer.study.rules import read_rules_file, settings_from_rules
from senformer.study.runs import ATTENTION_AND_NORM, RUN, plateau_reached, prepare, run_output, snapshot_path
from senformer.study.writeup import write_docs

SETTINGS = Path(__file__).resolve().parents[2] / "benchmarks" / "study" / "settings.json"
MICRO = {"dim": 24, "depth": 1, "heads": 2, "key_size": 4, "conv_tower_divisible_by": 4, "block_size": 2,
         "num_window_blocks": 3, "num_global_blocks": 2, "num_random_blocks": 1, "dropout_rate": 0.0,
         "attention_dropout_rate": 0.0, "positional_dropout_rate": 0.0, "final_dropout_rate": 0.0}


def tiny_rules() -> dict:
    """The committed settings file's rules and rows on the tiniest study: two seeds (one for other rows)."""
    rules = copy.deepcopy(read_rules_file(SETTINGS))
    rules.update(smoke=True, resamples=40, seeds={"conclusion": [0, 1], "other": [0]})
    rules["study"] = {**rules["study"], "data_size": "tiny", "model": MICRO, "batch_size": 2, "full_steps": 2,
                      "finetune_steps": 1, "fresh_multiple": 2, "full_warmup_steps": 1, "finetune_warmup_steps": 1,
                      "eval_every": 1, "eval_examples": 2, "test_batch_size": 4, "bootstrap": 20,
                      "receptive_field_sequences": 1, "receptive_field_positions": 2, "deep_depth": 2,
                      "plateau": {"every": 1, "patience": 1, "min_gain": 0.5, "max_steps": 3},
                      "data_overrides": {"num_tracks": 12, "long_range_signals": ["band", "decay", "count"]}}
    return rules


def test_the_settings_file_fixes_rows_and_seeds():
    settings = settings_from_rules(read_rules_file(SETTINGS))
    assert settings.design == "issue-23" and len(settings.seeds) == 5 and settings.other_seeds == 3
    runs = study_runs(Path("OUT"), settings)
    seeds = {}
    for run in runs:
        seeds.setdefault(run.key, set()).add(run.seed)
    for key in ("full", "fresh-ours", "fresh-report", "fresh-report-built", "fresh-nopos"):
        assert seeds[key] == {0, 1, 2, 3, 4}, key
    for key in ("fresh-rotary", "fresh-absolute", "report-all", "full-continued", "no-attention", "full-deep",
                "fresh-ours-deep", "full-plateau", "finetune"):
        assert seeds[key] == {0, 1, 2}, key
    by_name = {run.name: run for run in runs}
    built = by_name["fresh-report-built-seed0"].arguments
    assert built[built.index("--init-skip") + 1] == ATTENTION_AND_NORM == built[built.index("--train") + 1]
    assert {"attention_bias=true", "attention_output_init=normal", "random_block_fraction=0.375"} <= set(built)
    nopos = by_name["fresh-nopos-seed0"].arguments
    assert "relative_positions=false" in nopos and not any(a.startswith("key_size=") for a in nopos)
    assert "added_positions=rotary" in by_name["fresh-rotary-seed1"].arguments
    # Every row built on row 1 trains the same steps at the same rate from the same seed's data order.
    for key in ("fresh-ours", "fresh-report", "fresh-report-built", "fresh-nopos", "fresh-rotary", "full-continued"):
        run = by_name[f"{key}-seed2"]
        # Issue 14's rows are read at row 4's steps too (a snapshot); issue 23's at rows 5-7's only.
        reported = (settings.finetune_steps, settings.fresh_steps) if key in ("fresh-ours", "fresh-report") \
            else (settings.fresh_steps,)
        assert run.phases == reported and run.depends == ("full-seed2",)
        assert run.arguments[run.arguments.index("--lr") + 1] == repr(settings.finetune_learning_rate)
        assert run.arguments[run.arguments.index("--seed") + 1] == "2"
    plateau = by_name["full-plateau-seed0"]
    assert plateau.stop == settings.plateau and plateau.phases[-1] == settings.plateau["max_steps"]
    assert plateau.continues == "full-seed0" == plateau.depends[0] and plateau.first_step == settings.full_steps
    assert plateau.phases[0] == settings.full_steps + settings.plateau["every"]
    assert StudySettings.from_dict(settings.to_dict()) == settings
    quick = settings.quick()
    assert quick.seeds == (0,) and quick.plateau["every"] % quick.eval_every == 0


def test_the_plateau_rule(tmp_path):
    rule = {"patience": 2, "min_gain": 0.01}

    def log(values):
        (tmp_path / "log.jsonl").write_text("".join(json.dumps({"kind": "eval", "step": i, "pearson/long-range": v}) + "\n"
                                                    for i, v in enumerate(values)))
        return plateau_reached(tmp_path, rule)

    assert not log([0.1, 0.2])
    assert not log([0.1, 0.2, 0.25, 0.3])
    assert log([0.1, 0.3, 0.305, 0.29])


def test_the_report_layer_as_built_and_the_no_attention_row_train_what_they_claim(tmp_path, capsys):
    """One step of each run as the study gives it: the report's layer as built starts its LayerNorm afresh
    and trains it with the attention (biases included), the trunk bit-identical; the no-attention row trains
    everything but attention, whose output stays at its zero start."""
    from senformer.data.synthetic import make_synthetic

    rules = tiny_rules()
    settings = settings_from_rules(rules)
    out = tmp_path / "study"
    data = make_synthetic(out / "data", "tiny", seed=0)
    config = EnformerConfig(**{**MICRO, "output_heads": {"human": 8}, "target_length": 16})
    row1 = save_model(randomize_(Enformer(config), seed=3), out / "runs" / "full-seed0" / "weights")
    (out / "model.json").write_text(json.dumps({**MICRO, "attention": "full", "output_heads": {"human": 8},
                                                "target_length": 16}))
    runs = {run.name: run for run in study_runs(out, settings)}
    initial = load_file(str(row1 / "model.safetensors"))
    for name in ("fresh-report-built-seed0", "no-attention-seed0"):
        arguments = [a if a != str(out / "data") else str(data) for a in runs[name].arguments]
        # No validation passes (the last --eval-every wins): only what the step trains is checked here.
        assert main(["train", *arguments, "--eval-every", "0", "--steps", "1", "--out", str(tmp_path / name)]) == 0, \
            capsys.readouterr().err
    built = load_file(str(tmp_path / "fresh-report-built-seed0" / "weights" / "model.safetensors"))
    norm = "transformer.0.attention_norm.weight"
    assert not torch.equal(built[norm], initial[norm])  # re-initialised (ones), then trained
    assert "transformer.0.attention.to_q.bias" in built and built["transformer.0.attention.to_q.weight"].shape == (24, 24)
    for name, tensor in initial.items():
        if ".attention" not in name:
            assert torch.equal(built[name], tensor), name
    alone = load_file(str(tmp_path / "no-attention-seed0" / "weights" / "model.safetensors"))
    assert not alone["transformer.0.attention.to_out.weight"].any()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny issue-23 study whose runs are stand-ins (random models saved where each run's weights go,
    recorded done), evaluated and summarised in-process with the rules."""
    out = tmp_path_factory.mktemp("design") / "study"
    rules = tiny_rules()
    settings = settings_from_rules(rules)
    prepare(out, settings)
    model = json.loads((out / "model.json").read_text())
    for index, run in enumerate(study_runs(out, settings)):
        values = dict(model)
        if run.key in ("full-deep", "fresh-ours-deep"):
            values["depth"] = settings.deep_depth
        if run.key in ("fresh-report-built",):
            values.update(relative_positions=False, key_size=12, attention_bias=True)
        directory = out / "runs" / run.name
        for step_index, steps in enumerate(run.phases[:-1] if run.stop is None else []):
            save_model(randomize_(Enformer(EnformerConfig(**values)), seed=100 * index + step_index), snapshot_path(directory, steps))
        save_model(randomize_(Enformer(EnformerConfig(**values)), seed=index), directory / "weights")
        run_output(run, out, produced=f"stand-in {run.name}").write_record()
    for seed in settings.seeds:
        folder = evaluation_folder(out, seed)
        folder.mkdir(parents=True)
        evaluate_seed(out, seed, folder)
    record = summarise(out, settings, rules)
    rules_file = out.parent / "rules.json"
    rules_file.write_text(json.dumps(rules))
    from senformer.study.rules import settings_digest

    record["rules"] = {"file": str(rules_file), "sha256": settings_digest(rules_file)}
    record["run"] = {"command": "test", "quick": False}
    results = out.parent / "results"
    write_results(record, results, [evaluation_folder(out, seed) / PER_SEED for seed in settings.seeds])
    docs = write_docs(record, out.parent / "accuracy-study.md", results)
    return {"out": out, "settings": settings, "results": results, "docs": docs, "rules": rules_file}


def test_every_row_is_evaluated_on_its_seeds(evaluated):
    settings = evaluated["settings"]
    names = {seed: [entry.name for entry in model_entries(evaluated["out"], settings, seed)] for seed in settings.seeds}
    assert {"full@2", "control", "zero-shot", "fresh-report-built@2", "fresh-nopos@2", "fresh-ours@1"} <= set(names[1])
    assert not {"fresh-rotary@2", "full-plateau", "no-attention@2", "finetune@1"} & set(names[1])
    assert not {"fresh-nopos@1", "fresh-report-built@1"} & set(names[0])  # issue 23's rows: rows 5-7's steps only
    assert {"fresh-rotary@2", "fresh-absolute@2", "full-continued@2", "no-attention@2", "full-deep@2",
            "fresh-ours-deep@2", "full-plateau"} <= set(names[0])


def test_the_docs_state_the_verdicts_and_numbers_of_study_json(evaluated):
    record = json.loads((evaluated["results"] / "study.json").read_text())
    text = evaluated["docs"].read_text()
    assert len(record["decisions"]) == len(read_rules_file(SETTINGS)["rules"])
    for decision in record["decisions"]:
        assert f"**{decision['name']}** ({decision['verdict']}): {decision['statement']}" in text
        numbers = decision["numbers"]["contrasts"][0] if decision["kind"] == "ordered" else decision["numbers"]
        assert f"{numbers['paired']['difference']:+.3f}" in text
    assert record["rules"]["sha256"][:16] in text
    assert record["plateau"]["stopped_at"] and "stopping rule, fixed beforehand" in text
    coverage = record["attended_blocks"]  # 16 blocks of 2 positions, 3 window + 2 global + 1 random per head
    assert coverage["blocks"] == 16 and 5 <= coverage["per_head"] <= 6  # edge windows lose a block to a global
    assert coverage["per_head"] < coverage["across_heads"] <= coverage["per_head"] + 1  # 2 heads, 1 random each
    assert f"{coverage['across_heads']:.1f} across the heads together" in text
    assert set(record["data"]["track_sets"]) >= {"long-range/band", "long-range/decay", "long-range/count"}
    assert sorted(p.name for p in (evaluated["results"] / "per_seed").iterdir()) == ["seed-0.npz", "seed-1.npz"]


def test_the_per_seed_files_recompute_every_interval_and_catch_a_change(evaluated, tmp_path):
    decisions, problems = recompute(evaluated["results"], evaluated["rules"])
    assert problems == [] and len(decisions) == len(read_rules_file(SETTINGS)["rules"])
    # Another seed's numbers in a per-seed file: the recomputation no longer reproduces study.json.
    import shutil

    copy_dir = tmp_path / "results"
    shutil.copytree(evaluated["results"], copy_dir)
    path = copy_dir / "per_seed" / "seed-1.npz"
    with np.load(path) as arrays:
        values = {key: arrays[key] for key in arrays.files}
    values["sums"] = values["sums"][::-1].copy()  # every model's sums under another model's name
    np.savez_compressed(path, **values)
    assert recompute(copy_dir, evaluated["rules"])[1]
    other_rules = tmp_path / "rules.json"
    other_rules.write_text(evaluated["rules"].read_text() + " ")
    assert any("sha256" in problem for problem in recompute(evaluated["results"], other_rules)[1])


def test_a_quick_run_where_attention_does_not_matter_says_first_that_it_is_a_smoke_run(tmp_path, monkeypatch, capsys):
    import senformer.study

    def fake_run_study(out, settings, **options):
        assert settings.seeds == (0,) and options["extra"]["quick"]
        path = tmp_path / "study.json"
        path.write_text(json.dumps({"models": [{"row": "1", "name": "full@375", "metrics": {}}], "attention_matters": {
            "met": met, "required_loss": 0.1, "loss_on_long_range": 0.01}}))
        return path

    monkeypatch.setattr(senformer.study, "run_study", fake_run_study)
    for met in (False, True):
        assert main(["study", "accuracy", "--out", str(tmp_path / "quick"), "--rules", str(SETTINGS), "--quick"]) == 0
        printed = capsys.readouterr().out
        assert printed.startswith("SMOKE RUN (--quick)") is (not met)


def test_row_1_to_a_plateau_is_row_1_trained_on_bit_for_bit(tmp_path):
    """The plateau row goes on from row 1's last checkpoint (weights, optimiser, data position, random
    states): at step 3 it equals row 1 trained straight to step 3, and row 1's own folder is left as it was."""
    import dataclasses

    from senformer.study.runs import execute_run

    rules = tiny_rules()
    rules["study"]["plateau"] = {"every": 1, "patience": 9, "min_gain": 0.0, "max_steps": 3}  # never stops early
    settings = settings_from_rules(rules)
    out = tmp_path / "study"
    prepare(out, settings)
    runs = {run.name: run for run in study_runs(out, settings)}
    plateau = runs["full-plateau-seed0"]
    assert plateau.depends == ("full-seed0",) and plateau.phases == (3,) and plateau.first_step == 2
    execute_run(runs["full-seed0"], out, print)
    row1 = out / "runs" / "full-seed0" / "weights" / "model.safetensors"
    before = row1.read_bytes()
    assert "resumed to step 3" in execute_run(plateau, out, print)
    execute_run(dataclasses.replace(runs["full-seed0"], name="straight", phases=(3,)), out, print)
    continued = load_file(str(out / "runs" / "full-plateau-seed0" / "weights" / "model.safetensors"))
    straight = load_file(str(out / "runs" / "straight" / "weights" / "model.safetensors"))
    assert continued.keys() == straight.keys()
    assert all(torch.equal(continued[name], straight[name]) for name in straight)
    assert row1.read_bytes() == before
    steps = [json.loads(line)["step"] for line in (out / "runs" / "full-plateau-seed0" / "log.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert steps[-1] == 3 and 2 in steps  # row 1's validation points, then the continuation's


def test_a_plateau_that_ends_before_row_1_does_is_refused():
    with pytest.raises(UserError, match="max_steps=1200 must reach"):
        StudySettings(full_steps=1500, eval_every=100, plateau={"every": 200, "patience": 2, "min_gain": 0.0,
                                                                 "max_steps": 1200})
