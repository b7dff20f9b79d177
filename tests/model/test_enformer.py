"""The whole model: shapes, inputs, lengths, parameter count, weights shared by every attention kind."""

import pytest
import torch

from senformer import Enformer, EnformerConfig, one_hot, preset, reverse_complement
from senformer.sequence import tokens_to_one_hot

from helpers import random_tokens, randomize_, tiny_config, tiny_model


def test_published_model_has_the_official_parameter_count():
    with torch.device("meta"):
        model = Enformer(EnformerConfig())
    counts = model.parameter_counts()
    assert counts["total"] == 251_221_292
    assert counts["total"] - counts["heads"] + 3072 * 5313 + 5313 == 246_172_353  # without the mouse head


@pytest.mark.parametrize("kind", ["full", "chunked", "bigbird"])
def test_parameter_count_does_not_depend_on_the_attention_kind(kind):
    with torch.device("meta"):
        assert Enformer(EnformerConfig(attention=kind)).parameter_counts()["total"] == 251_221_292


def test_report_preset_has_no_relative_positions():
    with torch.device("meta"):
        model = Enformer(preset("s-enformer-report"))
    names = [name for name, _ in model.named_parameters()]
    assert not any("r_r_bias" in n or "to_r_k" in n for n in names)
    assert model.transformer[0].attention.to_q.weight.shape == (8 * 192, 1536)


def test_output_shapes_heads_and_embeddings():
    model = tiny_model()
    out = model(random_tokens(3, 128 * 12), return_embeddings=True)
    assert out["human"].shape == (3, 8, 5) and out["mouse"].shape == (3, 8, 3)
    assert out["embeddings"].shape == (3, 8, 96)
    assert (out["human"] >= 0).all()
    only = model(random_tokens(1, 128 * 12), heads=["mouse"])
    assert list(only) == ["mouse"]
    with pytest.raises(ValueError, match="unknown head"):
        model(random_tokens(1, 128 * 12), heads=["fly"])


def test_output_grows_with_the_input_without_a_target_length():
    model = tiny_model(target_length=None)
    for positions in (641, 700):
        out = model(random_tokens(1, 128 * positions))
        assert out["human"].shape[1] == positions - 640


def test_the_crop_is_central_whatever_the_input_length():
    model = tiny_model(depth=0)  # no attention: central bins depend only on the centre of the input
    tokens = random_tokens(1, 128 * 16)
    wider = torch.cat([random_tokens(1, 128 * 4, seed=1), tokens, random_tokens(1, 128 * 4, seed=2)], dim=1)
    torch.testing.assert_close(model(wider)["human"][:, 2:6], model(tokens)["human"][:, 2:6], rtol=1e-5, atol=1e-6)


def test_tokens_and_one_hot_agree():
    model = tiny_model()
    tokens = random_tokens(2, 128 * 10)
    torch.testing.assert_close(model(tokens)["human"], model(tokens_to_one_hot(tokens))["human"])


@pytest.mark.parametrize("length,message", [(1000, "multiple of 128"), (128 * 7, "at least 1,024"), (128 * 8 + 1, "nearest valid: 1,024 or 1,152")])
def test_bad_lengths_raise_naming_the_length(length, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model(random_tokens(1, length))


def test_bad_inputs_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\(batch, length, 4\)"):
        model(torch.zeros(1, 1024, 5))
    with pytest.raises(ValueError, match="0..4"):
        model(torch.full((1, 1024), 7))


def test_state_dict_loads_into_every_kind_and_exact_kinds_agree():
    full = tiny_model(attention="full")
    tokens = random_tokens(2, 128 * 40)  # 40 positions: 10 blocks of 4
    reference = full(tokens)["human"]
    for kind in ("chunked", "bigbird"):
        model = Enformer(tiny_config(attention=kind)).eval()
        model.load_state_dict(full.state_dict())
        out = model(tokens)["human"]
        if kind == "chunked":
            torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
        else:
            assert not torch.allclose(out, reference)  # sparse: a real difference, same parameters
    covering = Enformer(tiny_config(attention="bigbird", num_random_blocks=6)).eval()
    covering.load_state_dict(full.state_dict())
    torch.testing.assert_close(covering(tokens)["human"], reference, rtol=1e-5, atol=1e-5)


def test_gradients_flow_to_every_parameter():
    model = tiny_model(attention="bigbird").train()
    out = model(random_tokens(2, 128 * 24))
    (out["human"].sum() + out["mouse"].sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_runs_under_bfloat16_autocast():
    # Official initialisation (randomised weights of scale 0.2 blow activations up to ~1e2, where bf16's
    # 8-bit mantissa compounds), with the zero-initialised attention output layer made non-zero.
    torch.manual_seed(0)
    model = Enformer(tiny_config(attention="bigbird")).eval()
    for attention in model.attention_modules():
        torch.nn.init.normal_(attention.to_out.weight, std=0.1)
    tokens = random_tokens(1, 128 * 24)
    reference = model(tokens)["human"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens)["human"]
    relative = (out.float() - reference).abs().max() / reference.abs().max()
    assert out.dtype == torch.bfloat16 and relative < 0.03


def test_cuda(device):
    model = tiny_model(attention="bigbird").to(device)
    out = model(random_tokens(1, 128 * 24).to(device))["human"]
    assert out.device.type == device.type


def test_one_hot_and_reverse_complement():
    x = one_hot("ACGTNacgtx")
    assert x.shape == (10, 4)
    assert x[:4].argmax(1).tolist() == [0, 1, 2, 3] and x[4].sum() == 0 and x[9].sum() == 0
    assert reverse_complement("AACGN") == "NCGTT"
    torch.testing.assert_close(reverse_complement(one_hot("AACGN")), one_hot("NCGTT"))
    tokens = torch.tensor([0, 0, 1, 2, 4])
    assert reverse_complement(tokens).tolist() == [4, 1, 2, 3, 3]


def test_reverse_complement_is_an_involution_on_the_model_input():
    x = tokens_to_one_hot(random_tokens(1, 128 * 10))
    torch.testing.assert_close(reverse_complement(reverse_complement(x)), x)


def test_randomized_attention_output_layer_matters():
    model = randomize_(Enformer(tiny_config()))
    assert model.transformer[0].attention.to_out.weight.abs().sum() > 0
    fresh = Enformer(tiny_config())
    assert fresh.transformer[0].attention.to_out.weight.abs().sum() == 0  # official zero initialisation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_after_inference_mode_reuses_cached_constants(dtype):
    model = tiny_model(attention="bigbird").to(dtype)
    tokens = random_tokens(1, 128 * 24)
    with torch.inference_mode():
        expected = model(tokens)["human"]
    out = model(tokens)["human"]  # cached positional features and pattern, now with autograd
    out.sum().backward()
    # Without autograd the conv blocks fold the GELU scale into BatchNorm and the conv (same maths, other
    # rounding, which this random tiny model amplifies in float32); float64 shows the results are equal.
    tolerance = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 2e-3, "atol": 5e-3}
    torch.testing.assert_close(out.detach(), expected, **tolerance)
