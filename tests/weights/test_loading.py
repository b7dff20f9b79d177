"""load_model's new heads and skip=: what keeps its fresh initialisation, and that everything else loads exactly."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import tiny_model

from senformer import Enformer, load_model, save_model
from senformer.errors import UserError
from senformer.weights import ATTENTION_TENSORS


def test_attention_means_exactly_the_attention_modules_tensors():
    model = tiny_model()
    by_module = {
        name for name, tensor in model.state_dict(keep_vars=True).items()
        if any(tensor is owned for attention in model.attention_modules() for owned in attention.state_dict(keep_vars=True).values())
    }
    by_pattern = {name for name in model.state_dict() if re.search(ATTENTION_TENSORS, name)}
    assert by_pattern == by_module and len(by_module) == 2 * 8  # to_q, to_k, to_v, to_out (2), to_r_k, r_w_bias, r_r_bias
    assert not any("attention_norm" in name or "feed_forward" in name for name in by_pattern)


def test_skip_attention_loads_the_rest_exactly_and_keeps_a_fresh_layer_of_another_shape(tmp_path):
    source = tiny_model(seed=1)
    save_model(source, tmp_path)
    overrides = {"attention": "bigbird", "relative_positions": False, "key_size": 24}
    torch.manual_seed(7)
    model, report = load_model(tmp_path, overrides, skip="attention", with_report=True)
    torch.manual_seed(7)
    own_initialisation = Enformer(model.config).state_dict()
    state, before = model.state_dict(), source.state_dict()
    assert report.complete and not model.training
    assert set(report.fresh) == {name for name in state if ".attention." in name}
    # The weights' relative-position tensors have no place in the report's layer: skipped, not unexpected.
    assert "transformer.0.attention.r_w_bias" in report.skipped and not report.unexpected
    for name in report.loaded:
        assert torch.equal(state[name], before[name]), name
    assert set(report.loaded) == {name for name in before if ".attention." not in name}
    for name in report.fresh:
        assert torch.equal(state[name], own_initialisation[name]), name
    assert not state["transformer.1.attention.to_out.weight"].any()  # the model's own init: zero output layer


def test_skip_leaves_strictness_for_everything_else(tmp_path):
    save_model(tiny_model(seed=2), tmp_path)
    with pytest.raises(UserError, match=r"2 with the wrong shape: heads\.human\.weight \(model \[6, 96\], weights \[5, 96\]\)"):
        load_model(tmp_path, {"output_heads": {"human": 6, "mouse": 3}}, skip="attention")
    with pytest.raises(UserError, match="matches no tensor"):
        load_model(tmp_path, skip=r"^no_such_layer\.")
    with pytest.raises(UserError, match="valid regular expression"):
        load_model(tmp_path, skip="transformer.(")


def test_a_skip_pattern_keeps_named_tensors_fresh(tmp_path):
    source = tiny_model(seed=3)
    save_model(source, tmp_path)
    model, report = load_model(tmp_path, skip=r"^heads\.mouse\.", with_report=True)
    assert sorted(report.fresh) == sorted(report.skipped) == ["heads.mouse.bias", "heads.mouse.weight"]
    assert not model.heads.mouse.bias.any()  # fresh bias: zeros, not the source's random values
    assert torch.equal(model.heads.human.weight, source.heads.human.weight)


def test_new_heads_are_fresh_and_an_existing_name_is_an_error(tmp_path):
    source = tiny_model(seed=4)
    save_model(source, tmp_path)
    model, report = load_model(tmp_path, new_heads={"pig": 4}, with_report=True)
    assert model.config.output_heads == {"human": 5, "mouse": 3, "pig": 4}
    assert sorted(report.fresh) == ["heads.pig.bias", "heads.pig.weight"] and report.complete
    assert torch.equal(model.heads.human.weight, source.heads.human.weight)
    with pytest.raises(UserError, match="new head.* mouse already exist"):
        load_model(tmp_path, new_heads={"mouse": 3})
