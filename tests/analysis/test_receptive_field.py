"""Figure 8: the receptive field analysis sees the conv tower's finite reach and attention's global one."""

import numpy as np
import pytest
import torch

from helpers import tiny_model
from senformer.analysis.receptive_field import (
    conv_reach_mask,
    output_bin_centers,
    random_sequences,
    receptive_field,
    spread_positions,
)
from senformer.model.tiling import conv_reach, halo_bins

LENGTH = 4096  # 32 positions of 128 bp; target_length 16 keeps the central 16


def double_model(**overrides):
    # float64: float32 noise (~1e-4 on outputs of ~100) would blur "exactly unchanged" bins
    return tiny_model(seed=3, target_length=16, **overrides).double()


def test_conv_reach_of_the_enformer_trunk():
    # stem conv 15 (7 each side), pooling 2; six towers of conv 5 and pooling 2 at strides 2..64:
    # left 7 + 2 * (2 + 4 + ... + 64) = 259, right 7 + 1 + (2 + 1) * (2 + ... + 64) = 386: 646 bp in all
    model = tiny_model(depth=0)
    assert conv_reach(model) == (259, 386)
    assert halo_bins(model) == 3  # the tiler reads the same reach


def test_output_bin_centers_follow_the_crop():
    config = tiny_model(target_length=16).config
    centers = output_bin_centers(config, LENGTH)
    assert centers[0] == 8 * 128 + 64 and centers[-1] == 23 * 128 + 64 and len(centers) == 16


def test_depth_zero_changes_only_bins_within_the_conv_reach():
    model = double_model(depth=0)
    sequences = random_sequences(2, LENGTH, seed=1)
    result = receptive_field(model, sequences, num_positions=16, progress=False)
    mask = conv_reach_mask(model, LENGTH, result.positions)
    assert result.change.shape == (16, 16) and result.change_per_sequence.shape == (2, 16, 16)
    assert mask.any() and not mask.all()
    peak = result.change.max()
    assert result.change[~mask].max() <= 1e-12 * peak  # exactly unchanged up to float64 rounding
    assert result.change[mask].min() > 1e-6 * peak  # every bin in reach does change
    # mutations whose reach misses the output window change nothing at all
    outside = ~mask.any(axis=1)
    assert outside.sum() >= 4
    assert result.change[outside].max() <= 1e-12 * peak


@pytest.mark.parametrize("attention", ["full", "bigbird"])
def test_attention_spreads_every_mutation_over_the_whole_output(attention):
    model = double_model(depth=2, attention=attention)
    sequences = random_sequences(1, LENGTH, seed=1)
    result = receptive_field(model, sequences, num_positions=16, progress=False)
    mask = conv_reach_mask(model, LENGTH, result.positions)
    peak = result.change.max()
    # far beyond the conv reach, even for mutations outside the output window, every bin moves
    assert result.change[~mask].min() > 1e-8 * peak
    np.testing.assert_array_equal(result.reach(1e-8 * peak), np.ones(16))
    # and the nearby bins still move the most on average
    assert result.change[mask].mean() > result.change[~mask].mean()


def test_alternatives_all_and_random():
    model = double_model(depth=0)
    sequences = random_sequences(1, LENGTH, seed=4)
    positions = np.array([2000, 2050])
    every = receptive_field(model, sequences, positions=positions, alternatives="all", progress=False)
    # "all" averages the three substitutions, computed here one by one
    with torch.no_grad():
        reference = model(sequences)["human"]
        changes = []
        for base in range(4):
            if base == int(sequences[0, 2000]):
                continue
            mutated = sequences.clone()
            mutated[0, 2000] = base
            changes.append((model(mutated)["human"] - reference).abs().mean(-1)[0])
    np.testing.assert_allclose(every.change[0], torch.stack(changes).mean(0).numpy(), rtol=1e-9, atol=1e-12)
    one = receptive_field(model, sequences, positions=positions, alternatives="random", seed=5, progress=False)
    again = receptive_field(model, sequences, positions=positions, alternatives="random", seed=5, batch_size=1,
                            progress=False)
    np.testing.assert_allclose(one.change, again.change, rtol=1e-9, atol=1e-12)
    assert not np.allclose(one.change, every.change)


def test_tracks_subset_and_validation():
    model = tiny_model(seed=0, depth=0, target_length=16)
    sequences = random_sequences(1, LENGTH, seed=4)
    result = receptive_field(model, sequences, positions=[2048], tracks=[1], head="mouse", progress=False)
    assert result.head == "mouse" and result.change.shape == (1, 16)
    with pytest.raises(ValueError, match="positions must lie"):
        receptive_field(model, sequences, positions=[LENGTH], progress=False)
    with pytest.raises(ValueError, match="alternatives"):
        receptive_field(model, sequences, alternatives="some", progress=False)
    with pytest.raises(ValueError, match="integer tokens"):
        receptive_field(model, sequences.float(), progress=False)
    with pytest.raises(ValueError, match="not valid"):
        receptive_field(model, random_sequences(1, 4000), progress=False)
    assert spread_positions(1000, 4).tolist() == [125, 375, 625, 875]


def test_dataset_tokens_are_the_inverse_of_the_stored_one_hot(tmp_path):
    from senformer.analysis.receptive_field import dataset_tokens
    from senformer.data.basenji import BasenjiDataset
    from senformer.data.synthetic import make_synthetic
    from senformer.sequence import tokens_to_one_hot

    data = make_synthetic(tmp_path / "data", size="tiny", seed=0)
    tokens = dataset_tokens(data, "test", 2, 4096)
    stored = torch.stack([example["sequence"] for _, example in zip(range(2), BasenjiDataset(data, "test"))])
    assert tokens.shape == (2, 4096) and tokens.dtype == torch.int64
    torch.testing.assert_close(tokens_to_one_hot(tokens), stored.float(), rtol=0, atol=0)


@pytest.mark.parametrize("attention", ["full", "chunked", "bigbird"])
def test_receptive_field_through_the_engine_equals_the_plain_path(attention):
    # conv tile below the input (the reference trunk is tiled); positions at both ends and a tile boundary
    model = double_model(depth=2, attention=attention, num_random_blocks=1, conv_tile_length=1280)
    sequences = random_sequences(2, LENGTH, seed=7)
    positions = np.array([0, 511, 512, 2000, LENGTH - 1])
    engine = receptive_field(model, sequences, positions=positions, batch_size=5, progress=False)
    plain = receptive_field(model, sequences, positions=positions, batch_size=5, progress=False, plain=True)
    peak = np.abs(plain.change_per_sequence).max()
    assert peak > 0
    assert np.abs(engine.change_per_sequence - plain.change_per_sequence).max() <= 1e-10 * peak


def test_receptive_field_command_agrees_with_and_without_plain(tmp_path, monkeypatch):
    from helpers import tiny_model as make_model
    from senformer import save_model
    from senformer.cli import main

    import senformer.weights

    load_model = senformer.weights.load_model  # float64 models: the two paths compare at the float64 bound
    monkeypatch.setattr(senformer.weights, "load_model", lambda *args, **kwargs: load_model(*args, **kwargs).double())
    save_model(make_model(seed=8, target_length=16), tmp_path / "model")
    changes = {}
    for flag in ([], ["--plain"]):
        out = tmp_path / ("plain" if flag else "engine")
        assert main(["analyze", "receptive-field", "--weights", f"m={tmp_path / 'model'}", "--length", str(LENGTH),
                     "--sequences", "1", "--positions", "3", "--set", "conv_tile_length=1280", "--out", str(out),
                     "--no-progress", *flag]) == 0
        changes[bool(flag)] = np.load(out / "receptive_field_m.npz")["change_per_sequence"]
    assert changes[True].shape == (1, 3, 16) and changes[True].max() > 0
    assert np.abs(changes[False] - changes[True]).max() <= 1e-10 * changes[True].max()
