"""``bigbird`` and ``chunked`` never create a ``[T, T]`` or ``[T, 2T - 1]`` tensor, in the whole model.

Every tensor produced by every operator of a training step (forward, Poisson-style loss, backward) is
recorded with a ``TorchDispatchMode``, at two sequence lengths on a tiny model. A quadratic tensor has two
dimensions of at least ``T`` positions; the tiny model's channel counts (at most 96) and block and chunk
sizes stay below the ``T`` used here, and the conv tower's long axis (bp / 2 ... bp / 64) is a single
dimension. ``full`` is the positive control: the same probe must find its ``[T, T]`` logits.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from helpers import random_tokens, tiny_model


class TensorShapes(TorchDispatchMode):
    """Records the shape of every tensor an operator returns."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in tree_flatten(result)[0]:
            if isinstance(value, torch.Tensor):
                self.shapes.append((str(func), tuple(value.shape)))
        return result


def record_training_step(attention: str, positions: int, **overrides) -> list[tuple[str, tuple[int, ...]]]:
    model = tiny_model(seed=0, attention=attention, target_length=None, **overrides).train()
    tokens = random_tokens(1, positions * 128, seed=positions)
    with TensorShapes() as probe:
        predictions = model(tokens)["human"]
        target = torch.ones_like(predictions)
        loss = (predictions - target * torch.log(predictions + 1e-6)).mean()
        loss.backward()
    return probe.shapes


def quadratic(shapes, positions: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(op, shape) for op, shape in shapes if sum(size >= positions for size in shape) >= 2]


# target_length=None keeps T - 640 output bins, so T >= 641 + margins: 704 and 1,056 positions (x 1.5).
LENGTHS = (704, 1056)


@pytest.mark.slow
@pytest.mark.parametrize("attention, overrides", [("bigbird", {"block_size": 16}), ("chunked", {"chunk_size": 32})])
def test_sparse_kinds_create_no_quadratic_tensor(attention, overrides):
    largest = []
    for positions in LENGTHS:
        shapes = record_training_step(attention, positions, **overrides)
        assert len(shapes) > 100  # the probe saw the whole step
        assert quadratic(shapes, positions) == [], f"{attention} at T={positions}"
        attention_shapes = [shape for _, shape in shapes if len(shape) >= 4]
        largest.append(max(torch.Size(shape).numel() for shape in attention_shapes))
    # The largest attention-shaped tensor grows with T, not T**2: 1.5x the positions, at most ~1.5x the size.
    assert largest[1] / largest[0] < 1.5 * 1.1


@pytest.mark.slow
def test_probe_finds_the_quadratic_logits_of_full_attention():
    positions = LENGTHS[0]
    found = quadratic(record_training_step("full", positions), positions)
    assert any(shape[-2:] == (positions, positions) for _, shape in found)
    assert any(shape[-1] == 2 * positions - 1 for _, shape in found)
