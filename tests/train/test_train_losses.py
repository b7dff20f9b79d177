import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from senformer.train import distillation_loss, learning_rate_factor, poisson_loss, poisson_multinomial_loss
from senformer.train.schedule import build_scheduler


def test_poisson_loss_is_the_keras_formula_with_a_pinned_value():
    prediction = torch.tensor([[[0.5, 2.0], [1.0, 0.0]]])
    target = torch.tensor([[[1.0, 3.0], [0.0, 2.0]]])
    by_hand = [0.5 - math.log(0.5 + 1e-7), 2.0 - 3.0 * math.log(2.0 + 1e-7), 1.0, 0.0 - 2.0 * math.log(1e-7)]
    assert poisson_loss(prediction, target).item() == pytest.approx(sum(by_hand) / 4, rel=1e-6)
    # torch's Poisson NLL on rates (no Stirling term) is the same objective.
    expected = F.poisson_nll_loss(prediction, target, log_input=False, full=False, eps=1e-7)
    assert poisson_loss(prediction, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_poisson_loss_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"\(1, 2, 3\).*\(1, 2, 4\)"):
        poisson_loss(torch.ones(1, 2, 3), torch.ones(1, 2, 4))


def test_distillation_mixes_data_and_teacher_terms():
    generator = torch.Generator().manual_seed(0)
    prediction, target, teacher = (torch.rand(2, 4, 3, generator=generator) + 0.1 for _ in range(3))
    data_term, teacher_term = poisson_loss(prediction, target), poisson_loss(prediction, teacher)
    assert distillation_loss(prediction, target, teacher, 0.0) == data_term
    assert distillation_loss(prediction, target, teacher, 1.0) == teacher_term
    mixed = distillation_loss(prediction, target, teacher, 0.25)
    assert mixed.item() == pytest.approx(0.75 * data_term.item() + 0.25 * teacher_term.item(), rel=1e-6)
    assert distillation_loss(prediction, target, None, 0.5) == data_term
    with pytest.raises(ValueError, match="distill_weight=1.5"):
        distillation_loss(prediction, target, teacher, 1.5)


def test_teacher_term_is_minimal_at_the_teacher_predictions():
    teacher = torch.tensor([[[0.3, 2.0, 5.0]]])
    losses = {scale: distillation_loss(teacher * scale, torch.zeros_like(teacher), teacher, 1.0).item()
              for scale in (0.8, 1.0, 1.25)}
    assert losses[1.0] < losses[0.8] and losses[1.0] < losses[1.25]


def test_warmup_is_linear_to_the_peak_then_constant_or_cosine():
    assert [learning_rate_factor(step, 4, 10) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert learning_rate_factor(4, 4, 10, "cosine") == pytest.approx(1.0)
    assert learning_rate_factor(7, 4, 10, "cosine") == pytest.approx(0.5)
    assert learning_rate_factor(10, 4, 10, "cosine", final_factor=0.1) == pytest.approx(0.1)
    assert learning_rate_factor(0, 0, 10) == 1.0
    with pytest.raises(ValueError, match="linear"):
        learning_rate_factor(0, 1, 2, "linear")


def test_scheduler_sets_the_optimizer_learning_rate():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=5e-4)
    scheduler = build_scheduler(optimizer, warmup_steps=50, total_steps=100)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 / 50)
    for _ in range(49):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def calico_poisson_multinomial(y_true, y_pred, total_weight=1, weight_range=1, weight_exp=4, epsilon=1e-7,
                               rescale=False):
    """baskerville ``metrics.poisson_multinomial`` (calico/baskerville 544073b) transcribed in numpy, with
    Keras's default reduction (the mean over batch and tracks)."""
    seq_len = y_true.shape[1]
    if weight_range == 1:
        position_weights = np.ones((1, seq_len, 1))
    else:
        pos_start = -(seq_len / 2 - 0.5)
        pos_end = seq_len / 2 + 0.5
        positions = np.arange(pos_start, pos_end, dtype=np.float32)
        sigma = -pos_start / (np.log(weight_range)) ** (1 / weight_exp)
        position_weights = np.exp(-((positions / sigma) ** weight_exp))
        position_weights /= np.max(position_weights)
        position_weights = position_weights[None, :, None]
    y_true = y_true * position_weights
    y_pred = y_pred * position_weights
    s_true = y_true.sum(axis=-2)
    s_pred = y_pred.sum(axis=-2)
    poisson_term = s_pred - s_true * np.log(s_pred + 1e-7)
    poisson_term /= position_weights.sum()
    y_true = y_true + epsilon
    y_pred = y_pred + epsilon
    p_pred = y_pred / s_pred[:, None, :]
    multinomial_term = (-(y_true * np.log(p_pred))).sum(axis=-2)
    multinomial_term /= position_weights.sum()
    loss = multinomial_term + total_weight * poisson_term
    if rescale:
        loss = loss * 2 / (1 + total_weight)
    return loss.mean()


@pytest.mark.parametrize("options", [
    {}, {"total_weight": 1.0}, {"weight_range": 8, "weight_exp": 6}, {"total_weight": 0.5, "rescale": True},
    {"weight_range": 2, "weight_exp": 4, "epsilon": 1e-3},
])
def test_poisson_multinomial_is_calicos_formula(options):
    generator = np.random.default_rng(0)
    prediction = generator.gamma(2.0, 1.5, size=(3, 17, 5))
    target = generator.gamma(1.0, 2.0, size=(3, 17, 5)) * (generator.random((3, 17, 5)) > 0.3)  # zeros too
    expected = calico_poisson_multinomial(target, prediction, **{"total_weight": 0.2, **options})
    got = poisson_multinomial_loss(torch.tensor(prediction), torch.tensor(target), **options)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_poisson_multinomial_shape_term_ignores_the_total():
    # Without the total term the loss only sees each track's shape over the bins: scaling a prediction by a
    # constant leaves it unchanged (up to epsilon), and it is smallest where the shape matches the target's.
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 20, 3, generator=generator) + 0.5
    prediction = torch.rand(2, 20, 3, generator=generator) + 0.5
    shape_only = poisson_multinomial_loss(prediction, target, total_weight=0.0)
    assert poisson_multinomial_loss(4.0 * prediction, target, total_weight=0.0).item() == pytest.approx(
        shape_only.item(), rel=1e-5)
    assert poisson_multinomial_loss(3.0 * target, target, total_weight=0.0) < shape_only
    with pytest.raises(ValueError, match="weight_range=0.5"):
        poisson_multinomial_loss(prediction, target, weight_range=0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        poisson_multinomial_loss(prediction, target[:, :10])


def test_training_loss_names_each_objective_and_distillation_mixes_it():
    from senformer.train.losses import training_loss

    generator = torch.Generator().manual_seed(2)
    prediction, target, teacher = (torch.rand(2, 6, 3, generator=generator) + 0.1 for _ in range(3))
    assert training_loss("poisson") is poisson_loss
    objective = training_loss("poisson_mn", total_weight=0.5)
    assert objective(prediction, target) == poisson_multinomial_loss(prediction, target, total_weight=0.5)
    mixed = distillation_loss(prediction, target, teacher, 0.25, objective)
    expected = 0.75 * objective(prediction, target) + 0.25 * objective(prediction, teacher)
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="poisson, poisson_mn"):
        training_loss("mse")
