"""What trains: attention-only changes only attention parameters and frozen BatchNorm statistics stay."""

import pytest
import torch
from helpers import tiny_model
from train_support import head_data, read_weights, tiny_settings

from senformer.errors import UserError
from senformer.train import freeze, run_training, set_training_mode, trainable_names
from senformer import save_model


@pytest.fixture
def pretrained(tmp_path):
    """Native weights of a randomised tiny model (every parameter and BatchNorm statistic non-trivial)."""
    return save_model(tiny_model(seed=3), tmp_path / "pretrained")


def test_attention_names_are_exactly_the_attention_modules():
    model = tiny_model()
    names = trainable_names(model, "attention")
    assert names and all(name.split(".")[2] == "attention" for name in names)
    expected = {f"transformer.{j}.attention.{p}" for j in range(2)
                for p in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.weight", "to_out.bias",
                          "to_r_k.weight", "r_w_bias", "r_r_bias")}
    assert set(names) == expected  # not attention_norm, not the MLP
    assert set(trainable_names(model, "heads")) == {"heads.human.weight", "heads.human.bias", "heads.mouse.weight", "heads.mouse.bias"}
    assert trainable_names(model, r"^final_pointwise\.conv\.") == ["final_pointwise.conv.weight", "final_pointwise.conv.bias"]
    with pytest.raises(UserError, match="matches no parameter"):
        trainable_names(model, "^nothing_like_this")
    with pytest.raises(UserError, match="valid regular expression"):
        trainable_names(model, "transformer.(")


def test_frozen_batchnorms_run_in_eval_mode():
    model = tiny_model()
    freeze(model, "attention")
    set_training_mode(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and not any(norm.training for norm in norms)
    assert all(block.attention.training for block in model.transformer)
    freeze(model, "all")
    set_training_mode(model)
    assert all(norm.training for norm in norms)


@pytest.mark.slow
def test_attention_only_training_changes_only_attention(tmp_path, pretrained):
    settings = tiny_settings(init_weights=str(pretrained), attention="bigbird", train="attention", steps=3,
                             model_overrides={})
    weights = run_training(settings, tmp_path / "run", data=head_data())
    before, after = read_weights(pretrained), read_weights(weights)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    attention = {name for name in before if ".attention." in name}
    assert changed == attention  # every attention tensor moved, nothing else (BatchNorm statistics included)
    assert any(name.endswith("running_mean") for name in before)
    # The run kept the pretrained architecture and switched the kind.
    assert (weights / "config.json").read_text().count('"attention": "bigbird"') == 1


@pytest.mark.slow
def test_full_training_moves_batchnorm_statistics(tmp_path, pretrained):
    settings = tiny_settings(init_weights=str(pretrained), train="all", steps=2, model_overrides={})
    after = read_weights(run_training(settings, tmp_path / "run", data=head_data()))
    before = read_weights(pretrained)
    assert not torch.equal(before["stem.pointwise.norm.running_mean"], after["stem.pointwise.norm.running_mean"])
    assert after["stem.pointwise.norm.num_batches_tracked"] == before["stem.pointwise.norm.num_batches_tracked"] + 2
    assert torch.equal(before["heads.mouse.weight"], after["heads.mouse.weight"])  # no mouse data: frozen


@pytest.mark.slow
def test_new_head_trains_on_top_of_pretrained_weights(tmp_path, pretrained):
    from train_support import examples

    from senformer.train import HeadData

    data = {"atac": HeadData(examples(16, 2, seed=7))}
    settings = tiny_settings(heads=("atac",), init_weights=str(pretrained), new_heads={"atac": 2}, train="heads",
                             steps=2, model_overrides={})
    weights = run_training(settings, tmp_path / "run", data=data)
    before, after = read_weights(pretrained), read_weights(weights)
    assert after["heads.atac.weight"].shape == (2, 96)
    assert set(after) - set(before) == {"heads.atac.weight", "heads.atac.bias"}
    assert all(torch.equal(before[name], after[name]) for name in before)  # trunk and old heads untouched


def test_head_without_new_head_flag_is_a_clear_error(tmp_path, pretrained):
    from train_support import examples

    from senformer.train import HeadData

    settings = tiny_settings(heads=("atac",), init_weights=str(pretrained), model_overrides={})
    with pytest.raises(UserError, match=r"no head 'atac'.*--new-head NAME=TRACKS"):
        run_training(settings, tmp_path / "run", data={"atac": HeadData(examples(4, 2, seed=1))})
    with pytest.raises(UserError, match=r"head 'human' predicts 5 tracks but its data has 2: train a new head for them \(--new-head NAME=2"):
        run_training(tiny_settings(), tmp_path / "run2", data={"human": HeadData(examples(4, 2, seed=1))})
    with pytest.raises(UserError, match=r"already exist"):
        run_training(tiny_settings(init_weights=str(pretrained), new_heads={"human": 3}, model_overrides={}),
                     tmp_path / "run3", data=head_data())
