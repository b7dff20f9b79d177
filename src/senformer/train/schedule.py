"""Learning-rate schedule: linear warm-up to the peak (the official colab), then constant or cosine decay."""

from __future__ import annotations

import math

import torch


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int, decay: str = "none", final_factor: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimizer update ``step`` (0-based).

    Warm-up is the colab's ``min(1, (step + 1) / warmup)``: update 0 already moves, update ``warmup - 1``
    reaches the peak. ``decay="cosine"`` then falls to ``final_factor`` at ``total_steps``.
    """
    if decay not in ("none", "cosine"):
        raise ValueError(f"decay={decay!r} is not one of none, cosine")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "none":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, decay: str = "none", final_factor: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`learning_rate_factor`; its state dict goes into every checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, warmup_steps, total_steps, decay, final_factor)
    )
