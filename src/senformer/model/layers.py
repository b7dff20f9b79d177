"""Enformer's building blocks, channels-first ``(batch, channels, length)`` like torch's Conv1d."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .checkpointing import checkpointed


GELU_SCALE = 1.702


class _Gelu(torch.autograd.Function):
    """``sigmoid(1.702 x) * x`` keeping only ``x`` for backward (autograd's own graph keeps the sigmoid too:
    one full-resolution tensor more per conv block in training)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sigmoid(GELU_SCALE * x) * x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(GELU_SCALE * x)
        # d/dx [s x] = s (1 + 1.702 x (1 - s)).
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return grad * s * (1 + GELU_SCALE * x * (1 - s))
        # In place: two full-size temporaries instead of five (this is the stem's peak in training).
        derivative = torch.sub(1, s).mul_(x).mul_(GELU_SCALE).add_(1).mul_(s)
        del s
        return derivative.mul_(grad)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Enformer's GELU approximation ``sigmoid(1.702 x) * x`` (not the erf GELU)."""
    return _Gelu.apply(x)


class ConvBlock(nn.Module):
    """BatchNorm -> GELU -> Conv1d with SAME padding (DeepMind ``conv_block``; baskerville's ``conv_nac``).

    Enformer's GELU is ``sigmoid(1.702 x) x`` and sonnet's BatchNorm epsilon 1e-5 (the defaults); Borzoi,
    trained in Keras, uses the tanh GELU (``tanh_gelu=True``) and epsilon 1e-3.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, eps: float = 1e-5, tanh_gelu: bool = False):
        super().__init__()
        # EMA decay 0.9 (sonnet and calico's bn_momentum) == torch momentum 0.1.
        self.norm = nn.BatchNorm1d(in_channels, eps=eps, momentum=0.1)
        self.conv = nn.Conv1d(in_channels, out_channels, width, padding=width // 2)
        self.tanh_gelu = tanh_gelu
        # Set by the model under ``checkpoint_conv_tower``: BatchNorm -> GELU keeps only its input for backward
        # and is recomputed there (two full-resolution tensors fewer per block).
        self.recompute_norm = False

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(x), approximate="tanh") if self.tanh_gelu else gelu(self.norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, length) -> (batch, out_channels, length)."""
        if not torch.is_grad_enabled() and not self.norm.training and self.norm.track_running_stats:
            return self._inference(x)
        if self.recompute_norm and self.training and torch.is_grad_enabled():
            return self.conv(checkpointed(self.normalize, x, module=self.norm))
        return self.conv(self.normalize(x))

    def _inference(self, x: torch.Tensor) -> torch.Tensor:
        """The same maths in two elementwise passes instead of five: with moving statistics BatchNorm is
        affine, so it absorbs the GELU's 1.702 (``gelu(y) = silu(1.702 y) / 1.702``) and the convolution
        absorbs the ``1 / 1.702``.

        The affine map is one ``addcmul`` rather than ``F.batch_norm``: torch's CPU batch norm computes a
        plane's vectorised body with a fused multiply-add and its tail without, so a value's rounding would
        depend on where it falls in the tensor (one float32 ulp; a bf16 ulp now and then). The edit engine
        recomputes short spans of the trunk and needs every position computed as in the whole window.
        """
        norm, conv = self.norm, self.conv
        if self.tanh_gelu:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            shift = norm.bias - norm.running_mean * scale
            scaled = torch.addcmul(shift.to(x.dtype)[:, None], x, scale.to(x.dtype)[:, None])
            return conv(F.gelu(scaled, approximate="tanh"))
        scale = norm.weight * GELU_SCALE * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias * GELU_SCALE - norm.running_mean * scale
        scaled = torch.addcmul(shift.to(x.dtype)[:, None], x, scale.to(x.dtype)[:, None])
        activated = F.silu(scaled, inplace=True)
        if conv.kernel_size == (1,) and _runs_in_bf16(activated):
            return pointwise_matmul(activated, conv.weight / GELU_SCALE, conv.bias)
        return F.conv1d(activated, conv.weight / GELU_SCALE, conv.bias,
                        conv.stride, conv.padding, conv.dilation, conv.groups)


def _runs_in_bf16(x: torch.Tensor) -> bool:
    """Whether a convolution of ``x`` computes in bf16 (a bf16 tensor, or autocast to bf16 on its device)."""
    if x.dtype == torch.bfloat16:
        return True
    device = x.device.type
    return torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16


def pointwise_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A width-1 convolution of bf16 ``x`` (batch, in, length) as one batched matrix product.

    On CPU, oneDNN's bf16 1x1 convolution picks its blocking from the length, so a value's rounding depends on
    how long the sequence around it is (a bf16 ulp at about one position in ten thousand); a matrix product
    sums each output in the same order whatever the length, and runs faster. The edit engine recomputes short
    spans of the trunk and needs them equal to the whole window's.
    """
    x = x.to(torch.bfloat16)
    weight = weight[:, :, 0].to(torch.bfloat16).expand(x.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(weight, x)
    return torch.baddbmm(bias.to(torch.bfloat16)[:, None], weight, x)


class SoftmaxPooling(nn.Module):
    """Attention pooling by 2: a softmax over each window of two positions, per channel.

    The logits are a channel mixing ``W x`` without bias, initialised to ``2 * I`` (``w_init_scale=2``).
    """

    def __init__(self, channels: int, pool_size: int = 2):
        super().__init__()
        self.pool_size = pool_size
        self.logits = nn.Conv1d(channels, channels, 1, bias=False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.logits.weight.copy_(2.0 * torch.eye(self.logits.out_channels)[:, :, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, length) -> (batch, channels, length // pool_size)."""
        batch, channels, length = x.shape
        windows = length // self.pool_size
        # The official pooling reshapes without padding: a trailing partial window is dropped.
        x = x[:, :, : windows * self.pool_size]
        if self.pool_size == 2:
            # A softmax over two values is a sigmoid of their difference: w0 = sigmoid(l0 - l1), w1 = 1 - w0,
            # so the pooled value is x1 + w0 (x0 - x1). The logits are linear without bias, so
            # l0 - l1 = W (x0 - x1): the channel mixing runs on half the positions, and backward keeps only
            # the half-length difference and weight. Several times faster than a softmax on CPU.
            first, second = x[:, :, 0::2], x[:, :, 1::2]  # (batch, channels, windows)
            difference = first - second
            if not torch.is_grad_enabled() and _runs_in_bf16(difference):
                logits = pointwise_matmul(difference, self.logits.weight, None)
            else:
                logits = self.logits(difference)
            weight = torch.sigmoid(logits)
            return torch.addcmul(second, weight, difference)
        logits = self.logits(x)
        x = x.reshape(batch, channels, windows, self.pool_size)  # (batch, channels, windows, pool)
        weights = logits.reshape(batch, channels, windows, self.pool_size).softmax(dim=-1)
        return (x * weights).sum(dim=-1)


class Stem(nn.Module):
    """Conv1d(4 -> dim/2, width 15) -> Residual(ConvBlock width 1) -> SoftmaxPooling."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 15, padding=7)
        self.pointwise = ConvBlock(channels, channels, 1)
        self.pool = SoftmaxPooling(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, 4, bp) -> (batch, dim/2, bp/2)."""
        x = self.conv(x)
        x = x + self.pointwise(x)
        return self.pool(x)


class ConvTowerBlock(nn.Module):
    """ConvBlock(width 5) -> Residual(ConvBlock width 1) -> SoftmaxPooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBlock(in_channels, out_channels, 5)
        self.pointwise = ConvBlock(out_channels, out_channels, 1)
        self.pool = SoftmaxPooling(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x + self.pointwise(x)
        return self.pool(x)


class FeedForward(nn.Module):
    """Enformer's MLP: LayerNorm -> Linear(2 dim) -> Dropout -> ReLU -> Linear(dim) -> Dropout (Borzoi's too,
    with Keras's LayerNorm epsilon 1e-3)."""

    def __init__(self, dim: int, dropout_rate: float, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.linear_in = nn.Linear(dim, 2 * dim)
        self.linear_out = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.linear_in(self.norm(x)))
        return self.dropout(self.linear_out(F.relu(x)))


def crop(x: torch.Tensor, target_length: int | None, margin: int) -> torch.Tensor:
    """Keep the central ``target_length`` positions of (batch, length, channels), or trim ``margin`` per side."""
    length = x.shape[1]
    if target_length is None:
        if length <= 2 * margin:
            raise ValueError(f"{length} positions leave nothing after trimming {margin} from each end")
        return x[:, margin : length - margin]
    if length < target_length:
        raise ValueError(f"{length} positions are fewer than target_length={target_length}")
    trim = (length - target_length) // 2
    return x[:, trim : trim + target_length]
