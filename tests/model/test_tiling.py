"""Tiled stem + conv tower inference equals the untiled pass exactly (evaluation mode).

Comparisons run in float64: the randomised tiny model has large activations, and float32 convolutions of
different lengths round differently (oneDNN picks its algorithm per shape), which would hide a real error
of the same size behind a loose tolerance.
"""

from __future__ import annotations

import pytest
import torch

from helpers import random_tokens, tiny_model
from senformer import Enformer, EnformerConfig
from senformer.model.tiling import (
    affected_bins,
    conv_reach,
    conv_trunk_span,
    halo_bins,
    span_bounds,
    tile_bounds,
    tiled_conv_trunk,
)
from senformer.sequence import tokens_to_one_hot

BIN = 128
TILE = 10 * BIN  # 3 halo bins per side leave 4 kept bins per window


def one_hot_input(length: int, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """(batch, 4, length) channels-first one-hot with some N positions (all-zero columns)."""
    return tokens_to_one_hot(random_tokens(batch, length, seed), dtype=torch.float64).transpose(1, 2)


def exact_model(seed: int, **overrides) -> Enformer:
    return tiny_model(seed, **overrides).double()


def test_reach_of_the_published_geometry():
    # Stem width 15 at 1 bp: 7; tower widths 5 at 2, 4, ..., 64 bp: 2 * (2 + 4 + ... + 64) = 252 on each
    # side; the seven poolings by 2 add 1 + 2 + ... + 64 = 127 bp on the right: the rest of the bin.
    model = tiny_model()
    assert conv_reach(model) == (7 + 252, 7 + 252 + 127)
    assert halo_bins(model) == 3  # ceil(259 / 128) on the left; ceil((386 - 127) / 128) on the right
    full = Enformer(EnformerConfig(dim=96, depth=0, heads=2, key_size=8, conv_tower_divisible_by=8))
    assert conv_reach(full) == (259, 386)


@pytest.mark.parametrize("num_bins, tile_bins, halo", [(20, 10, 3), (23, 10, 3), (4, 10, 3), (7, 7, 3)])
def test_tile_bounds_cover_every_bin_once_within_the_tile(num_bins, tile_bins, halo):
    bounds = tile_bounds(num_bins, tile_bins, halo)
    kept = [bin_ for _, _, start, stop in bounds for bin_ in range(start, stop)]
    assert kept == list(range(num_bins))
    for window_start, window_stop, keep_start, keep_stop in bounds:
        assert window_stop - window_start <= tile_bins
        assert window_start == max(0, keep_start - halo) and window_stop == min(num_bins, keep_stop + halo)


def test_tile_too_small_for_the_halo_is_refused():
    with pytest.raises(ValueError, match="at least 7 bins"):
        tile_bounds(20, 6, 3)


@pytest.mark.parametrize("num_bins", [20, 23, 41])  # 20 divides into 4-bin cores; 23 and 41 do not
def test_tiled_conv_trunk_equals_untiled(num_bins):
    model = exact_model(seed=1)
    x = one_hot_input(num_bins * BIN, seed=num_bins)
    with torch.no_grad():
        untiled = model.conv_trunk(x)  # shorter than the default tile: one pass
        tiled = tiled_conv_trunk(model.conv_trunk, x, TILE, BIN, halo_bins(model))
    assert tiled.shape == untiled.shape == (2, model.config.dim, num_bins)
    torch.testing.assert_close(tiled, untiled, rtol=1e-10, atol=1e-10)


def test_a_smaller_halo_is_not_exact():
    """The test above would catch a halo one bin short: the comparison is sensitive."""
    model = exact_model(seed=1)
    x = one_hot_input(23 * BIN, seed=5)
    with torch.no_grad():
        untiled = model.conv_trunk(x)
        short = tiled_conv_trunk(model.conv_trunk, x, TILE, BIN, halo_bins(model) - 1)
    assert (short - untiled).abs().max() > 1e-3 * untiled.abs().max()


@pytest.mark.parametrize("num_bins", [16, 23])
def test_model_tiles_long_inputs_in_eval_mode(num_bins):
    tiled_model = exact_model(seed=2, conv_tile_length=TILE)
    untiled_model = exact_model(seed=2, conv_tile_length=None)
    tokens = random_tokens(2, num_bins * BIN, seed=3)
    calls = []
    hook = tiled_model.stem.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[-1]))
    with torch.inference_mode():
        tiled = tiled_model(tokens, return_embeddings=True)
        untiled = untiled_model(tokens, return_embeddings=True)
    hook.remove()
    assert len(calls) == len(tile_bounds(num_bins, TILE // BIN, 3)) > 1
    assert max(calls) <= TILE
    for name in ("human", "mouse", "embeddings"):
        torch.testing.assert_close(tiled[name], untiled[name], rtol=1e-10, atol=1e-10)


def test_tiled_gradients_equal_untiled_in_eval_mode():
    """Attribution (input gradients) in evaluation mode sees the same function through the tiles."""
    tiled_model = exact_model(seed=4, conv_tile_length=TILE)
    untiled_model = exact_model(seed=4, conv_tile_length=None)
    x = tokens_to_one_hot(random_tokens(1, 19 * BIN, seed=6), dtype=torch.float64)
    gradients = []
    for model in (tiled_model, untiled_model):
        sequence = x.clone().requires_grad_(True)
        model(sequence)["human"].sum().backward()
        gradients.append(sequence.grad)
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-10, atol=1e-10)


def test_training_mode_never_tiles():
    model = tiny_model(seed=0, conv_tile_length=TILE).train()
    calls = []
    model.stem.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[-1]))
    model(random_tokens(1, 16 * BIN))
    assert calls == [16 * BIN]


def test_conv_tile_length_is_validated():
    with pytest.raises(ValueError, match="conv_tile_length=1000 must be None or a positive multiple of 128"):
        EnformerConfig(conv_tile_length=1000)
    config = EnformerConfig(conv_tile_length=None)
    assert EnformerConfig.from_json(config.to_json()).conv_tile_length is None


def test_forward_is_the_composition_of_conv_features_and_head_outputs():
    model = tiny_model(seed=5, conv_tile_length=TILE)
    tokens = random_tokens(2, 19 * BIN, seed=7)
    with torch.inference_mode():
        whole = model(tokens, heads=["mouse"], return_embeddings=True)
        features = model.conv_features(tokens)
        parts = model.head_outputs(features, ["mouse"], return_embeddings=True)
    assert features.shape == (2, 19, model.config.dim)
    assert set(whole) == set(parts) == {"mouse", "embeddings"}
    for name in whole:
        assert torch.equal(whole[name], parts[name])  # the same operations in the same order: bit-identical


@pytest.mark.parametrize("first, last", [(0, 1), (0, 3), (5, 9), (20, 23), (22, 23), (0, 23), (9, 10)])
def test_a_span_of_the_trunk_equals_the_whole_pass(first, last):
    model = exact_model(seed=6)
    x = one_hot_input(23 * BIN, seed=8)
    with torch.no_grad():
        whole = model.conv_trunk(x)
        span = conv_trunk_span(model.conv_trunk, x, first, last, BIN, halo_bins(model))
    assert span.shape == (2, model.config.dim, last - first)
    torch.testing.assert_close(span, whole[:, :, first:last], rtol=1e-10, atol=1e-10)
    assert span_bounds(23, first, last, 3) == (max(0, first - 3), min(23, last + 3))


@pytest.mark.parametrize("start, stop", [(0, 1), (1000, 1001), (1023, 1025), (1500, 1600), (23 * BIN - 1, 23 * BIN)])
def test_affected_bins_are_exactly_the_positions_an_edit_changes(start, stop):
    """Positions outside affected_bins keep their value exactly; the first and last inside change."""
    model = exact_model(seed=7)
    x = one_hot_input(23 * BIN, seed=9, batch=1)
    edited = x.clone()
    edited[:, :, start:stop] = edited[:, :, start:stop].roll(1, dims=1) + 0.5  # every base changes
    with torch.no_grad():
        change = (model.conv_trunk(edited) - model.conv_trunk(x)).abs().amax(dim=(0, 1))  # (positions,)
    first, last = affected_bins(conv_reach(model), start, stop, 23, BIN)
    assert last - first <= -(-(stop - start + 259 + 386) // BIN)
    assert (change[:first] == 0).all() and (change[last:] == 0).all()
    assert change[first] > 0 and change[last - 1] > 0
