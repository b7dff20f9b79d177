"""Loading never runs code: training checkpoints load with weights_only=True, crafted pickles are refused."""

import ast
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from senformer.cli import main
from senformer.errors import UserError
from senformer.train import checkpoint as ckpt

SOURCE = Path(__file__).resolve().parents[2] / "src" / "senformer"
TINY_MODEL = ["--set", "dim=48", "--set", "depth=1", "--set", "heads=2", "--set", "key_size=8",
              "--set", "conv_tower_divisible_by=8", "--set", 'output_heads={"human": 8}', "--set", "target_length=16",
              "--set", "block_size=4"]


class CreatesMarker:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from senformer.data.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("data") / "tiny", size="tiny", seed=1)


def test_rng_state_survives_a_weights_only_round_trip_exactly(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    # Draw a Gaussian from each so the cached second value (numpy has_gauss, python gauss_next) is in play.
    random.gauss(0, 1)
    np.random.standard_normal()
    torch.rand(3)
    torch.save({"rng": ckpt.rng_state()}, tmp_path / "state.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.random(4), np.random.standard_normal(), torch.rand(4))

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    ckpt.set_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.random(4), np.random.standard_normal(), torch.rand(4))
    assert got[:2] == expected[:2] and got[3] == expected[3]
    np.testing.assert_array_equal(got[2], expected[2])
    assert torch.equal(got[4], expected[4])


def test_no_torch_load_in_src_can_unpickle_code():
    files = sorted(SOURCE.rglob("*.py"))
    assert files
    offenders = [str(path) for path in files if "weights_only=False" in path.read_text().replace(" ", "")]
    assert offenders == []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                keywords = {k.arg: k.value for k in node.keywords}
                flag = keywords.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{node.lineno}"


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_train_resume_refuses_a_crafted_checkpoint_without_running_it(tmp_path, synthetic, capsys, container):
    marker = tmp_path / "marker"
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    payload = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": 1, "rng": CreatesMarker(marker)}
    torch.save(payload, checkpoints / "step-00000001.pt", _use_new_zipfile_serialization=container == "zip")
    status = main(["train", *TINY_MODEL, "--no-progress", "--data", str(synthetic), "--steps", "2",
                   "--out", str(tmp_path / "run"), "--resume"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1, lines
    assert "step-00000001.pt holds pickled Python objects" in lines[0]
    assert "predates the safe training checkpoint format" in lines[0]
    assert not marker.exists()


def test_a_version_1_checkpoint_is_refused_in_one_line(tmp_path):
    old = tmp_path / "step-00000004.pt"
    torch.save({"format": ckpt.FORMAT, "version": 1, "step": 4,
                "rng": [{"numpy": np.random.get_state(), "python": random.getstate()}]}, old)
    with pytest.raises(UserError, match=r"step-00000004.pt holds pickled Python objects.*predates the safe") as error:
        ckpt.load_checkpoint(old)
    assert "\n" not in str(error.value)


def test_a_truncated_checkpoint_is_one_line_naming_it(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "model": {"w": torch.zeros(1000)}}, whole)
    cut = tmp_path / "step-00000001.pt"
    cut.write_bytes(whole.read_bytes()[:300])
    with pytest.raises(UserError, match=r"step-00000001.pt is not a readable training checkpoint") as error:
        ckpt.load_checkpoint(cut)
    assert "\n" not in str(error.value)


def test_a_checkpoints_step_is_read_back_from_its_name(tmp_path):
    from senformer.train.checkpoint import checkpoint_name, checkpoint_step

    assert checkpoint_step(tmp_path / checkpoint_name(1200)) == 1200
    with pytest.raises(ValueError, match="not named like a checkpoint"):
        checkpoint_step(tmp_path / ".step-00001200.pt.x.partial")
