"""Training objectives: the official Poisson loss and its distillation mix. Pure functions."""

from __future__ import annotations

import torch

POISSON_EPSILON = 1e-7  # keras.losses.poisson adds this inside the log


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
) -> torch.Tensor:
    """``(1 - w) * poisson(pred, y) + w * poisson(pred, teacher)``: the teacher's rates are Poisson targets.

    ``distill_weight`` 0 is the data loss alone, 1 the teacher alone. Shapes as :func:`poisson_loss`.
    """
    if not 0.0 <= distill_weight <= 1.0:
        raise ValueError(f"distill_weight={distill_weight} is not in [0, 1]")
    if teacher_prediction is None or distill_weight == 0.0:
        return poisson_loss(prediction, target)
    teacher_term = poisson_loss(prediction, teacher_prediction.detach())
    if distill_weight == 1.0:
        return teacher_term
    return (1.0 - distill_weight) * poisson_loss(prediction, target) + distill_weight * teacher_term
