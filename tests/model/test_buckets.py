"""The bucketed relative-position term of step-function features (Borzoi's central masks).

The buckets against the features they group; the term read from a per-query table against the per-distance
term, forward and backward, at Borzoi's 4,096 positions and at 8,192; every kind on Borzoi's features against
the float64 oracles of test_attention (bigbird: dense attention masked with its own pattern).
"""

import pytest
import torch

from senformer.config import ATTENTION_KINDS, BorzoiConfig
from senformer.model.attention import (
    bigbird_attention, build_attention, chunked_attention, full_attention, make_block_pattern,
)
from senformer.model.attention.buckets import is_step_family, position_buckets
from senformer.model.positional import relative_distances, relative_position_features

from helpers import randomize_, tiny_config
from senformer.model.borzoi import Borzoi
from test_attention import assert_same, copy_attention, direct_attention, outputs_and_grads

BORZOI = ("borzoi_central_mask",)


def tiny_borzoi_config(**overrides) -> BorzoiConfig:
    values = dict(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5, num_conv_tower_blocks=3,
                  conv_tower_start=8, conv_tower_divisible_by=4, crop=2, final_channels=12,
                  output_heads={"human": 3}, dropout_rate=0.0, attention_dropout_rate=0.0,
                  positional_dropout_rate=0.0, final_dropout_rate=0.0, chunk_size=5, block_size=4,
                  num_random_blocks=2)
    values.update(overrides)
    return BorzoiConfig(**values)


# The buckets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,basis,count", [(4096, 4096, 31), (8192, 4096, 32), (4096, None, 31),
                                                (16_384, None, 31), (100, 4096, 17)])
def test_buckets_group_equal_feature_vectors(length, basis, count):
    features = relative_position_features(relative_distances(length), 32, basis or length, torch.float64, BORZOI)
    distinct, index = position_buckets(length, 32, basis or length, BORZOI)
    assert distinct.shape == (count, 32) and index.shape == (2 * length - 1,)
    torch.testing.assert_close(distinct[index], features, rtol=0, atol=0)
    assert count <= 33


def test_published_buckets_are_the_documented_runs():
    # Runs of |d| with the published 4,096-position basis; the same run of either sign differs only in sign.
    starts = [0, 1, 2, 4, 8, 13, 22, 38, 64, 107, 181, 304, 512, 861, 1448, 2436, 4096]
    length = 8192
    _, index = position_buckets(length, 32, 4096, BORZOI)
    positive = index[length - 1:]  # distances 0 .. T - 1
    changes = [0] + [d for d in range(1, length) if positive[d] != positive[d - 1]]
    assert changes == starts
    negative = index[: length].flip(0)  # distances 0 .. -(T - 1)
    assert [0] + [d for d in range(1, length) if negative[d] != negative[d - 1]] == starts
    assert positive[5000] == negative[5000]  # beyond the widest width both signs are the zero vector
    assert len(set(positive[1:4096].tolist()) & set(negative[1:4096].tolist())) == 0
    distinct, _ = position_buckets(length, 32, 4096, BORZOI)
    assert (distinct[positive[5000]] == 0).all()


def test_only_step_families_are_bucketed():
    assert is_step_family(tiny_borzoi_config())
    assert not is_step_family(tiny_borzoi_config(relative_positions=False, attention="rotary", key_size=8,
                                                 rotary_dims=4))
    assert not is_step_family(tiny_config())  # Enformer's exponential and gamma features
    assert not build_attention(tiny_config()).bucketed
    assert all(build_attention(tiny_borzoi_config(attention=kind)).bucketed for kind in ATTENTION_KINDS)


# The term against the per-distance term -------------------------------------------------------------
def dense_and_bucket_inputs(length, basis, heads=1, key=4, value=4, dtype=torch.float32, seed=0):
    """Queries, keys, values and a projection W of the 32 features; the relative keys are made from W twice:
    per distance (heads, 2T - 1, key) and per bucket (heads, buckets, key), so gradients meet at W."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_()

    inputs = [rand(1, heads, length, key), rand(1, heads, length, key), rand(1, heads, length, value),
              rand(1, heads, length, key), rand(32, heads * key)]
    features = relative_position_features(relative_distances(length), 32, basis, dtype, BORZOI)
    distinct, index = position_buckets(length, 32, basis, BORZOI)

    def keys(rows, weight):
        return (rows @ weight).view(rows.shape[0], heads, key).transpose(0, 1)

    def dense(kernel):
        return lambda qc, k, v, qp, w: kernel(qc, k, v, qp, keys(features, w))

    def bucketed(kernel):
        return lambda qc, k, v, qp, w: kernel(qc, k, v, qp, keys(distinct.to(dtype), w), buckets=index)

    return inputs, dense, bucketed


@pytest.mark.parametrize("length", [4096, pytest.param(8192, marks=pytest.mark.slow)])
def test_bucketed_term_equals_the_dense_term_forward_and_backward(length):
    # chunked attention computes the dense term one chunk of queries at a time (never (T, 2T - 1) at once),
    # so the per-distance reference fits at 8,192 positions; head size 4 keeps it to seconds.
    inputs, dense, bucketed = dense_and_bucket_inputs(length, 4096)
    kernel = lambda *a, **k: chunked_attention(*a, chunk_size=1024, **k)  # noqa: E731
    assert_same(outputs_and_grads(bucketed(kernel), inputs), outputs_and_grads(dense(kernel), inputs), torch.float32)


@pytest.mark.parametrize("length,basis", [(37, 37), (64, 16), (100, 4096)])
def test_every_kind_with_buckets_equals_the_float64_oracles(length, basis):
    inputs, dense, bucketed = dense_and_bucket_inputs(length, basis, heads=2, dtype=torch.float64, seed=1)
    oracle = outputs_and_grads(dense(direct_attention), inputs)
    assert_same(outputs_and_grads(bucketed(full_attention), inputs), oracle, torch.float64)
    for chunk in (7, length):
        chunked = bucketed(lambda *a, **k: chunked_attention(*a, chunk_size=chunk, **k))
        assert_same(outputs_and_grads(chunked, inputs), oracle, torch.float64)


@pytest.mark.parametrize("length,block,window,globals_,random", [
    (37, 4, 3, 2, 2), (64, 4, 3, 2, 3), (65, 4, 3, 2, 3), (61, 8, 3, 0, 1), (100, 4, 5, 2, 0), (9, 4, 3, 2, 3),
])
def test_bigbird_with_buckets_equals_the_masked_dense_oracle(length, block, window, globals_, random):
    pattern = make_block_pattern(length, heads=2, block_size=block, num_window_blocks=window,
                                 num_global_blocks=globals_, num_random_blocks=random, seed=5)
    mask = pattern.mask()
    inputs, dense, bucketed = dense_and_bucket_inputs(length, 16, heads=2, dtype=torch.float64, seed=2)
    oracle = outputs_and_grads(dense(lambda *a: direct_attention(*a, mask=mask)), inputs)
    for chunk_blocks in (8, 2):
        sparse = bucketed(lambda qc, k, v, qp, rk, buckets: bigbird_attention(
            qc, k, v, pattern, qp, rk, chunk_blocks=chunk_blocks, buckets=buckets))
        assert_same(outputs_and_grads(sparse, inputs), oracle, torch.float64)


# The modules on Borzoi's config ---------------------------------------------------------------------
@pytest.mark.parametrize("length,basis", [(37, None), (64, 16), (96, 32)])
def test_borzoi_modules_agree_with_the_per_distance_term(length, basis):
    config = tiny_borzoi_config(positional_basis_length=basis)
    full = randomize_(build_attention(config.replace(attention="full"), 1).double())
    per_distance = copy_attention(full, build_attention(config.replace(attention="full"), 1).double())
    per_distance.bucketed = False
    chunked = copy_attention(full, build_attention(config.replace(attention="chunked"), 1).double())
    bigbird = copy_attention(full, build_attention(config.replace(attention="bigbird"), 1).double())
    x = torch.randn(2, length, config.dim, dtype=torch.float64, requires_grad=True)
    expected = per_distance(x)
    torch.testing.assert_close(full(x), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chunked(x), expected, rtol=1e-10, atol=1e-10)
    mask = bigbird.attention_mask(length)
    per_distance.attend = lambda qc, k, v, qp, rk, buckets=None: full_attention(qc, k, v, qp, rk, mask=mask)
    torch.testing.assert_close(bigbird(x), per_distance(x), rtol=1e-10, atol=1e-10)
    # Gradients reach the relative-key projection through the bucket table.
    (bigbird(x) * torch.linspace(-1, 1, x.numel(), dtype=x.dtype).view_as(x)).sum().backward()
    assert bigbird.to_r_k.weight.grad.abs().sum() > 0


def test_positional_dropout_drops_whole_buckets_in_training():
    # One dropout mask over the (buckets, features) table: every distance of a bucket shares it.
    config = tiny_borzoi_config(positional_dropout_rate=0.5)
    attention = randomize_(build_attention(config)).train()
    features, index = attention.position_buckets(40, torch.device("cpu"))
    torch.manual_seed(0)
    keys, keys_index = attention.bucket_keys(40, torch.device("cpu"))
    torch.manual_seed(0)
    dropped = torch.nn.functional.dropout(features.float(), 0.5, training=True)
    expected = attention.to_r_k(dropped).view(-1, config.heads, config.key_size).transpose(0, 1)
    torch.testing.assert_close(keys, expected, rtol=0, atol=0)
    assert (dropped == 0).any() and torch.equal(keys_index, index)
    attention.eval()
    torch.testing.assert_close(attention.bucket_keys(40, torch.device("cpu"))[0],
                               attention.to_r_k(features.float()).view(-1, 2, 4).transpose(0, 1))


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("length", [64, 250])
def test_each_kind_states_the_flops_of_its_bucketed_kernel(kind, length):
    from torch.utils.flop_counter import FlopCounterMode

    config = tiny_borzoi_config(attention=kind, block_size=16, chunk_size=32, positional_basis_length=128)
    module = build_attention(config).eval()
    x = torch.randn(1, length, config.dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    assert counter.get_total_flops() == type(module).projection_flops(config, length) + type(module).score_flops(
        config, length)


# Longer inputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bp", [2048, 4096, 8192])
def test_borzoi_runs_every_kind_at_longer_inputs_than_its_basis(bp):
    # The basis is fixed at 64 positions (as the published 4,096), the input has 128 to 512: distances past
    # the widest width share the zero bucket. The output keeps every bin but the cropped ones; chunked equals
    # full and bigbird equals full masked with its pattern, through the whole model.
    config = tiny_borzoi_config(depth=2, positional_basis_length=64)
    tokens = torch.randint(0, 4, (1, bp), generator=torch.Generator().manual_seed(bp))
    models = {}
    for kind in ATTENTION_KINDS:
        torch.manual_seed(0)
        models[kind] = randomize_(Borzoi(config.replace(attention=kind)), 0).eval().double()
    with torch.no_grad():
        outputs = {kind: model(tokens)["human"] for kind, model in models.items()}
        masked = models["full"]
        for layer, block in enumerate(masked.transformer):
            mask = models["bigbird"].transformer[layer].attention.attention_mask(config.num_positions(bp))
            block.attention.attend = (lambda qc, k, v, qp, rk, buckets=None, mask=mask:
                                      full_attention(qc, k, v, qp, rk, mask=mask, buckets=buckets))
        masked_out = masked(tokens)["human"]
    assert outputs["full"].shape == (1, config.output_length(bp), 3) == (1, bp // 4 - 4, 3)
    torch.testing.assert_close(outputs["chunked"], outputs["full"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(outputs["bigbird"], masked_out, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(outputs["bigbird"], outputs["full"])  # sparse at 8+ blocks: a different model


@pytest.mark.parametrize("attention", ["bigbird", "chunked"])
def test_borzoi_training_step_creates_no_quadratic_tensor(attention):
    # test_memory_linear's probe on a tiny Borzoi: no tensor of the step (forward, poisson_mn, backward) has
    # two dimensions of T positions or more: not the (T, T) scores, not the (T, 2T - 1) relative term.
    from senformer.train.losses import poisson_multinomial_loss
    from test_memory_linear import TensorShapes, quadratic

    config = tiny_borzoi_config(attention=attention, block_size=16, chunk_size=32, positional_basis_length=64)
    model = randomize_(Borzoi(config), 0).train()
    largest = []
    for positions in (256, 384):
        tokens = torch.randint(0, 4, (1, positions * 16), generator=torch.Generator().manual_seed(positions))
        with TensorShapes() as probe:
            prediction = model(tokens)["human"]
            poisson_multinomial_loss(prediction, torch.ones_like(prediction)).backward()
        assert len(probe.shapes) > 100
        assert quadratic(probe.shapes, positions) == [], f"{attention} at T={positions}"
        largest.append(max(torch.Size(shape).numel() for _, shape in probe.shapes if len(shape) >= 4))
    assert largest[1] / largest[0] < 1.5 * 1.1


def test_borzoi_full_attention_holds_its_scores_but_no_relative_term_per_distance():
    from test_memory_linear import TensorShapes

    positions = 256
    model = randomize_(Borzoi(tiny_borzoi_config(attention="full", positional_basis_length=64)), 0).train()
    tokens = torch.randint(0, 4, (1, positions * 16), generator=torch.Generator().manual_seed(0))
    with TensorShapes() as probe:
        model(tokens)["human"].sum().backward()
    assert any(shape[-2:] == (positions, positions) for _, shape in probe.shapes)  # the probe sees the scores
    assert not any(len(shape) >= 2 and shape[-1] == 2 * positions - 1 for _, shape in probe.shapes)
