"""The study's attention variants (issue 23 item 2): the report's layer as the report built it (std-0.02
output projection, q/k/v biases, the restricted random-block plan), rotary and absolute positions, and a
config that writes them only when set."""

import pytest
import torch

from senformer import EnformerConfig
from senformer.errors import UserError
from senformer.model.attention import build_attention, make_block_pattern

SMALL = {"dim": 16, "depth": 1, "heads": 2, "key_size": 4, "conv_tower_divisible_by": 4, "target_length": 4,
         "output_heads": {"human": 2}, "relative_positions": False, "attention_dropout_rate": 0.0,
         "positional_dropout_rate": 0.0}


def test_the_variants_are_written_only_when_set():
    plain = EnformerConfig(**SMALL)
    assert not {"random_block_fraction", "attention_bias", "attention_output_init", "added_positions"} & set(plain.to_dict())
    built = plain.replace(attention_bias=True, attention_output_init="normal", random_block_fraction=0.375)
    values = built.to_dict()
    assert values["attention_bias"] is True and values["random_block_fraction"] == 0.375
    assert EnformerConfig.from_dict(values) == built
    with pytest.raises(UserError, match="added_positions='sideways'"):
        plain.replace(added_positions="sideways")
    with pytest.raises(UserError, match="random_block_fraction=0.0"):
        plain.replace(random_block_fraction=0.0)


def test_the_report_layer_as_built_starts_with_biases_and_a_std_002_output():
    torch.manual_seed(0)
    config = EnformerConfig(**{**SMALL, "dim": 256, "heads": 4, "key_size": 64, "conv_tower_divisible_by": 16,
                               "attention": "bigbird", "attention_bias": True, "attention_output_init": "normal"})
    layer = build_attention(config)
    for name in ("to_q", "to_k", "to_v"):
        assert getattr(layer, name).bias is not None and not getattr(layer, name).bias.any()
    assert layer.to_out.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert not build_attention(config.replace(attention_output_init="zero", attention_bias=False)).to_out.weight.any()
    assert build_attention(config.replace(attention_bias=False)).to_q.bias is None


def test_the_restricted_plan_draws_random_blocks_from_blocks_1_to_9_of_24():
    pattern = make_block_pattern(24 * 4, heads=4, block_size=4, num_window_blocks=3, num_global_blocks=2,
                                 num_random_blocks=3, random_block_fraction=0.375)
    random_slots = pattern.key_blocks[..., 3 + 2:][pattern.valid[..., 3 + 2:]]
    assert random_slots.numel() and int(random_slots.min()) >= 1 and int(random_slots.max()) <= 9
    unrestricted = make_block_pattern(24 * 4, heads=4, block_size=4, num_window_blocks=3, num_global_blocks=2,
                                      num_random_blocks=3)
    assert int(unrestricted.key_blocks[..., 5:][unrestricted.valid[..., 5:]].max()) > 9


@pytest.mark.parametrize("positions", ["rotary", "absolute"])
def test_added_positions_break_permutation_equivariance(positions):
    """Without positions full attention is permutation-equivariant (it cannot tell a near enhancer from a far
    one); rotary or absolute positions make the output depend on where each input sits."""
    torch.manual_seed(0)
    config = EnformerConfig(**{**SMALL, "attention_output_init": "normal"})
    x = torch.randn(1, 12, 16)
    order = torch.randperm(12)
    for added, equivariant in (("none", True), (positions, False)):
        layer = build_attention(config.replace(added_positions=added)).eval()
        with torch.no_grad():
            same = torch.allclose(layer(x[:, order]), layer(x)[:, order], atol=1e-6)
        assert same is equivariant, added
