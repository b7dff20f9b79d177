"""The attention kinds against their oracles.

``full`` is checked against DeepMind's relative shift and a direct loop; ``chunked`` must equal ``full``;
``bigbird`` must equal ``full`` masked with its own pattern, and ``full`` itself when the pattern covers
every block. Values and gradients: fp32 within 1e-5 of the largest value, float64 within 1e-10.
"""

import numpy as np
import pytest
import torch

from senformer.config import ATTENTION_KINDS
from senformer.model.attention import (
    ATTENTION_CLASSES,
    bigbird_attention,
    build_attention,
    chunked_attention,
    full_attention,
    make_block_pattern,
    relative_shift,
)
from senformer.model.positional import relative_distances, relative_position_features

from helpers import randomize_, tiny_config

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def tf_relative_shift(x: np.ndarray) -> np.ndarray:
    """DeepMind's relative_shift, transcribed in numpy: pad, reshape, drop a row, reshape, slice."""
    *lead, t1, t2 = x.shape
    padded = np.concatenate([np.zeros((*lead, t1, 1)), x], axis=-1)
    padded = padded.reshape(*lead, t2 + 1, t1)[..., 1:, :]
    return padded.reshape(*lead, t1, t2)[..., : (t2 + 1) // 2]


@pytest.mark.parametrize("length", [1, 2, 7, 64])
def test_relative_shift_is_the_direct_gather_and_deepminds_trick(length):
    x = torch.randn(2, 3, length, 2 * length - 1, dtype=torch.float64)
    shifted = relative_shift(x)
    gathered = torch.empty(2, 3, length, length, dtype=torch.float64)
    for i in range(length):
        for j in range(length):
            gathered[..., i, j] = x[..., i, length - 1 + j - i]
    torch.testing.assert_close(shifted, gathered, rtol=0, atol=0)
    np.testing.assert_array_equal(shifted.numpy(), tf_relative_shift(x.numpy()))


def make_inputs(batch=2, heads=2, length=37, key=8, value=6, dtype=torch.float64, seed=0, relative=True):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_()

    q_content, key_t, value_t = rand(batch, heads, length, key), rand(batch, heads, length, key), rand(batch, heads, length, value)
    if not relative:
        return q_content, key_t, value_t, None, None
    return q_content, key_t, value_t, rand(batch, heads, length, key), rand(heads, 2 * length - 1, key)


def outputs_and_grads(kernel, inputs):
    out = kernel(*inputs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * weights).sum(), [t for t in inputs if t is not None])
    return [out.detach(), *grads]


def assert_same(actual, expected, dtype):
    for a, e in zip(actual, expected):
        scale = e.abs().max().clamp_min(1e-30)
        assert ((a - e).abs().max() / scale).item() <= TOLERANCE[dtype], ((a - e).abs().max() / scale).item()


def direct_attention(q_content, key, value, q_position, relative_keys, mask=None):
    """Loop over (i, j): logits = q_c . k_j + q_p . r_k[j - i + T - 1]."""
    length = q_content.shape[-2]
    logits = torch.einsum("bhik,bhjk->bhij", q_content, key)
    if relative_keys is not None:
        index = torch.arange(length)[None, :] - torch.arange(length)[:, None] + length - 1  # (i, j)
        logits = logits + torch.einsum("bhik,hijk->bhij", q_position, relative_keys[:, index])
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits.softmax(-1) @ value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("relative", [True, False])
def test_full_equals_a_direct_computation(dtype, relative):
    inputs = make_inputs(dtype=dtype, relative=relative)
    assert_same(outputs_and_grads(full_attention, inputs), outputs_and_grads(direct_attention, inputs), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length,chunk", [(37, 5), (37, 37), (37, 100), (64, 16), (1, 4), (9, 1)])
def test_chunked_equals_full(dtype, length, chunk):
    inputs = make_inputs(length=length, dtype=dtype)
    chunked = outputs_and_grads(lambda *a: chunked_attention(*a, chunk_size=chunk), inputs)
    assert_same(chunked, outputs_and_grads(full_attention, inputs), dtype)


PATTERNS = [
    # length, block, window, globals, random: odd lengths, one block, short inputs, several regimes.
    (37, 4, 3, 2, 2),
    (64, 4, 3, 2, 3),
    (65, 4, 3, 2, 3),
    (61, 8, 3, 0, 1),
    (100, 4, 5, 2, 0),
    (3, 4, 3, 2, 3),   # a single partial block
    (9, 4, 3, 2, 3),   # fewer blocks than the pattern: dense fallback
    (40, 4, 1, 0, 0),  # window of one block only
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length,block,window,globals_,random", PATTERNS)
def test_bigbird_equals_dense_attention_masked_with_its_pattern(dtype, length, block, window, globals_, random):
    pattern = make_block_pattern(length, heads=2, block_size=block, num_window_blocks=window,
                                 num_global_blocks=globals_, num_random_blocks=random, seed=3)
    inputs = make_inputs(length=length, dtype=dtype)
    mask = pattern.mask()
    sparse = outputs_and_grads(lambda *a: bigbird_attention(a[0], a[1], a[2], pattern, a[3], a[4]), inputs)
    dense = outputs_and_grads(lambda *a: full_attention(*a, mask=mask), inputs)
    assert_same(sparse, dense, dtype)
    assert_same(sparse, outputs_and_grads(lambda *a: direct_attention(*a, mask=mask), inputs), dtype)
    # A few query blocks per chunk, each recomputed in backward: the same values and gradients.
    chunked = outputs_and_grads(lambda *a: bigbird_attention(a[0], a[1], a[2], pattern, a[3], a[4], chunk_blocks=2), inputs)
    assert_same(chunked, dense, dtype)


def test_bigbird_without_relative_positions_equals_masked_dense():
    pattern = make_block_pattern(50, heads=2, block_size=4, num_random_blocks=2, seed=1)
    inputs = make_inputs(length=50, relative=False)
    sparse = outputs_and_grads(lambda *a: bigbird_attention(a[0], a[1], a[2], pattern), inputs)
    dense = outputs_and_grads(lambda *a: full_attention(*a[:3], mask=pattern.mask()), inputs)
    assert_same(sparse, dense, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bigbird_covering_every_block_equals_full(dtype):
    # 10 blocks: the edge query blocks have 6 free blocks beside their window and the globals, so 6 random
    # blocks cover every block, drawn through the sparse path.
    pattern = make_block_pattern(38, heads=2, block_size=4, num_random_blocks=6, seed=0)
    assert pattern.mask().all()
    inputs = make_inputs(length=38, dtype=dtype)
    full = outputs_and_grads(full_attention, inputs)
    assert_same(outputs_and_grads(lambda *a: bigbird_attention(a[0], a[1], a[2], pattern, a[3], a[4]), inputs), full, dtype)
    forced = pattern.__class__(**{**pattern.__dict__, "dense": False})
    assert_same(outputs_and_grads(lambda *a: bigbird_attention(a[0], a[1], a[2], forced, a[3], a[4]), inputs), full, dtype)


def test_pattern_structure():
    heads, block, length = 3, 4, 4 * 20
    pattern = make_block_pattern(length, heads=heads, block_size=block, num_window_blocks=3,
                                 num_global_blocks=2, num_random_blocks=3, seed=5, layer=2)
    blocks = pattern.block_mask()
    assert pattern.num_blocks == 20 and pattern.global_blocks == (0, 19) and not pattern.dense
    assert blocks[:, 0].all() and blocks[:, -1].all() and blocks[:, :, 0].all() and blocks[:, :, -1].all()
    for h in range(heads):
        for q in range(1, 19):
            window = {b for b in (q - 1, q, q + 1)}
            attended = set(torch.nonzero(blocks[h, q]).flatten().tolist())
            randoms = attended - window - {0, 19}
            assert window <= attended and len(randoms) == 3
    # Random blocks differ between heads and layers but repeat for the same seed.
    assert not torch.equal(blocks[0], blocks[1])
    again = make_block_pattern(length, heads=heads, block_size=block, num_random_blocks=3, seed=5, layer=2)
    assert torch.equal(again.block_mask(), blocks)
    other_layer = make_block_pattern(length, heads=heads, block_size=block, num_random_blocks=3, seed=5, layer=3)
    assert not torch.equal(other_layer.block_mask(), blocks)


def test_random_blocks_are_drawn_only_from_free_blocks():
    # 7 blocks, window 3 + 2 globals leaves at most 2 free blocks for 3 random slots.
    pattern = make_block_pattern(28, heads=2, block_size=4, num_random_blocks=3, seed=0)
    assert pattern.dense  # every block ends up attended: the dense fallback
    pattern = make_block_pattern(36, heads=2, block_size=4, num_random_blocks=1, seed=0)
    for head in range(2):
        for row, query_block in enumerate(pattern.query_blocks.tolist()):
            keys = pattern.key_blocks[head, row][pattern.valid[head, row]].tolist()
            assert len(keys) == len(set(keys)), f"query block {query_block} attends a key block twice: {keys}"
            fixed = {query_block - 1, query_block, query_block + 1, 0, pattern.num_blocks - 1}
            assert len(keys) == len(fixed) + 1  # window and globals, plus one random block


def copy_attention(source, target):
    target.load_state_dict(source.state_dict())
    return target


@pytest.mark.parametrize("length", [37, 64, 5])
def test_modules_share_parameters_and_agree(length):
    config = tiny_config(dim=36, heads=3, key_size=4, block_size=4, chunk_size=6, num_random_blocks=2,
                         conv_tower_divisible_by=6)
    full = randomize_(build_attention(config.replace(attention="full"), 1).double())
    chunked = copy_attention(full, build_attention(config.replace(attention="chunked"), 1).double())
    bigbird = copy_attention(full, build_attention(config.replace(attention="bigbird"), 1).double())
    x = torch.randn(2, length, 36, dtype=torch.float64)
    torch.testing.assert_close(chunked(x), full(x), rtol=1e-10, atol=1e-10)
    # bigbird equals full attention masked with bigbird's own mask, through the module's projections.
    mask = bigbird.attention_mask(length)
    masked_full = build_attention(config.replace(attention="full"), 1).double()
    masked_full.load_state_dict(full.state_dict())
    masked_full.attend = lambda qc, k, v, qp, rk, buckets=None: full_attention(qc, k, v, qp, rk, mask=mask,
                                                                                buckets=buckets)
    torch.testing.assert_close(bigbird(x), masked_full(x), rtol=1e-10, atol=1e-10)


def test_pattern_is_the_same_in_training_and_evaluation():
    config = tiny_config(attention="bigbird", block_size=4, num_random_blocks=2)
    attention = randomize_(build_attention(config, 0))
    x = torch.randn(1, 48, config.dim)
    attention.train()
    train_mask, train_out = attention.attention_mask(48), attention(x)
    attention.eval()
    torch.testing.assert_close(attention.attention_mask(48), train_mask, rtol=0, atol=0)
    torch.testing.assert_close(attention(x), train_out, rtol=0, atol=0)  # dropout is off in tiny_config


def test_positional_features_feed_the_relative_keys():
    config = tiny_config()
    attention = randomize_(build_attention(config, 0)).double()
    keys = attention.relative_keys(10, torch.device("cpu"))
    features = relative_position_features(relative_distances(10), config.relative_features, 10, torch.float64)
    expected = (features @ attention.to_r_k.weight.T).view(19, config.heads, config.key_size).transpose(0, 1)
    torch.testing.assert_close(keys, expected)


def test_unknown_attention_kind_lists_the_valid_names():
    config = tiny_config()
    object.__setattr__(config, "attention", "flash")
    with pytest.raises(ValueError, match="full, chunked, bigbird"):
        build_attention(config)


def test_the_class_table_has_a_class_for_each_configurable_kind():
    assert tuple(ATTENTION_CLASSES) == ATTENTION_KINDS
    assert all(cls.kind == kind and isinstance(build_attention(tiny_config(attention=kind)), cls)
               for kind, cls in ATTENTION_CLASSES.items())


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("length", [64, 256, 250])  # bigbird: dense at 4 blocks, sparse at 16
@pytest.mark.parametrize("relative", [True, False])
def test_each_kind_states_the_flops_its_kernel_computes(kind, length, relative):
    """The analytic count of each kind equals the matrix products torch's FLOP counter sees it run."""
    from torch.utils.flop_counter import FlopCounterMode

    config = tiny_config(attention=kind, block_size=16, chunk_size=32, relative_positions=relative)
    module = build_attention(config).eval()
    x = torch.randn(1, length, config.dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    stated = type(module).projection_flops(config, length) + type(module).score_flops(config, length)
    assert counter.get_total_flops() == stated
