"""``senformer train`` end to end on the synthetic Basenji2 dataset, and its one-line errors."""

import json

import pandas as pd
import torch
import pytest

from senformer.cli import main

TINY_MODEL = ["--set", "dim=48", "--set", "depth=1", "--set", "heads=2", "--set", "key_size=8",
              "--set", "conv_tower_divisible_by=8", "--set", 'output_heads={"human": 8}', "--set", "target_length=16",
              "--set", "block_size=4"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from senformer.data.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("data") / "tiny", size="tiny", seed=1)


def _train(*arguments):
    return main(["train", *TINY_MODEL, "--no-progress", "--warmup-steps", "1", "--log-every", "1", *arguments])


@pytest.mark.slow
def test_train_on_synthetic_data_writes_logs_curves_weights_and_resumes(tmp_path, synthetic, capsys):
    out = tmp_path / "run"
    assert _train("--data", str(synthetic), "--steps", "2", "--batch-size", "2", "--eval-every", "2",
                  "--checkpoint-every", "1", "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(out / "weights")
    for name in ("settings.json", "config.json", "log.jsonl", "train_log.csv", "eval_log.csv", "curves.png",
                 "weights/model.safetensors", "weights/config.json", "checkpoints/step-00000002.pt"):
        assert (out / name).is_file(), name
    settings = json.loads((out / "settings.json").read_text())
    assert settings["data"] == {"human": str(synthetic)} and settings["model_overrides"]["dim"] == 48
    evaluation = pd.read_csv(out / "eval_log.csv")
    assert list(evaluation["step"]) == [0, 2]
    for group in ("DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE", "long-range"):
        assert evaluation[f"pearson/{group}"].notna().all(), group
    training = pd.read_csv(out / "train_log.csv")
    assert {"step", "lr", "examples_per_s", "memory_mb", "loss/human"} <= set(training.columns)

    assert _train("--data", str(synthetic), "--steps", "3", "--batch-size", "2", "--eval-every", "2",
                  "--checkpoint-every", "1", "--out", str(out), "--resume") == 0
    assert list(pd.read_csv(out / "train_log.csv")["step"]) == [1, 2, 3]


def _error(capsys, *arguments):
    assert main(["train", *arguments]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("senformer train: error: "), lines
    return lines[0]


def test_bad_settings_end_in_one_clear_line(tmp_path, synthetic, capsys):
    settings = tmp_path / "run.yaml"
    settings.write_text(f"data: {{human: {synthetic}}}\nwarmup: 10\n")
    assert "unknown setting(s) 'warmup' (did you mean 'warmup_steps'?)" in _error(capsys, "--config", str(settings), "--out", str(tmp_path / "o"))
    assert "data directory" in _error(capsys, "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o"))
    assert "--new-head expects NAME=TRACKS" in _error(capsys, "--data", str(synthetic), "--new-head", "atac", "--out", str(tmp_path / "o"))
    assert "no head 'atac'" in _error(capsys, *TINY_MODEL, "--data", f"atac={synthetic}", "--out", str(tmp_path / "o"))
    mismatch = _error(capsys, *TINY_MODEL, "--set", 'output_heads={"human": 5}', "--data", str(synthetic),
                      "--out", str(tmp_path / "o"))
    assert f"head 'human' predicts 5 tracks but its data ({synthetic}) has 8" in mismatch
    # Both ways out, spelled as the flags take them.
    assert f"--new-head NAME=8 --data NAME={synthetic}" in mismatch
    assert """--set output_heads='{"human": 8}'""" in mismatch


@pytest.mark.slow
def test_checkpoint_from_another_config_is_one_line(tmp_path, synthetic, capsys):
    out = tmp_path / "run"
    assert _train("--data", str(synthetic), "--steps", "1", "--eval-every", "0", "--out", str(out)) == 0
    capsys.readouterr()
    message = _error(capsys, *TINY_MODEL, "--set", "dim=96", "--data", str(synthetic), "--steps", "2", "--out", str(out), "--resume")
    assert "comes from a different run: config.dim: checkpoint 48, now 96" in message
    message = _error(capsys, *TINY_MODEL, "--data", str(synthetic), "--steps", "2", "--out", str(out))
    assert "already holds checkpoints" in message


def test_flags_override_the_file_and_absent_flags_do_not(tmp_path):
    from senformer.cli import build_parser
    from senformer.commands.train import flag_overrides
    from senformer.train import TrainSettings

    path = tmp_path / "run.yaml"
    path.write_text("data: {human: /h}\nsteps: 50\nbf16: true\nshift: 2\n")
    args = build_parser().parse_args([
        "train", "--config", str(path), "--out", "o", "--data", "mouse=/m", "--steps", "7", "--new-head", "atac=3",
        "--data", "atac=/a", "--set", "depth=2", "--set", "attention=bigbird", "--no-reverse-complement",
        "--train", "^transformer", "--distill-weight", "1",
    ])
    settings = TrainSettings.from_file(path, flag_overrides(args))
    assert settings.data == {"human": "/h", "mouse": "/m", "atac": "/a"}
    assert settings.steps == 7 and settings.bf16 is True and settings.shift == 2  # untouched by absent flags
    assert settings.new_heads == {"atac": 3} and settings.model_overrides == {"depth": 2, "attention": "bigbird"}
    assert settings.reverse_complement is False and settings.train == "^transformer" and settings.distill_weight == 1.0


def test_warmup_longer_than_the_run_and_emulated_bf16_warn_once_and_train_in_fp32(tmp_path, synthetic, capsys,
                                                                                  monkeypatch):
    import senformer.device

    # A CPU without AVX512-BF16 or AMX, whatever this machine has: bf16 there would be emulated.
    monkeypatch.setattr(senformer.device, "cpu_flags", lambda *args: frozenset({"avx2"}))
    monkeypatch.setattr(senformer.device, "_warned_no_bf16", set())
    with pytest.warns(UserWarning, match=r"--bf16 ignored, running fp32") as caught:
        assert main(["train", *TINY_MODEL, "--no-progress", "--device", "cpu", "--bf16", "--data", str(synthetic),
                     "--steps", "1", "--warmup-steps", "4", "--eval-every", "0", "--batch-size", "1",
                     "--out", str(tmp_path / "run")]) == 0
    assert len([w for w in caught if "--bf16" in str(w.message)]) == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["senformer train: warning: the warm-up (4 steps) is longer than the run (1 steps): the learning "
                        "rate reaches only 25% of 0.0005; lower --warmup-steps or raise --steps"]
    # fp32 throughout: the saved weights are float32 and finite.
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "run" / "weights" / "model.safetensors")
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in floats)
