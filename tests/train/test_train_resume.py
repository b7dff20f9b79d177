"""Resume is exact: N steps, a stop (SIGTERM), resume N more == 2N steps without a stop."""

import os
import signal

import pytest
import torch
from train_support import head_data, read_weights, tiny_settings

from senformer.errors import UserError
from senformer.train import TrainingInterrupted, run_training
from senformer.train import checkpoint as ckpt
from senformer.train.loop import Trainer, read_log

# Dropout on everywhere, augmentation on, two heads alternating, accumulation: everything that draws
# random numbers or holds a position must come back from the checkpoint.
STOCHASTIC = dict(
    model_overrides={**tiny_settings().model_overrides, "dropout_rate": 0.2, "attention_dropout_rate": 0.1,
                     "positional_dropout_rate": 0.1, "final_dropout_rate": 0.1},
    shift=3, reverse_complement=True, grad_accumulation=2, steps=6, checkpoint_every=2, eval_every=3,
    eval_examples=4, keep_checkpoints=2,
)


def _stop_at(monkeypatch, stop_step: int) -> None:
    """Deliver a real SIGTERM to this process during step ``stop_step``, as a cluster scheduler would."""
    original = Trainer.train_head

    def train_head(self, head):
        loss = original(self, head)
        if self.step + 1 == stop_step and head == self.head_names[-1]:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(Trainer, "train_head", train_head)


@pytest.mark.slow
def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    settings = tiny_settings(heads=("human", "mouse"), **STOCHASTIC)
    straight = run_training(settings, tmp_path / "straight", data=head_data(("human", "mouse")))

    with monkeypatch.context() as patch:
        _stop_at(patch, 3)  # not a checkpoint step: the stop itself writes one
        with pytest.raises(TrainingInterrupted, match="stopped at step 3"):
            run_training(settings, tmp_path / "resumed", data=head_data(("human", "mouse")))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "resumed" / "checkpoints")] == ["step-00000002.pt", "step-00000003.pt"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    resumed = run_training(settings, tmp_path / "resumed", resume=True, data=head_data(("human", "mouse")))

    expected, got = read_weights(straight), read_weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # The logs agree too: same losses at every step, same validation numbers.
    assert read_log(tmp_path / "straight" / "log.jsonl") == _without_timing(read_log(tmp_path / "resumed" / "log.jsonl"), read_log(tmp_path / "straight" / "log.jsonl"))


def _without_timing(records, reference):
    """Copy the timing fields of ``reference`` into ``records`` (throughput and memory differ by nature)."""
    assert len(records) == len(reference)
    return [{**r, **{k: ref[k] for k in ("examples_per_s", "memory_mb") if k in ref}} for r, ref in zip(records, reference)]


@pytest.mark.slow
def test_dropout_really_draws_from_the_restored_generator(tmp_path, monkeypatch):
    """Control: resuming WITHOUT the RNG state gives different weights, so the equality above is not luck."""
    settings = tiny_settings(**STOCHASTIC)
    straight = run_training(settings, tmp_path / "straight", data=head_data())
    with monkeypatch.context() as patch:
        _stop_at(patch, 2)
        with pytest.raises(TrainingInterrupted):
            run_training(settings, tmp_path / "resumed", data=head_data())
    monkeypatch.setattr(ckpt, "set_rng_state", lambda state: torch.manual_seed(12345))
    resumed = run_training(settings, tmp_path / "resumed", resume=True, data=head_data())
    expected, got = read_weights(straight), read_weights(resumed)
    assert any(not torch.equal(expected[name], got[name]) for name in expected)


def test_checkpoints_are_kept_last_k_and_written_atomically(tmp_path):
    settings = tiny_settings(steps=5, checkpoint_every=1, keep_checkpoints=2)
    run_training(settings, tmp_path / "run", data=head_data())
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step-00000004.pt", "step-00000005.pt"]  # no leftover temporary files
    payload = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000005.pt")
    assert payload["step"] == 5 and set(payload) >= {"model", "optimizer", "scheduler", "rng", "streams", "config", "settings"}
    assert payload["streams"]["human"] == {"epoch": 0, "position": 10}  # 5 steps x batch 2 of 16 examples
    assert payload["scheduler"]["last_epoch"] == 5


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tmp_path):
    settings = tiny_settings(steps=2)
    run_training(settings, tmp_path / "run", data=head_data())
    with pytest.raises(UserError, match="already holds checkpoints.*--resume"):
        run_training(settings, tmp_path / "run", data=head_data())
    with pytest.raises(UserError, match="holds no checkpoint"):
        run_training(settings, tmp_path / "empty", resume=True, data=head_data())


def test_resume_extends_a_finished_run_to_more_steps(tmp_path):
    """steps may grow on resume (a finished run continues); 2 + 2 steps == 4 steps."""
    straight = run_training(tiny_settings(steps=4), tmp_path / "straight", data=head_data())
    run_training(tiny_settings(steps=2), tmp_path / "twice", data=head_data())
    twice = run_training(tiny_settings(steps=4), tmp_path / "twice", resume=True, data=head_data())
    expected, got = read_weights(straight), read_weights(twice)
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def test_checkpoint_from_another_config_or_run_is_a_clear_error(tmp_path):
    run_training(tiny_settings(steps=2), tmp_path / "run", data=head_data())
    other_model = tiny_settings(steps=4, model_overrides={**tiny_settings().model_overrides, "depth": 1})
    with pytest.raises(UserError, match=r"different run: config.depth: checkpoint 2, now 1"):
        run_training(other_model, tmp_path / "run", resume=True, data=head_data())
    with pytest.raises(UserError, match=r"batch_size: checkpoint 2, now 4"):
        run_training(tiny_settings(steps=4, batch_size=4), tmp_path / "run", resume=True, data=head_data())
    foreign = tmp_path / "run" / "checkpoints" / "step-00000009.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(UserError, match="not a senformer training checkpoint"):
        run_training(tiny_settings(steps=10), tmp_path / "run", resume=True, data=head_data())
