"""``train --resume`` proves its inputs: the dataset, the genome and the init and teacher weights it started from.

Paths may move (digests, not paths, are compared); a changed input is refused in one line naming it.
"""

import json
import shutil

import pytest
from helpers import tiny_model

from senformer import save_model
from senformer.cli import main

TINY_MODEL = ["--set", "dim=48", "--set", "depth=1", "--set", "heads=2", "--set", "key_size=8",
              "--set", "conv_tower_divisible_by=8", "--set", 'output_heads={"human": 8}', "--set", "target_length=16",
              "--set", "block_size=4"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from senformer.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("inputs")
    make_synthetic(root / "data", size="tiny", seed=1, train=4, valid=2, test=2)
    make_synthetic(root / "other-data", size="tiny", seed=2, train=4, valid=2, test=2)
    for name, seed in (("init", 1), ("other-init", 2)):
        model = tiny_model(seed=seed, depth=1, target_length=16, output_heads={"human": 8})
        save_model(model, root / name)
    return root


def _train(root, data, init, out, *extra):
    return main(["train", *TINY_MODEL, "--no-progress", "--warmup-steps", "1", "--eval-every", "0", "--batch-size",
                 "2", "--checkpoint-every", "1", "--data", str(data), "--init", str(init), "--teacher", str(init),
                 "--out", str(out), *extra])


@pytest.mark.parametrize("change, named", [
    ("data", "dataset human changed"),
    ("init", "init weights changed"),
], ids=["dataset", "init-and-teacher"])
def test_a_resume_on_other_inputs_is_refused_naming_them(inputs, tmp_path, change, named, capsys):
    data, init = tmp_path / "data", tmp_path / "init"
    shutil.copytree(inputs / "data", data)
    shutil.copytree(inputs / "init", init)
    out = tmp_path / "run"
    assert _train(inputs, data, init, out, "--steps", "1") == 0
    assert set(json.loads((out / "inputs.json").read_text())) == {"dataset human", "init weights", "teacher weights"}
    # Moving every input is fine: the same bytes under other paths resume.
    moved_data, moved_init = tmp_path / "moved-data", tmp_path / "moved-init"
    data.rename(moved_data)
    init.rename(moved_init)
    assert _train(inputs, moved_data, moved_init, out, "--steps", "2", "--resume") == 0
    capsys.readouterr()
    # Other bytes under the same paths are refused before any step.
    target = moved_data if change == "data" else moved_init
    shutil.rmtree(target)
    shutil.copytree(inputs / ("other-data" if change == "data" else "other-init"), target)
    assert _train(inputs, moved_data, moved_init, out, "--steps", "3", "--resume") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and named in error and "inputs.json" in error
    if change == "init":
        assert "teacher weights changed" in error
    assert not (out / "checkpoints" / "step-00000003.pt").exists()
