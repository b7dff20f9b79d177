"""Many processes: ``torchrun`` environment, DDP, and a BatchNorm whose statistics span every rank.

The official model was trained with cross-replica BatchNorm (one batch of 64 over 64 TPU cores). torch's
``SyncBatchNorm`` only runs on CUDA, so :class:`CrossRankBatchNorm` all-reduces the per-channel count, sum
and sum of squares itself with ``torch.distributed.all_reduce``, which works on gloo (CPU) and NCCL (GPU).
Its backward all-reduces the gradients of those sums, so each rank's input gradient is exactly that of the
global batch statistics.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Read the ``torchrun`` environment; start the process group (NCCL on CUDA, gloo on CPU) when
    ``WORLD_SIZE > 1``. ``device`` is ``auto``, ``cpu`` or ``cuda``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"device={device!r} is not one of auto, cpu, cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise UserError("device=cuda but torch sees no CUDA device")
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
            timeout=datetime.timedelta(minutes=30),
        )
    return DistributedContext(rank, world_size, local_rank, torch_device)


def teardown_distributed(synchronise: bool = True) -> None:
    """Destroy the process group and collect it while the interpreter is whole. ``synchronise`` (after a run
    that ended well on every rank) first waits for every rank, so none closes its connections while a peer is
    still in a collective; after an error it is skipped, since a failed rank never arrives."""
    if dist.is_initialized():
        try:
            if synchronise and dist.get_world_size() > 1:
                dist.barrier()
        finally:
            dist.destroy_process_group()
            gc.collect()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a rank's term is the sum of every rank's gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks (identity without a process group), differentiably."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _AllReduceSum.apply(tensor)


class CrossRankBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` with training statistics over the batches of every rank (gloo or NCCL).

    Same parameters, buffers and eval behaviour as ``BatchNorm1d``, so checkpoints are interchangeable.
    In training mode the mean and biased variance normalise the global batch; the running variance gets
    the unbiased estimate over the global count, as torch's BatchNorm does for one process.
    Input (batch, channels, length) or (batch, channels).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        reduce_dims = [0] + list(range(2, x.dim()))
        compute = x.float()
        local_count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        # One all-reduce of (count, sums, sums of squares) per layer: (1 + 2 C,)
        statistics = torch.cat([local_count, compute.sum(reduce_dims), (compute * compute).sum(reduce_dims)])
        statistics = all_reduce_sum(statistics)
        channels = x.shape[1]
        count = statistics[0]
        mean = statistics[1 : 1 + channels] / count
        # E[x^2] - E[x]^2 in float32; clamp guards the tiny negative values that cancellation can leave.
        variance = (statistics[1 + channels :] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = variance * (count / (count - 1).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        normalized = (compute - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            normalized = normalized * self.weight.view(shape) + self.bias.view(shape)
        return normalized.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm1d`` in ``module`` by a :class:`CrossRankBatchNorm` with the same state."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            replacement = CrossRankBatchNorm(
                child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                track_running_stats=child.track_running_stats, device=child.weight.device if child.affine else None,
            )
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            if child.affine:
                replacement.weight.requires_grad_(child.weight.requires_grad)
                replacement.bias.requires_grad_(child.bias.requires_grad)
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child)
    return module


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place mean over ranks (no autograd), for logging losses and metrics."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no autograd), for pooled metric sums."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
