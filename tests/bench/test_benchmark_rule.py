"""The benchmarks under the output rule: a sweep resumes only points of the same machine and versions; one
writer per folder; the refusals come before anything is measured."""

from __future__ import annotations

import json
import os

import pytest

from senformer.cli import main
from senformer.outputs import output_lock

SCALING = ["benchmark", "scaling", "--dim", "256", "--lengths", "4096", "--depths", "1", "--modes", "train",
           "--target-length", "16", "--no-peer", "--device", "cpu"]
ATTENTION = ["benchmark", "attention", "--lengths", "8192", "--kinds", "full", "--repeats", "1", "--dim", "64",
             "--heads", "2", "--device", "cpu"]


def _one_line(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0, error
    return error


def test_a_sweep_of_another_machine_is_not_resumed(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "scaling.json").write_text(json.dumps({"runs": [], "matmul": [], "points": []}))
    (out / "run.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    assert main([*SCALING, "--out", str(out)]) == 2
    assert "holds points measured on another machine" in _one_line(capsys)
    assert json.loads((out / "scaling.json").read_text())["points"] == []


@pytest.mark.parametrize("argv", [SCALING, ATTENTION], ids=["scaling", "attention"])
def test_a_second_benchmark_into_one_folder_is_refused(tmp_path, capsys, argv):
    out = tmp_path / "bench"
    with output_lock(out):
        assert main([*argv, "--out", str(out)]) == 2
    assert f"pid {os.getpid()}" in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("argv", [SCALING, ATTENTION], ids=["scaling", "attention"])
def test_a_file_where_the_folder_is_due_is_refused(tmp_path, capsys, argv):
    out = tmp_path / "bench"
    out.write_text("mine")
    assert main([*argv, "--out", str(out)]) == 2
    assert "a directory is due" in _one_line(capsys)
    assert out.read_text() == "mine"


def test_attention_lengths_are_bp_comma_separated_as_for_scaling(tmp_path, capsys):
    from senformer.bench.attention import DEFAULT_LENGTHS
    from senformer.commands.benchmark import attention_positions

    assert attention_positions([196_608, 393_216, 786_432]) == [1536, 3072, 6144] == list(DEFAULT_LENGTHS)
    assert attention_positions(None) == list(DEFAULT_LENGTHS)
    out = tmp_path / "bench"
    assert main([*ATTENTION[:2], "--lengths", "8192,1000", *ATTENTION[4:], "--out", str(out)]) == 2
    assert "--lengths must be positive multiples of 128 bp" in _one_line(capsys) and not out.exists()
    with pytest.raises(SystemExit) as exit:  # argparse's refusal, in one line too
        main([*ATTENTION[:2], "--lengths", "8192 16384", *ATTENTION[4:], "--out", str(out)])
    assert exit.value.code == 2
    assert "comma-separated integers" in _one_line(capsys)
