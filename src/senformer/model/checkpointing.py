"""Activation checkpointing that keeps BatchNorm running statistics exact.

Recomputation in backward runs the forward a second time; in training mode that would move every
BatchNorm's running mean and variance (and ``num_batches_tracked``) twice per step. The recomputation here
runs with the statistics frozen, so a checkpointed model trains exactly like a plain one.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def frozen_batchnorm_statistics(module: nn.Module):
    """Within the block, BatchNorm layers of ``module`` normalise with batch statistics but do not update."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, (momentum, tracked) in zip(norms, saved):
            norm.momentum = momentum
            if tracked is not None:
                norm.num_batches_tracked.copy_(tracked)


def checkpointed(function: Callable[..., Any], *inputs: torch.Tensor, module: nn.Module | None = None) -> Any:
    """``function(*inputs)`` keeping only ``inputs`` for backward (its output may be a tensor or a tuple of
    them); BatchNorm layers in ``module`` (default: ``function`` itself, when it is a module) update their
    statistics in the forward only, not in the recomputation."""
    owner = module if module is not None else function
    calls = 0

    def run(*arguments: torch.Tensor) -> Any:
        nonlocal calls
        calls += 1
        guard = frozen_batchnorm_statistics(owner) if calls > 1 else contextlib.nullcontext()
        with guard:
            return function(*arguments)

    return checkpoint(run, *inputs, use_reentrant=False)
