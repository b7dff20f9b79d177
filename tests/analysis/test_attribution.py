"""Gradient x input and in-silico mutagenesis against direct computation."""

import numpy as np
import pytest
import torch

from helpers import random_tokens, tiny_model
from senformer.analysis.attribution import Target, gradient_times_input, in_silico_mutagenesis
from senformer.model.tiling import conv_reach
from senformer.sequence import tokens_to_one_hot

LENGTH = 2048  # 16 positions, target_length 8: output bins are positions 4..11


def test_gradient_times_input_matches_autograd_and_respects_the_conv_reach():
    model = tiny_model(seed=2, depth=0).double()
    tokens = random_tokens(1, LENGTH, seed=3)[0]
    target = Target("human", tracks=[0, 3], bins=[2])
    contributions = gradient_times_input(model, tokens, target)
    assert contributions.shape == (LENGTH, 4)
    one_hot = tokens_to_one_hot(tokens, torch.float64).requires_grad_(True)
    model(one_hot[None])["human"][0, 2, [0, 3]].mean().backward()
    np.testing.assert_allclose(contributions, (one_hot.grad * one_hot).detach().numpy(), rtol=1e-5, atol=1e-9)
    assert (contributions[tokens.numpy() == 4] == 0).all()  # N has no base to credit
    left, right = conv_reach(model)
    start = (4 + 2) * 128  # output bin 2 is trunk position 6
    outside = np.ones(LENGTH, dtype=bool)
    outside[max(start - left, 0) : start + right + 1] = False
    assert np.abs(contributions[outside]).max() == 0
    assert np.abs(contributions[~outside]).max() > 0


def test_in_silico_mutagenesis_matches_single_mutations():
    model = tiny_model(seed=2).double()
    tokens = random_tokens(1, LENGTH, seed=4)[0]
    target = Target("human", tracks=[1], bins=[3, 4])
    effects = in_silico_mutagenesis(model, tokens, target, start=1000, end=1004, batch_size=5, progress=False)
    assert effects.shape == (4, 4)
    with torch.no_grad():
        reference = float(target.score(model(tokens[None])))
        for offset, position in enumerate(range(1000, 1004)):
            for base in range(4):
                mutated = tokens.clone()
                mutated[position] = base
                expected = float(target.score(model(mutated[None]))) - reference
                if base == int(tokens[position]):
                    assert effects[offset, base] == 0
                else:
                    assert effects[offset, base] == pytest.approx(expected, rel=1e-9, abs=1e-12)
                    assert effects[offset, base] != 0


def test_attribution_validates_its_target():
    model = tiny_model(seed=0)
    tokens = random_tokens(1, LENGTH)[0]
    with pytest.raises(ValueError, match="bins must lie in 0..7"):
        gradient_times_input(model, tokens, Target("human", bins=[8]))
    with pytest.raises(ValueError, match="unknown head"):
        gradient_times_input(model, tokens, Target("fly"))
    with pytest.raises(ValueError, match="window"):
        in_silico_mutagenesis(model, tokens, Target("human"), start=10, end=5, progress=False)


def float64_loader(monkeypatch):
    """Make the commands load float64 models, so their two paths compare at the float64 bound."""
    import senformer.weights

    load_model = senformer.weights.load_model
    monkeypatch.setattr(senformer.weights, "load_model", lambda *args, **kwargs: load_model(*args, **kwargs).double())


@pytest.mark.parametrize("attention", ["full", "bigbird"])
def test_ism_through_the_engine_equals_the_plain_path(attention):
    # a conv tile below the input: the engine's reference trunk is itself tiled
    model = tiny_model(seed=5, attention=attention, num_random_blocks=1, conv_tile_length=1280).double()
    tokens = random_tokens(1, 4096, seed=6)[0]
    target = Target("human", tracks=[0, 2], bins=[1, 4, 6])
    # the first bases, a tile boundary (bins 4 and 8 start at bp 512 and 1024) and the last bases
    for start, end in ((0, 3), (1020, 1027), (4093, 4096)):
        engine = in_silico_mutagenesis(model, tokens, target, start, end, batch_size=4, progress=False)
        plain = in_silico_mutagenesis(model, tokens, target, start, end, batch_size=4, progress=False, plain=True)
        assert np.abs(plain).max() > 0
        assert np.abs(engine - plain).max() <= 1e-10 * np.abs(plain).max()


def test_attribution_command_agrees_with_and_without_plain(tmp_path, monkeypatch):
    from senformer import save_model
    from senformer.cli import main

    float64_loader(monkeypatch)
    save_model(tiny_model(seed=7, target_length=8), tmp_path / "model")
    fasta = tmp_path / "genome.fa"
    generator = np.random.default_rng(0)
    fasta.write_text(">chr1\n" + "".join(generator.choice(list("ACGT"), 6000)) + "\n")
    ism = {}
    for flag in ([], ["--plain"]):
        out = tmp_path / ("plain" if flag else "engine")
        assert main(["analyze", "attribution", "--weights", str(tmp_path / "model"), "--fasta", str(fasta),
                     "--region", "chr1:2900-3100", "--length", "2048", "--ism-width", "6", "--set",
                     "conv_tile_length=1280", "--out", str(out), "--no-progress", *flag]) == 0
        ism[bool(flag)] = np.load(out / "attribution.npz")["ism"]
    assert ism[True].shape == (6, 4) and np.abs(ism[True]).max() > 0
    assert np.abs(ism[False] - ism[True]).max() <= 1e-10 * np.abs(ism[True]).max()
