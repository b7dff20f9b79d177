"""Gradient accumulation, activation checkpointing and bf16 autocast switches."""

import torch
from train_support import head_data, read_weights, tiny_settings

from senformer.train import run_training

FROZEN_BATCHNORM = r"^(transformer|heads|final_pointwise\.conv)\."  # BatchNorm in eval mode: batch-size free


def _max_difference(first, second):
    return max(float((first[n].double() - second[n].double()).abs().max()) for n in first)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    """2 micro-batches of 2 == one batch of 4 (BatchNorm frozen, so the statistics do not depend on it);
    adam_eps large for the reason given in ddp_worker.py."""
    common = dict(train=FROZEN_BATCHNORM, steps=2, adam_eps=1e-4, warmup_steps=0)
    accumulated = run_training(tiny_settings(batch_size=2, grad_accumulation=2, **common), tmp_path / "a", data=head_data())
    whole = run_training(tiny_settings(batch_size=4, **common), tmp_path / "b", data=head_data())
    assert _max_difference(read_weights(accumulated), read_weights(whole)) < 1e-5


def test_activation_checkpointing_keeps_the_update(tmp_path):
    plain = run_training(tiny_settings(steps=2), tmp_path / "plain", data=head_data())
    checkpointed = run_training(tiny_settings(steps=2, checkpoint_activations=True, checkpoint_conv_tower=True),
                                tmp_path / "checkpointed", data=head_data())
    assert _max_difference(read_weights(plain), read_weights(checkpointed)) < 1e-6
    assert '"checkpoint_transformer": true' in (checkpointed / "config.json").read_text()


def test_bf16_autocast_trains_close_to_float32(tmp_path):
    plain = read_weights(run_training(tiny_settings(steps=1), tmp_path / "plain", data=head_data()))
    bf16 = read_weights(run_training(tiny_settings(steps=1, bf16=True), tmp_path / "bf16", data=head_data()))
    assert all(tensor.dtype != torch.bfloat16 for tensor in bf16.values())  # master weights stay float32
    parameters = [n for n in plain if not n.split(".")[-1].startswith(("running_", "num_batches"))]
    statistics = [n for n in plain if n.split(".")[-1].startswith("running_")]
    # One Adam step moves each parameter by at most lr * warm-up factor = 5e-4: at worst a flipped sign.
    assert 0 < _max_difference({n: plain[n] for n in parameters}, {n: bf16[n] for n in parameters}) <= 1e-3 + 1e-7
    assert _max_difference({n: plain[n] for n in statistics}, {n: bf16[n] for n in statistics}) < 2e-2
