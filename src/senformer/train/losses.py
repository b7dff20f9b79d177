"""Training objectives: Enformer's Poisson loss and its distillation mix, Borzoi's Poisson-multinomial.
Pure functions."""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from .settings import LOSSES

POISSON_EPSILON = 1e-7  # keras.losses.poisson adds this inside the log
BORZOI_TOTAL_WEIGHT = 0.2  # "total_weight" of calico's params_pred.json (the published Borzoi models)


def poisson_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official Enformer loss: mean over every element of ``pred - y * log(pred + 1e-7)``.

    Keras' Poisson loss (the training colab) without the ``log(y!)`` constant; the mean is over batch, bins
    and tracks, so batches of any size weigh the same per element.

    Args:
        prediction: non-negative rates (batch, bins, tracks), the model's softplus output.
        target: observed coverage (batch, bins, tracks), same shape.
    Returns:
        a scalar tensor (float32 even under bf16 autocast).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    prediction = prediction.float()
    target = target.float()
    return (prediction - target * torch.log(prediction + POISSON_EPSILON)).mean()


def distillation_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    teacher_prediction: torch.Tensor | None,
    distill_weight: float,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = poisson_loss,
) -> torch.Tensor:
    """``(1 - w) * loss(pred, y) + w * loss(pred, teacher)``: the teacher's rates are targets like the data's.

    ``distill_weight`` 0 is the data loss alone, 1 the teacher alone. ``loss``: :func:`poisson_loss` (Enformer)
    or any objective of :func:`training_loss`. Shapes as :func:`poisson_loss`.
    """
    if not 0.0 <= distill_weight <= 1.0:
        raise ValueError(f"distill_weight={distill_weight} is not in [0, 1]")
    if teacher_prediction is None or distill_weight == 0.0:
        return loss(prediction, target)
    teacher_term = loss(prediction, teacher_prediction.detach())
    if distill_weight == 1.0:
        return teacher_term
    return (1.0 - distill_weight) * loss(prediction, target) + distill_weight * teacher_term


def _position_weights(bins: int, weight_range: float, weight_exp: float, device: torch.device) -> torch.Tensor:
    """(bins, 1) baskerville's position weights: ``exp(-(x / sigma)**exp)`` over centred positions ``x``,
    ``sigma`` such that the ends weigh ``1 / weight_range`` of the centre; ones when ``weight_range`` is 1."""
    if weight_range < 1:
        raise ValueError(f"weight_range={weight_range} must be at least 1")
    if weight_range == 1:
        return torch.ones(bins, 1, device=device)
    start = -(bins / 2 - 0.5)
    positions = start + torch.arange(bins, dtype=torch.float32, device=device)
    sigma = -start / math.log(weight_range) ** (1 / weight_exp)
    weights = torch.exp(-((positions / sigma) ** weight_exp))
    return (weights / weights.max())[:, None]


def poisson_multinomial_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    total_weight: float = BORZOI_TOTAL_WEIGHT,
    weight_range: float = 1.0,
    weight_exp: float = 4,
    epsilon: float = 1e-7,
    rescale: bool = False,
) -> torch.Tensor:
    """Borzoi's ``poisson_mn`` (baskerville ``metrics.poisson_multinomial``): per example and track, a
    Poisson loss on the total over the bins plus a multinomial loss on how it is spread over them.

    With ``s = sum over bins``: ``total = s_pred - s_true * log(s_pred + 1e-7)``; ``shape = -sum over bins
    of (y + eps) * log((pred + eps) / s_pred)``; both divided by the summed position weights (the bin count
    when ``weight_range`` is 1); the loss is ``shape + total_weight * total`` (times ``2 / (1 +
    total_weight)`` with ``rescale``), averaged over batch and tracks as Keras reduces it. The published
    models used ``total_weight=0.2`` and no position weighting (params_pred.json); baskerville's
    ``weight_range``/``weight_exp`` weigh central bins more (params_mini.json: 8 and 6).

    Args:
        prediction: positive rates (batch, bins, tracks), the model's softplus output.
        target: coverage (batch, bins, tracks) in the same squashed scale.
    Returns:
        a scalar float32 tensor.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    prediction = prediction.float()
    target = target.float()
    weights = _position_weights(prediction.shape[-2], weight_range, weight_exp, prediction.device)
    prediction = prediction * weights
    target = target * weights
    total_true = target.sum(dim=-2)  # (batch, tracks)
    total_pred = prediction.sum(dim=-2)
    weight_sum = weights.sum()
    total_term = (total_pred - total_true * torch.log(total_pred + POISSON_EPSILON)) / weight_sum
    log_share = torch.log((prediction + epsilon) / total_pred[..., None, :])
    shape_term = -((target + epsilon) * log_share).sum(dim=-2) / weight_sum
    loss = shape_term + total_weight * total_term
    if rescale:
        loss = loss * 2 / (1 + total_weight)
    return loss.mean()



def training_loss(name: str, total_weight: float = BORZOI_TOTAL_WEIGHT) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The objective ``(prediction, target) -> scalar`` called ``name`` (one of :data:`LOSSES`);
    ``total_weight`` weighs ``poisson_mn``'s total term."""
    if name == "poisson":
        return poisson_loss
    if name == "poisson_mn":
        return functools.partial(poisson_multinomial_loss, total_weight=total_weight)
    raise ValueError(f"loss {name!r} is not one of {', '.join(LOSSES)}")
