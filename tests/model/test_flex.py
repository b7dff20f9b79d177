"""The FlexAttention form of the bucketed term: equal to the gathered form where it compiles (each new shape
compiles for tens of seconds on a CPU: slow), and a clean fall-back where it does not."""

import pytest
import torch

from senformer.model.attention import bigbird_attention, build_attention, full_attention, make_block_pattern
from senformer.model.attention import flex
from senformer.model.attention.buckets import position_buckets

from helpers import randomize_
from test_buckets import tiny_borzoi_config

BORZOI = ("borzoi_central_mask",)


def bucket_inputs(length, heads=2, key=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q_content, key_t, value, q_position = (torch.randn(1, heads, length, key, generator=generator) for _ in range(4))
    features, buckets = position_buckets(length, 32, 64, BORZOI)
    bucket_keys = (features.float() @ torch.randn(32, heads * key, generator=generator) / 4).view(-1, heads, key)
    return q_content, key_t, value, q_position, bucket_keys.transpose(0, 1), buckets


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.slow
def test_flex_score_mod_equals_the_gathered_term_dense_and_block_sparse():
    length = 250  # not a multiple of the block: FlexAttention's last block is partial, as the pattern's
    inputs = bucket_inputs(length)
    q_content, key, value, q_position, bucket_keys, buckets = inputs
    with torch.no_grad():
        dense = flex.flex_bucketed_attention(*inputs)
        if dense is None:
            pytest.skip("FlexAttention does not compile on this machine")
        assert relative_error(dense, full_attention(q_content, key, value, q_position, bucket_keys,
                                                    buckets=buckets)) < 1e-5
        pattern = make_block_pattern(length, heads=2, block_size=32, num_random_blocks=1, seed=4)
        assert not pattern.dense
        sparse = flex.flex_bucketed_attention(*inputs, pattern=pattern)
        expected = bigbird_attention(q_content, key, value, pattern, q_position, bucket_keys, buckets=buckets)
        assert relative_error(sparse, expected) < 1e-5


def test_flex_is_off_on_cpu_unless_switched_on_and_on_on_cuda_unless_switched_off(monkeypatch):
    monkeypatch.delenv("SENFORMER_FLEX_ATTENTION", raising=False)
    assert (flex.flex_enabled("cpu"), flex.flex_enabled("cuda")) == (False, True)
    long = torch.zeros(1, 1, flex.FLEX_MIN_POSITIONS, 4)
    assert not flex.flex_applies(long, (long,), 0.0)  # the gathered term measured faster on a CPU
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "1")
    assert (flex.flex_enabled("cpu"), flex.flex_enabled("cuda")) == (True, True)
    assert flex.flex_applies(long, (long,), 0.0)
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "0")
    assert (flex.flex_enabled("cpu"), flex.flex_enabled("cuda")) == (False, False)


def test_flex_runs_only_for_long_inference_without_dropout(monkeypatch):
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "1")
    long = torch.zeros(1, 1, flex.FLEX_MIN_POSITIONS, 4)
    assert flex.flex_applies(long, (long,), 0.0)
    assert not flex.flex_applies(long[:, :, :-1], (long,), 0.0)
    assert not flex.flex_applies(long, (long,), 0.05)
    assert not flex.flex_applies(long, (long.clone().requires_grad_(),), 0.0)  # no backward on CPU
    with torch.no_grad():
        assert flex.flex_applies(long, (long.clone().requires_grad_(),), 0.0)
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "0")
    assert not flex.flex_applies(long, (long,), 0.0)


def test_a_device_where_flex_fails_falls_back_to_the_gathered_term(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(flex, "_compiled", broken)
    monkeypatch.setattr(flex, "_failed_devices", set())
    monkeypatch.setattr(flex, "FLEX_MIN_POSITIONS", 8)
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "1")
    config = tiny_borzoi_config(attention="bigbird")
    attention = randomize_(build_attention(config)).eval()
    x = torch.randn(1, 40, config.dim)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="no C.. compiler"):
        out = attention(x)
    assert flex._failed_devices == {"cpu"}
    monkeypatch.setenv("SENFORMER_FLEX_ATTENTION", "0")
    with torch.no_grad():
        torch.testing.assert_close(out, attention(x), rtol=0, atol=0)
