"""Distillation: the teacher's predictions are the Poisson targets, mixed with the data by a weight."""

import pytest
import torch
from helpers import tiny_model
from train_support import head_data, read_weights, tiny_settings

from senformer.errors import UserError
from senformer.train import HeadData, InMemoryExamples, run_training
from senformer import save_model


@pytest.fixture
def teacher(tmp_path):
    return save_model(tiny_model(seed=5), tmp_path / "teacher")


def _with_targets(data, targets):
    train = data["human"].train
    return {"human": HeadData(InMemoryExamples(train.sequences, targets), data["human"].eval)}


@pytest.mark.slow
def test_teacher_only_ignores_the_data_targets(tmp_path, teacher):
    """distill_weight 1: two datasets with the same sequences and unrelated targets train identically;
    distill_weight 0.5: they do not."""
    data = head_data()
    other = _with_targets(data, torch.rand_like(data["human"].train.targets) * 10)
    weights = {}
    for weight in (1.0, 0.5):
        settings = tiny_settings(teacher=str(teacher), distill_weight=weight, steps=2, eval_every=2, eval_examples=4)
        first = read_weights(run_training(settings, tmp_path / f"a{weight}", data=data))
        second = read_weights(run_training(settings, tmp_path / f"b{weight}", data=other))
        weights[weight] = all(torch.equal(first[name], second[name]) for name in first)
    assert weights == {1.0: True, 0.5: False}


@pytest.mark.slow
def test_validation_reports_correlation_with_the_teacher(tmp_path, teacher):
    from senformer.train.loop import read_log

    settings = tiny_settings(init_weights=str(teacher), teacher=str(teacher), model_overrides={}, steps=1,
                             learning_rate=1e-9, warmup_steps=0, eval_every=1, eval_examples=8)
    run_training(settings, tmp_path / "run", data=head_data())
    first = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "eval"][0]
    assert first["teacher_pearson"] == pytest.approx(1.0, abs=1e-9)  # the student starts as the teacher


def test_teacher_with_other_tracks_is_a_clear_error(tmp_path):
    wrong = save_model(tiny_model(seed=5, output_heads={"human": 7}), tmp_path / "teacher")
    with pytest.raises(UserError, match=r"teacher .* has 7 tracks for head 'human', the student 5"):
        run_training(tiny_settings(teacher=str(wrong)), tmp_path / "run", data=head_data())
