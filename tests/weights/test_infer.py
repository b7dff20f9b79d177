"""Borzoi's config from tensor shapes (Enformer's is covered in test_loading.py)."""

import pytest
import torch

from senformer import load_model, save_model
from senformer.config import BorzoiConfig, preset
from senformer.errors import UserError
from senformer.model.borzoi import Borzoi
from senformer.weights import infer_config


def shapes_of(config: BorzoiConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return Borzoi(config).state_dict()


@pytest.mark.parametrize("config", [
    preset("borzoi-pred-small"),
    preset("borzoi-micro"),
    preset("borzoi-pred-small", value_size=20, num_relative_position_features=16),
    preset("borzoi-pred-small", attention="rotary", relative_positions=False, heads=4, key_size=24, kv_heads=2,
           rotary_dims=8),
], ids=["pred-small", "micro", "value-size", "rotary"])
def test_shapes_give_the_architecture(config):
    # What no shape tells (crop, target length, dropout, rotary_dims and base) keeps the defaults; rotary
    # attention's head count and rotated dimensions come as overrides (every head has dim / heads dimensions).
    rotary = config.attention == "rotary"
    inferred = infer_config(shapes_of(config), overrides={"heads": 4, "rotary_dims": 8} if rotary else None)
    assert isinstance(inferred, BorzoiConfig)
    shapeless = ("crop", "target_length", "dropout_rate", "attention_dropout_rate", "final_dropout_rate", "rotary_dims")
    assert inferred == config.replace(**{name: getattr(inferred, name) for name in shapeless})


def test_published_tower_and_refusals():
    assert infer_config(shapes_of(preset("borzoi", depth=0))).conv_tower_divisible_by == 32
    state = dict(shapes_of(preset("borzoi-pred-small")))
    state["conv_tower.2.conv.weight"] = torch.empty(50, 48, 5, device="meta")
    with pytest.raises(UserError, match="do not grow exponentially"):
        infer_config(state)
    del state["conv_tower.1.conv.weight"]
    with pytest.raises(UserError, match="found blocks"):
        infer_config(state)


def test_bare_safetensors_load_as_borzoi(tmp_path):
    model = Borzoi(preset("borzoi-pred-small", crop=0))
    save_model(model, tmp_path / "native")
    (tmp_path / "native" / "config.json").unlink()  # the tensors alone
    with pytest.warns(UserWarning, match=r"defaults used for target_length=None, attention='full'"):
        loaded = load_model(tmp_path / "native" / "model.safetensors", overrides={"crop": 0})
    assert isinstance(loaded, Borzoi) and loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
