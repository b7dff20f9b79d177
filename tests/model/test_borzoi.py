"""Borzoi's family: its config, its position features and rotary positions, and the model's geometry.

Against calico's own outputs: tests/weights/test_keras_h5.py; against borzoi-pytorch and flash-attn's
formulas: tests/weights/test_borzoi_pytorch.py.
"""

import json
import math

import pytest
import torch

from helpers import random_tokens, randomize_, training_step
from senformer.bench.memory import saved_tensor_bytes
from senformer.config import (
    BORZOI_PRESETS, BorzoiConfig, EnformerConfig, config_from_dict, config_from_json, preset,
)
from senformer.errors import UserError
from senformer.inference import default_sequence_length
from senformer.model.borzoi import Borzoi, build_model
from senformer.model.enformer import Enformer
from senformer.model.layers import ConvBlock
from senformer.model.positional import borzoi_central_mask_features, relative_position_features
from senformer.model.rotary import apply_rotary, rotary_tables


def tiny_borzoi(seed: int = 0, **overrides) -> Borzoi:
    """Every block kind at a few thousand parameters: tower 8 -> 16 over 3 blocks, 2 U-Net steps, crop 2."""
    values = dict(dim=16, depth=2, heads=2, key_size=4, stem_channels=8, stem_width=5, num_conv_tower_blocks=3,
                  conv_tower_start=8, conv_tower_divisible_by=4, crop=2, final_channels=12,
                  output_heads={"human": 3, "mouse": 2}, dropout_rate=0.0, attention_dropout_rate=0.0,
                  positional_dropout_rate=0.0, final_dropout_rate=0.0, chunk_size=3)
    values.update(overrides)
    torch.manual_seed(seed)
    return randomize_(Borzoi(BorzoiConfig(**values)), seed).eval()


# Config ------------------------------------------------------------------------------------------
def test_published_geometry():
    config = preset("borzoi")
    assert config.conv_tower_filters == [608, 736, 896, 1056, 1280, 1536]  # borzoi-pytorch's widths
    assert (config.bin_size, config.num_positions(524_288), config.output_length(524_288)) == (32, 4096, 16_352)
    assert config.positional_basis_length == 4096
    assert config.output_heads == {"human": 7611, "mouse": 2608}
    assert preset("borzoi", target_length=6144).output_length(524_288) == 6144
    flashzoi = preset("flashzoi")
    assert (flashzoi.attention, flashzoi.heads, flashzoi.key_value_heads, flashzoi.key_size) == ("rotary", 8, 4, 192)
    assert (flashzoi.rotary_dims, flashzoi.rotary_base) == (128, 20_000.0)


def test_fixture_presets_follow_calico_params():
    # The widths baskerville's res_tower gives params_micro.json (160 -> 320, divisible by 8).
    assert preset("borzoi-micro").conv_tower_filters == [160, 184, 208, 240, 280, 320]
    assert preset("borzoi-pred-small").conv_tower_filters == [40, 48, 56, 64, 80, 96]
    assert preset("borzoi-micro").output_length(131_072) == 4096
    assert preset("borzoi-pred-small").output_length(65_536) == 2016


@pytest.mark.parametrize("name", sorted(BORZOI_PRESETS))
def test_json_round_trip(tmp_path, name):
    config = preset(name)
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert config_from_json(path) == config
    assert BorzoiConfig.from_json(path) == config
    assert config_from_dict(config.to_dict()) == config
    assert config.to_dict()["family"] == "borzoi"
    assert isinstance(config_from_dict(EnformerConfig().to_dict()), EnformerConfig)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dim": 1544}, "ends at"),
        ({"heads": 7}, "not divisible by heads"),
        ({"attention": "sparse"}, "attention='sparse'"),
        ({"attention": "rotary"}, "relative_positions=false"),
        ({"attention": "rotary", "relative_positions": False, "kv_heads": 3, "key_size": 192}, "kv_heads=3"),
        ({"attention": "rotary", "relative_positions": False, "key_size": 192, "rotary_dims": 200}, "rotary_dims=200"),
        ({"num_relative_position_features": 33}, "not even"),
        ({"unet_levels": 7}, "unet_levels=7"),
        ({"stem_width": 14}, "must be odd"),
        ({"family": "enformer"}, "family="),
        ({"depth": 1.5}, "depth=1.5"),
    ],
)
def test_invalid_configs_name_the_field(changes, message):
    with pytest.raises(UserError, match="invalid BorzoiConfig") as error:
        BorzoiConfig(**changes)
    assert message in str(error.value)


def test_unknown_fields_and_files(tmp_path):
    with pytest.raises(UserError, match="unknown BorzoiConfig fields: bogus"):
        BorzoiConfig.from_dict({"family": "borzoi", "bogus": 1})
    bad = tmp_path / "config.json"
    bad.write_text('{"family": "borzoi", "dim": -1}')
    with pytest.raises(UserError, match=str(bad)):
        config_from_json(bad)
    bad.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        config_from_json(bad)
    with pytest.raises(UserError, match="unknown preset"):
        preset("borzoi-xl")


def test_sequence_length_rules():
    config = preset("borzoi")
    config.validate_sequence_length(524_288)
    with pytest.raises(UserError, match="multiple of 128"):
        config.validate_sequence_length(524_300)
    with pytest.raises(UserError, match="at least"):
        preset("borzoi", target_length=6144).validate_sequence_length(128 * 1024)
    assert preset("borzoi", target_length=6144).min_sequence_length() == 6144 * 32
    assert default_sequence_length(preset("borzoi")) == 524_288
    assert default_sequence_length(EnformerConfig()) == 196_608


# Position features -------------------------------------------------------------------------------
def test_central_mask_widths_follow_baskerville():
    # baskerville: widths (L + 1)**(k / F) - 1, k = 1..F, float32; a distance d is inside when width > |d|.
    for length in (512, 1024, 4096):
        distances = torch.arange(-(length - 1), length)
        features = borzoi_central_mask_features(distances, 16, length)
        rate = math.exp(math.log(length + 1) / 16)
        widths = [rate**k - 1 for k in range(1, 17)]
        expected = torch.tensor([[1.0 if w > abs(d) else 0.0 for w in widths] for d in distances.tolist()],
                                dtype=torch.float64)
        torch.testing.assert_close(features, expected, rtol=0, atol=0)
        assert features[length - 1].sum() == 16 and features[0, -1] == 1  # the widest width spans every distance


def test_borzoi_features_layout():
    distances = torch.tensor([-7, 0, 7])
    features = relative_position_features(distances, 32, 4096, torch.float64, functions=("borzoi_central_mask",))
    assert features.shape == (3, 32)
    torch.testing.assert_close(features[0, :16], features[2, :16])
    torch.testing.assert_close(features[0, 16:], -features[2, 16:])
    assert (features[1, 16:] == 0).all()
    with pytest.raises(ValueError, match="unknown positional functions"):
        relative_position_features(distances, 32, 64, functions=("cosine",))


def test_rotary_rotates_pairs_of_halves():
    # Position t turns (x_i, x_{i + r/2}) by t * base**(-2i/r); dimensions past r pass unchanged; dot
    # products of rotated queries and keys depend only on the offset between their positions.
    cos, sin = rotary_tables(6, 4, 100.0)
    x = torch.randn(2, 6, 6)
    rotated = apply_rotary(x, cos, sin)
    for t in range(6):
        for i in range(2):
            angle = t * 100.0 ** (-2 * i / 4)
            pair = torch.complex(x[:, t, i], x[:, t, i + 2]) * complex(math.cos(angle), math.sin(angle))
            torch.testing.assert_close(rotated[:, t, i], pair.real, atol=1e-5, rtol=0)
            torch.testing.assert_close(rotated[:, t, i + 2], pair.imag, atol=1e-5, rtol=0)
    torch.testing.assert_close(rotated[..., 4:], x[..., 4:])
    query, key = torch.randn(4), torch.randn(4)
    cos, sin = rotary_tables(10, 4, 100.0)
    scores = [apply_rotary(query.expand(10, 4), cos, sin)[t] @ apply_rotary(key.expand(10, 4), cos, sin)[t + 3]
              for t in range(7)]
    torch.testing.assert_close(torch.stack(scores), scores[0].expand(7), atol=1e-5, rtol=0)


# The model ---------------------------------------------------------------------------------------
def test_output_geometry_and_inputs():
    model = tiny_borzoi()
    tokens = torch.randint(0, 4, (2, 2048), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(tokens, return_embeddings=True)
        one_hot = model(torch.nn.functional.one_hot(tokens, 4).float(), heads=["mouse"])
    # 4 poolings to 16 bp and 2 U-Net steps back to 4 bp: 2,048 bp = 512 bins, 2 cropped per side.
    assert model.config.bin_size == 4
    assert out["human"].shape == (2, 508, 3) and out["mouse"].shape == (2, 508, 2)
    assert out["embeddings"].shape == (2, 508, 12)
    assert (out["human"] >= 0).all()
    torch.testing.assert_close(one_hot["mouse"], out["mouse"])
    with pytest.raises(UserError, match="unknown head"):
        model(tokens, heads=["rat"])
    with pytest.raises(UserError, match="multiple of 16"):
        model(tokens[:, :2008])


def test_target_length_keeps_the_central_bins():
    model = tiny_borzoi()
    central = tiny_borzoi(target_length=64)
    tokens = torch.randint(0, 4, (1, 2048), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = tiny_borzoi(crop=0)(tokens)["human"]
        kept = central(tokens)["human"]
        cropped = model(tokens)["human"]
    torch.testing.assert_close(kept, full[:, 224:288])
    torch.testing.assert_close(cropped, full[:, 2:510])


def test_unet_reads_the_tower_before_pooling():
    # Each U-Net step adds the skip of the tower block at its resolution: zeroing that block's 1x1 skip conv
    # must change the output, and the step's output length doubles its input's.
    model = tiny_borzoi(crop=0)
    tokens = torch.randint(0, 4, (1, 1024), generator=torch.Generator().manual_seed(3))
    x, skips = model.conv_trunk(model.prepare_input(tokens).transpose(1, 2))
    assert [tuple(s.shape) for s in skips] == [(1, 16, 128), (1, 12, 256)] and x.shape == (1, 16, 64)
    with torch.no_grad():
        before = model(tokens)["human"]
        model.unet[1].skip.conv.weight.zero_()
        model.unet[1].skip.conv.bias.zero_()
        after = model(tokens)["human"]
    assert not torch.allclose(before, after)


def test_chunked_attention_equals_full():
    tokens = torch.randint(0, 4, (1, 2048), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = tiny_borzoi(attention="full")(tokens)["human"]
        chunked = tiny_borzoi(attention="chunked")(tokens)["human"]
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)


def test_flashzoi_shape_and_gradients():
    model = tiny_borzoi(attention="rotary", relative_positions=False, heads=4, key_size=4, kv_heads=2, rotary_dims=2)
    names = [n for n in model.state_dict() if n.startswith("transformer.0.attention.")]
    assert sorted(names) == sorted(f"transformer.0.attention.to_{part}.{leaf}"
                                   for part in ("q", "k", "v", "out") for leaf in ("weight", "bias"))
    assert model.transformer[0].attention.to_k.weight.shape == (8, 16)
    model.train()
    out = model(torch.randint(0, 4, (1, 1024)))["human"]
    out.sum().backward()
    assert model.transformer[0].attention.to_q.weight.grad.abs().sum() > 0


def test_build_model_picks_the_family():
    assert isinstance(build_model(preset("borzoi-micro")), Borzoi)
    assert isinstance(build_model(EnformerConfig(dim=48, depth=0, heads=2, conv_tower_divisible_by=8)), Enformer)


def test_tiled_conv_trunk_equals_untiled():
    # The tower and its U-Net skips are local: tiles of 512 bp (a halo of whole 16-bp positions each side,
    # model/tiling.py) give the untiled trunk and outputs.
    tokens = torch.randint(0, 4, (2, 2048), generator=torch.Generator().manual_seed(8))
    tiled = tiny_borzoi(conv_tile_length=512).double()
    whole = tiny_borzoi(conv_tile_length=None).double()
    x = torch.nn.functional.one_hot(tokens, 4).double().transpose(1, 2)
    with torch.no_grad():
        (tower, skips), (tower_whole, skips_whole) = tiled.conv_trunk(x), whole.conv_trunk(x)
        torch.testing.assert_close(tower, tower_whole, rtol=1e-10, atol=1e-10)
        for skip, skip_whole in zip(skips, skips_whole, strict=True):
            torch.testing.assert_close(skip, skip_whole, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(tiled(tokens)["human"], whole(tokens)["human"], rtol=1e-10, atol=1e-10)
    assert [tuple(s.shape) for s in skips] == [(2, 16, 256), (2, 12, 512)]
    with pytest.raises(UserError, match="conv_tile_length=500"):
        BorzoiConfig(conv_tile_length=500)


# Checkpointing: memory only, the same training -----------------------------------------------------
@pytest.mark.parametrize("switches", [
    {"checkpoint_conv_tower": True},
    {"checkpoint_conv_tower": True, "checkpoint_transformer": True},
    {"checkpoint_conv_tower": True, "checkpoint_transformer": True, "attention": "bigbird"},
], ids=["conv", "conv+transformer", "conv+transformer-bigbird"])
def test_checkpointing_equals_plain_training(switches):
    # Float64, dropout off, two steps in training mode: outputs, every gradient and every BatchNorm buffer
    # (the recomputation runs with frozen statistics, so they move once per step, as without it).
    tokens = random_tokens(2, 2048, seed=7)
    bigbird = {"block_size": 4, "num_random_blocks": 1}
    attention = {"attention": switches.get("attention", "full"), **bigbird}
    plain = tiny_borzoi(seed=3, **attention).double()
    checkpointed = tiny_borzoi(seed=3, **{**switches, **bigbird}).double()
    initial = {name: b.clone() for name, b in plain.named_buffers()}
    expected_outputs, expected_gradients, expected_buffers = training_step(plain, tokens)
    outputs, gradients, buffers = training_step(checkpointed, tokens)

    for name in expected_outputs:
        torch.testing.assert_close(outputs[name], expected_outputs[name], rtol=1e-12, atol=1e-12)
    assert gradients.keys() == expected_gradients.keys() == dict(plain.named_parameters()).keys()
    for name in expected_gradients:
        torch.testing.assert_close(gradients[name], expected_gradients[name], rtol=1e-10, atol=1e-12, msg=name)
    for name in expected_buffers:
        torch.testing.assert_close(buffers[name], expected_buffers[name], rtol=1e-12, atol=1e-12, msg=name)
    means = [name for name in buffers if name.endswith("running_mean")]
    assert means and all(not torch.equal(buffers[name], initial[name]) for name in means)  # the stats did move
    tracked = [b for name, b in buffers.items() if name.endswith("num_batches_tracked")]
    assert tracked and all(int(count) == 2 for count in tracked)


def test_conv_checkpointing_keeps_fewer_tensors_for_backward():
    # The bytes autograd keeps for a training step at 2,048 bp (float32): the stem, tower and U-Net pieces keep
    # only their inputs (0.32 of the rest with the transformer checkpointed too; alone 0.62, where the tiny
    # model's attention weights hold most). Evaluation mode (input gradients, attribution) keeps what it kept.
    tokens = random_tokens(1, 2048, seed=0)

    def saved_bytes(training: bool, **switches) -> int:
        model = tiny_borzoi(seed=0, **switches).train(training)
        return saved_tensor_bytes(lambda sequence: model(sequence)["human"].sum(), tokens)

    plain, transformer = saved_bytes(True), saved_bytes(True, checkpoint_transformer=True)
    conv = saved_bytes(True, checkpoint_conv_tower=True)
    both = saved_bytes(True, checkpoint_conv_tower=True, checkpoint_transformer=True)
    assert conv < 0.75 * plain and both < 0.4 * transformer
    assert saved_bytes(False, checkpoint_conv_tower=True) == saved_bytes(False)


def test_checkpoint_conv_tower_round_trips_through_config_json(tmp_path):
    assert preset("borzoi").checkpoint_conv_tower is False
    model = tiny_borzoi(checkpoint_conv_tower=True)
    model.save_pretrained(tmp_path / "weights")
    assert json.loads((tmp_path / "weights" / "config.json").read_text())["checkpoint_conv_tower"] is True
    loaded = Borzoi.from_pretrained(tmp_path / "weights")
    assert loaded.config == model.config and loaded.config.checkpoint_conv_tower is True
    blocks = [module for module in loaded.modules() if isinstance(module, ConvBlock)]
    assert blocks and all(block.recompute_norm for block in blocks)
    with pytest.raises(UserError, match="checkpoint_conv_tower"):
        BorzoiConfig(checkpoint_conv_tower="yes")
