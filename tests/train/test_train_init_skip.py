"""Issue 14, row 6 through the CLI: the S-Enformer report's procedure with the report's layer.

A trained full-attention model gives every tensor but the attention modules (``--init-skip attention``);
the report's layer (``--preset s-enformer-report``: BigBird, no relative positions, key size = dim / heads,
scaled here from 192 = 1,536 / 8 to 24 = 48 / 2) starts from the model's own initialisation and is the only
thing that trains (``--train attention``).
"""

import re

import torch
from helpers import randomize_, tiny_config
from safetensors.torch import load_file

from senformer import Enformer, save_model
from senformer.cli import main
from senformer.train import TrainSettings
from senformer.train.loop import build_model
from senformer.weights import ATTENTION_TENSORS

LEARNING_RATE = 1e-3


def test_report_layer_fresh_attention_only_one_step(tmp_path, capsys):
    from senformer.data.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "data", size="tiny", seed=1)  # 4,096 bp, 16 bins, 8 tracks
    config = tiny_config(depth=1, target_length=16, output_heads={"human": 8, "mouse": 8})
    torch.manual_seed(0)
    teacher = save_model(randomize_(Enformer(config), seed=2), tmp_path / "full")
    out = tmp_path / "row6"
    # Two heads make one step two optimizer updates (human, then mouse): the fresh output projection starts at
    # zero, so the first update moves only it and the second is the first to reach the queries, keys and values.
    status = main([
        "train", "--init", str(teacher), "--preset", "s-enformer-report", "--set", "key_size=24",
        "--init-skip", "attention", "--train", "attention", "--data", f"human={data}", "--data", f"mouse={data}",
        "--steps", "1", "--batch-size", "1", "--lr", str(LEARNING_RATE), "--warmup-steps", "1", "--eval-every", "0",
        "--shift", "0", "--no-reverse-complement", "--no-progress", "--out", str(out),
    ])
    assert status == 0, capsys.readouterr().err
    initial = load_file(str(teacher / "model.safetensors"))
    trained = load_file(str(out / "weights" / "model.safetensors"))
    is_attention = re.compile(ATTENTION_TENSORS).search

    loaded = [name for name in initial if not is_attention(name)]
    statistics = [name for name in loaded if name.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert statistics and len(loaded) > len(statistics)
    for name in loaded:  # every loaded tensor, BatchNorm statistics included, bit for bit
        assert trained[name].dtype == initial[name].dtype and torch.equal(trained[name], initial[name]), name

    # The report's layer: no relative-position tensors, projections of key size 24 (the weights had 8).
    fresh = sorted(name for name in trained if is_attention(name))
    assert fresh == sorted(f"transformer.0.attention.{part}" for part in
                           ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.weight", "to_out.bias"))
    assert trained["transformer.0.attention.to_q.weight"].shape == (48, 48)
    assert initial["transformer.0.attention.to_q.weight"].shape == (16, 48)
    assert set(trained) == set(loaded) | set(fresh)

    # The starting point: the model's own initialisation under the run's seed, as the trainer builds it.
    settings = TrainSettings.from_file(out / "settings.json")
    assert settings.init_skip == "attention" and settings.train == "attention"
    torch.manual_seed(settings.seed)
    start = build_model(settings)[0].state_dict()
    assert not start["transformer.0.attention.to_out.weight"].any()  # fresh: the output projection is zero
    for name in fresh:
        change = (trained[name] - start[name]).abs().max()
        # Moved, by at most two Adam updates of the learning rate: `start` is this run's starting point.
        assert 0 < change <= 2 * LEARNING_RATE * 1.01, (name, float(change))
    assert trained["transformer.0.attention.to_out.weight"].abs().min() > 0
