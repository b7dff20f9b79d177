"""Fine-tuning Borzoi with the training loop: its own loss (poisson_mn) and bigbird on its bucketed positions."""

import pandas as pd
import pytest
import torch

from helpers import randomize_
from senformer.config import BorzoiConfig
from senformer.errors import UserError
from senformer.model.borzoi import Borzoi
from senformer.train import HeadData, InMemoryExamples, TrainSettings, run_training

LENGTH = 1024  # bp: 64 positions of 16 bp, 256 bins of 4 bp, 252 after the crop


def tiny_borzoi() -> Borzoi:
    config = BorzoiConfig(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5,
                          num_conv_tower_blocks=3, conv_tower_start=8, conv_tower_divisible_by=4, crop=2,
                          final_channels=12, output_heads={"human": 3}, block_size=4, num_random_blocks=1,
                          dropout_rate=0.0, attention_dropout_rate=0.0, positional_dropout_rate=0.0,
                          final_dropout_rate=0.0, positional_basis_length=32)
    torch.manual_seed(0)
    return randomize_(Borzoi(config), 0)


def gc_examples(count: int, seed: int) -> InMemoryExamples:
    """Targets from the GC content of each 4-bp bin: something the model can learn."""
    tokens = torch.randint(0, 4, (count, LENGTH), generator=torch.Generator().manual_seed(seed))
    gc = ((tokens == 1) | (tokens == 2)).float().view(count, LENGTH // 4, 4).mean(-1)[:, 2:-2]
    return InMemoryExamples(tokens, gc[:, :, None] * torch.tensor([1.0, 2.0, 3.0]) + 0.1)


def test_borzoi_fine_tunes_with_poisson_mn_and_learns(tmp_path):
    tiny_borzoi().save_pretrained(tmp_path / "init")
    settings = TrainSettings(data={"human": "in-memory"}, init_weights=str(tmp_path / "init"), attention="bigbird",
                             loss="poisson_mn", steps=40, batch_size=2, warmup_steps=2, learning_rate=3e-3,
                             eval_every=40, checkpoint_every=20, log_every=10, progress=False, shift=0,
                             reverse_complement=False, seed=0)
    run_training(settings, tmp_path / "run", data={"human": HeadData(gc_examples(16, 0), gc_examples(8, 1))})
    evaluation = pd.read_csv(tmp_path / "run" / "eval_log.csv")
    first, last = evaluation["pearson"].iloc[0], evaluation["pearson"].iloc[-1]
    assert last > first + 0.3, (first, last)
    assert evaluation["loss"].iloc[-1] < evaluation["loss"].iloc[0]


def test_unknown_loss_is_refused():
    with pytest.raises(UserError, match="loss='mse' is not one of poisson, poisson_mn"):
        TrainSettings(data={"human": "x"}, loss="mse")
    with pytest.raises(UserError, match="total_weight=-1"):
        TrainSettings(data={"human": "x"}, total_weight=-1.0)


def test_borzoi_resumes_exactly(tmp_path, monkeypatch):
    # Dropout everywhere (positional dropout per bucket included), augmentation on, bigbird, poisson_mn: a run
    # stopped at step 3 and resumed ends with the weights of the run that never stopped.
    from senformer.train import TrainingInterrupted
    from test_train_resume import _stop_at
    from train_support import read_weights

    model = tiny_borzoi()
    stochastic = model.config.replace(dropout_rate=0.2, attention_dropout_rate=0.1, positional_dropout_rate=0.1,
                                      final_dropout_rate=0.1)
    randomize_(Borzoi(stochastic), 0).save_pretrained(tmp_path / "init")
    settings = TrainSettings(data={"human": "in-memory"}, init_weights=str(tmp_path / "init"), attention="bigbird",
                             loss="poisson_mn", steps=5, batch_size=2, grad_accumulation=2, warmup_steps=2,
                             eval_every=0, checkpoint_every=2, progress=False, shift=3, seed=0)

    def data():
        return {"human": HeadData(gc_examples(16, 0), None)}

    straight = run_training(settings, tmp_path / "straight", data=data())
    with monkeypatch.context() as patch:
        _stop_at(patch, 3)
        with pytest.raises(TrainingInterrupted):
            run_training(settings, tmp_path / "resumed", data=data())
    resumed = run_training(settings, tmp_path / "resumed", resume=True, data=data())
    expected, got = read_weights(straight), read_weights(resumed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def test_a_new_head_for_new_tracks_trains_alone(tmp_path):
    from train_support import read_weights

    tiny_borzoi().save_pretrained(tmp_path / "init")
    settings = TrainSettings(data={"mine": "in-memory"}, init_weights=str(tmp_path / "init"), new_heads={"mine": 3},
                             train="heads", loss="poisson_mn", steps=3, batch_size=2, warmup_steps=1, eval_every=0,
                             checkpoint_every=3, progress=False, shift=0, reverse_complement=False)
    out = run_training(settings, tmp_path / "run", data={"mine": HeadData(gc_examples(8, 0), None)})
    before, after = read_weights(tmp_path / "init"), read_weights(out)
    assert after["heads.mine.weight"].shape == (3, 12)
    assert set(after) - set(before) == {"heads.mine.weight", "heads.mine.bias"}
    assert all(torch.equal(before[name], after[name]) for name in before)  # the trunk and the old head stay
