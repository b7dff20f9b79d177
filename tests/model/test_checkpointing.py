"""Activation checkpointing changes memory, never results: outputs, gradients and BatchNorm statistics.

Recomputation in backward runs the stem and conv tower a second time in training mode; unless the
statistics are frozen for it, BatchNorm would update its running mean and variance twice per step.
Float64, dropout off, training mode (batch statistics), so equality is exact up to rounding.
"""

from __future__ import annotations

import pytest
import torch

from helpers import random_tokens, tiny_model, training_step

from senformer.bench.memory import saved_tensor_bytes

SWITCHES = [
    {"checkpoint_transformer": True},
    {"checkpoint_conv_tower": True},
    {"checkpoint_transformer": True, "checkpoint_conv_tower": True},
]


@pytest.mark.parametrize("attention", ["full", "bigbird"])
@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: "+".join(k.removeprefix("checkpoint_") for k in s))
def test_checkpointing_equals_plain_training(attention, switches):
    tokens = random_tokens(2, 12 * 128, seed=7)
    plain = tiny_model(seed=3, attention=attention).double()
    checkpointed = tiny_model(seed=3, attention=attention, **switches).double()
    expected_outputs, expected_gradients, expected_buffers = training_step(plain, tokens)
    outputs, gradients, buffers = training_step(checkpointed, tokens)

    for name in expected_outputs:
        torch.testing.assert_close(outputs[name], expected_outputs[name], rtol=1e-12, atol=1e-12)
    assert gradients.keys() == expected_gradients.keys()
    assert len(gradients) == len(list(plain.parameters()))
    for name in expected_gradients:
        torch.testing.assert_close(gradients[name], expected_gradients[name], rtol=1e-10, atol=1e-12, msg=name)
    for name in expected_buffers:
        torch.testing.assert_close(buffers[name], expected_buffers[name], rtol=1e-12, atol=1e-12, msg=name)
    tracked = [b for name, b in buffers.items() if name.endswith("num_batches_tracked")]
    assert tracked and all(int(count) == 2 for count in tracked)


def test_statistics_really_move_in_this_test():
    """The comparison above is only meaningful if a training step changes the running statistics."""
    model = tiny_model(seed=3).double()
    before = {name: b.clone() for name, b in model.named_buffers() if name.endswith("running_mean")}
    _, _, after = training_step(model, random_tokens(2, 12 * 128, seed=7))
    assert all(not torch.equal(before[name], after[name]) for name in before)


def test_checkpointing_frees_activations():
    """With both switches the graph keeps far fewer saved tensors (float32, 16 k bp)."""

    def saved_bytes(**switches) -> int:
        model = tiny_model(seed=0, **switches).train()
        return saved_tensor_bytes(lambda tokens: model(tokens)["human"].sum(), random_tokens(1, 128 * 128, seed=0))

    plain = saved_bytes()
    checkpointed = saved_bytes(checkpoint_transformer=True, checkpoint_conv_tower=True)
    assert checkpointed < 0.25 * plain
