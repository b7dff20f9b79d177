import json
import re

import pytest

from senformer import EnformerConfig, preset
from senformer.config import PRESETS


def test_official_defaults():
    config = EnformerConfig()
    assert (config.dim, config.depth, config.heads, config.key_size, config.head_value_size) == (1536, 11, 8, 64, 192)
    assert config.target_length == 896 and config.output_heads == {"human": 5313, "mouse": 1643}
    assert config.relative_features == 192 and config.bin_size == 128 and config.attention == "full"
    assert (config.dropout_rate, config.attention_dropout_rate, config.positional_dropout_rate, config.final_dropout_rate) == (0.4, 0.05, 0.01, 0.05)


def test_depth_zero_is_valid():
    assert EnformerConfig(depth=0).depth == 0


def test_json_round_trip(tmp_path):
    config = EnformerConfig(attention="bigbird", target_length=None, output_heads={"human": 7}, positional_basis_length=1536)
    assert EnformerConfig.from_json(config.to_json()) == config
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert EnformerConfig.from_json(path) == config
    assert json.loads(path.read_text())["attention"] == "bigbird"


def test_frozen():
    with pytest.raises(Exception):
        EnformerConfig().dim = 3


@pytest.mark.parametrize(
    "changes,quoted",
    [
        ({"dim": 100, "heads": 8}, "dim=100"),
        ({"attention": "flash"}, "'flash'"),
        ({"num_window_blocks": 2}, "num_window_blocks=2"),
        ({"dropout_rate": 1.5}, "dropout_rate=1.5"),
        ({"num_global_blocks": 1}, "num_global_blocks=1"),
        ({"dim": 192}, "last tower filter of dim=192 to 256"),
        ({"output_heads": {"human": 0}}, "'human'"),
    ],
)
def test_invalid_values_raise_one_error_quoting_them(changes, quoted):
    with pytest.raises(ValueError, match="invalid EnformerConfig") as error:
        EnformerConfig(**changes)
    assert quoted in str(error.value)


@pytest.mark.parametrize("dim,heads", [(64, 8), (96, 2), (192, 8)])
def test_a_config_too_small_for_the_tower_divisor_names_the_divisor_that_fits(dim, heads):
    with pytest.raises(ValueError) as error:
        EnformerConfig(dim=dim, heads=heads, num_relative_position_features=6)
    fix = re.search(r"--set conv_tower_divisible_by=(\d+) fits", str(error.value))
    assert fix, str(error.value)
    fitted = EnformerConfig(dim=dim, heads=heads, num_relative_position_features=6,
                            conv_tower_divisible_by=int(fix.group(1)))
    assert fitted.conv_tower_filters[-1] == dim and min(fitted.conv_tower_filters) > 0


def test_unknown_json_fields_are_rejected():
    with pytest.raises(ValueError, match="unknown EnformerConfig fields: colour"):
        EnformerConfig.from_dict({"colour": "blue"})


def test_lengths():
    config = EnformerConfig()
    assert config.output_length(196_608) == 896 and config.num_positions(196_608) == 1536
    long = config.replace(target_length=None)
    assert long.output_length(393_216) == 3072 - 640
    with pytest.raises(ValueError, match="196,600 bp is not valid.*nearest valid: 196,480 or 196,608"):
        config.validate_sequence_length(196_600)


def test_presets():
    assert set(PRESETS) >= {"enformer", "senformer", "s-enformer-report"}
    assert preset("senformer").attention == "bigbird" and preset("senformer").relative_positions
    report = preset("s-enformer-report")
    assert not report.relative_positions and report.key_size == 192
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")
