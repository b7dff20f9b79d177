"""`train` holds its run folder's lock: a second writer is refused naming the holder; killed saves are cleaned."""

import json
import os
import socket

import pytest
from train_support import head_data, tiny_settings

from senformer.cli import main
from senformer.errors import UserError
from senformer.outputs import output_lock
from senformer.train import run_training

STALE_SAVE = ".step-00000002.pt.k3j9x2.partial"  # the name atomic_path gives a checkpoint being written


def test_train_into_a_locked_run_folder_is_refused_naming_the_holder(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / STALE_SAVE).write_bytes(b"half a checkpoint")
    with output_lock(run):
        status = main(["train", "--data", str(tmp_path / "no-data-needed"), "--out", str(run), "--no-progress"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(lines) == 1, lines
        assert f"{run} is being written by another run (pid {os.getpid()} on host {socket.gethostname()}" in lines[0]
        with pytest.raises(UserError, match=f"pid {os.getpid()} on host"):
            run_training(tiny_settings(steps=1), run, data=head_data())
        # The live holder may be writing that file: it stays.
        assert (run / "checkpoints" / STALE_SAVE).exists()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


def test_train_removes_the_temporary_files_of_killed_checkpoint_saves(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / STALE_SAVE).write_bytes(b"half a checkpoint")
    run_training(tiny_settings(steps=2), run, data=head_data())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the lock file went with the run
    record = json.loads((run / "run.json").read_text())
    assert record["command"] == "train" and record["settings"]["steps"] == 2 and record["device"] == "cpu"
