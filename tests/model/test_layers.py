"""Layer references: GELU, softmax pooling, conv tower filters, crop."""

import numpy as np
import pytest
import torch

from senformer import EnformerConfig
from senformer.bench.memory import saved_tensor_bytes
from senformer.model.layers import ConvBlock, SoftmaxPooling, crop, gelu


def test_gelu_is_the_sigmoid_approximation_not_erf():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    expected = x.numpy() / (1 + np.exp(-1.702 * x.numpy()))
    torch.testing.assert_close(gelu(x), torch.from_numpy(np.asarray(expected)), rtol=0, atol=1e-12)
    assert (gelu(x) - torch.nn.functional.gelu(x)).abs().max() > 1e-3


def test_gelu_gradients_and_second_derivatives():
    x = torch.linspace(-6, 6, 41, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu, (x,))
    assert torch.autograd.gradgradcheck(gelu, (x,))
    (grad,) = torch.autograd.grad(gelu(x).sum(), x)
    s = torch.sigmoid(1.702 * x.detach())
    torch.testing.assert_close(grad, s + 1.702 * x.detach() * s * (1 - s), rtol=0, atol=1e-14)


def test_gelu_keeps_only_its_input_for_backward():
    x = torch.randn(4, 1000, requires_grad=True)
    assert saved_tensor_bytes(gelu, x) == x.numel() * 4


def test_conv_block_recomputing_its_norm_keeps_less_and_computes_the_same():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 64, dtype=torch.float64, requires_grad=True)
    plain, lean = ConvBlock(8, 8, 5).double(), ConvBlock(8, 8, 5).double()
    lean.load_state_dict(plain.state_dict())
    lean.recompute_norm = True
    outputs = [block(x) for block in (plain, lean)]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    grads = [torch.autograd.grad(out.square().sum(), (x, *block.parameters())) for out, block in zip(outputs, (plain, lean))]
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # Running statistics moved once per forward (not again in the recomputation), identically.
    for name, buffer in plain.state_dict().items():
        torch.testing.assert_close(lean.state_dict()[name], buffer, rtol=0, atol=0)
    assert int(lean.norm.num_batches_tracked) == 1
    # Plain keeps the norm's input, its output (GELU's input) and the conv's input; lean drops the middle one.
    assert saved_tensor_bytes(lean, x) < saved_tensor_bytes(plain, x) - x.numel() * 8 * 0.9


def test_conv_block_inference_path_folds_the_gelu_scale_exactly():
    torch.manual_seed(0)
    block = ConvBlock(6, 5, 5).double()
    with torch.no_grad():  # non-trivial moving statistics and affine parameters
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2.0)
        block.norm.weight.normal_()
        block.norm.bias.normal_()
    block.eval()
    x = torch.randn(2, 6, 40, dtype=torch.float64)
    with torch.no_grad():
        fused = block(x)
    reference = block.conv(gelu(block.norm(x))).detach()  # grad enabled: the plain path's maths
    torch.testing.assert_close(fused, reference, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("width", [1, 5])
def test_bf16_inference_computes_each_position_alike_whatever_the_length_around_it(width):
    """The edit engine recomputes short spans of the trunk and needs them bit-equal to the whole window in
    bf16. At these shapes torch's CPU batch norm (fused multiply-add in a plane's vectorised body, not in its
    tail) and oneDNN's bf16 1x1 convolution (blocking chosen from the length) both round some positions
    differently in a 384-long piece than in the 8,192-long whole."""
    torch.manual_seed(0)
    channels, length, start, size = 256, 8192, 3000, 384
    block, pool = ConvBlock(channels, channels, width), SoftmaxPooling(channels)
    with torch.no_grad():
        block.norm.running_mean.normal_()
        block.norm.running_var.uniform_(0.5, 2.0)
        block.norm.weight.normal_()
        block.norm.bias.normal_()
        pool.logits.weight.normal_(std=channels ** -0.5)
    block.eval()
    x = torch.randn(2, channels, length)
    edge = 8  # a piece's own ends see its zero padding
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole, piece = block(x), block(x[..., start : start + size])
        assert whole.dtype == torch.bfloat16
        assert torch.equal(piece[..., edge:-edge], whole[..., start + edge : start + size - edge])
        pooled_whole, pooled_piece = pool(whole), pool(piece)
        half = start // 2
        assert torch.equal(pooled_piece[..., edge:-edge], pooled_whole[..., half + edge : half + size // 2 - edge])


def test_softmax_pooling_matches_a_direct_computation():
    torch.manual_seed(0)
    pool = SoftmaxPooling(3).double()
    weight = torch.randn(3, 3, dtype=torch.float64)
    with torch.no_grad():
        pool.logits.weight.copy_(weight[:, :, None])
    x = torch.randn(2, 3, 10, dtype=torch.float64)
    out = pool(x).detach()
    expected = np.zeros((2, 3, 5))
    xs = x.numpy()
    for b in range(2):
        for w in range(5):
            window = xs[b, :, 2 * w : 2 * w + 2]  # (channels, 2)
            logits = weight.numpy() @ window  # (channels, 2)
            soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            expected[b, :, w] = (window * soft).sum(axis=1)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_softmax_pooling_of_three_uses_the_general_softmax():
    torch.manual_seed(0)
    pool = SoftmaxPooling(2, pool_size=3).double()
    x = torch.randn(1, 2, 9, dtype=torch.float64)
    logits = pool.logits(x).detach().reshape(1, 2, 3, 3)
    expected = (x.reshape(1, 2, 3, 3) * logits.softmax(-1)).sum(-1)
    torch.testing.assert_close(pool(x).detach(), expected)


def test_softmax_pooling_initialisation_is_twice_identity():
    pool = SoftmaxPooling(4)
    pool.reset_parameters()
    torch.testing.assert_close(pool.logits.weight[:, :, 0], 2 * torch.eye(4))


def test_conv_tower_filters_of_the_published_model():
    assert EnformerConfig().conv_tower_filters == [768, 896, 1024, 1152, 1280, 1536]
    # DeepMind's tiny fixture model (channels 384) rounds 192 -> 256 (half to even, as numpy).
    assert EnformerConfig(dim=384).conv_tower_filters == [256, 256, 256, 256, 384, 384]


def test_crop_keeps_the_centre_or_trims_the_margin():
    x = torch.arange(20)[None, :, None]
    assert crop(x, 6, margin=3)[0, :, 0].tolist() == list(range(7, 13))
    assert crop(x, None, margin=3)[0, :, 0].tolist() == list(range(3, 17))
    with pytest.raises(ValueError, match="fewer than target_length"):
        crop(x, 21, margin=3)
