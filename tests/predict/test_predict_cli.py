"""``senformer predict`` and ``senformer convert`` end to end: outputs, and one clear line for bad inputs."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers import tiny_model, write_random_chromosome

from senformer.cli import main
from senformer.data.genome import Genome, Interval
from senformer.sequence import one_hot
from senformer import save_model


@pytest.fixture
def setup(tmp_path):
    write_random_chromosome(tmp_path / "genome.fa", 5_000, seed=1)
    (tmp_path / "regions.bed").write_text("chr1\t1000\t1100\tpeak1\nchr1\t2000\t2300\tpeak2\n")
    model = tiny_model(seed=3)
    save_model(model, tmp_path / "weights")
    return tmp_path, model


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def test_predict_command_writes_the_model_outputs(setup, capsys):
    tmp_path, model = setup
    code = run_cli("predict", "--weights", tmp_path / "weights", "--fasta", tmp_path / "genome.fa",
                   "--regions", tmp_path / "regions.bed", "--region", "chr1:3,000-3,050", "--length", 1024,
                   "--rc", "--no-progress", "--out", tmp_path / "out.h5")
    assert code == 0 and "wrote" in capsys.readouterr().out
    genome = Genome(tmp_path / "genome.fa")
    with h5py.File(tmp_path / "out.h5") as handle:
        names = [n.decode() for n in handle["regions/name"][:]]
        assert names == ["chr1:3000-3050", "peak1", "peak2"]
        window = Interval("chr1", 1_000, 1_100).resize(1024)
        x = one_hot(genome.fetch(window))[None]
        with torch.no_grad():
            expected = (model(x)["mouse"][0] + model(x.flip(1, 2))["mouse"][0].flip(0)) / 2
        np.testing.assert_allclose(handle["mouse/predictions"][1].astype(np.float32), expected.numpy(), rtol=2e-3, atol=1e-3)


def test_predict_help_explains_the_options(capsys):
    with pytest.raises(SystemExit):
        run_cli("predict", "--help")
    text = capsys.readouterr().out
    for option in ("--regions", "--region", "--sequence-fasta", "--tfhub-input", "--rc", "--shifts", "--tracks",
                   "--embeddings", "--bigwig", "--bf16", "--length", "0-based half-open"):
        assert option in text


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: ["--region", "chr9:0-100"], "chromosome 'chr9' is not in genome.fa"),
        (lambda p: ["--region", "chr1:4,990-5,010"], "runs off chr1, which is 5,000 bp long"),
        (lambda p: ["--region", "chr1:100"], "not of the form chrom:start-end"),
        (lambda p: ["--regions", p / "empty.bed"], "no regions to predict"),
        (lambda p: ["--regions", p / "broken.bed"], "broken.bed, line 2: expected at least 3 columns"),
        (lambda p: ["--regions", p / "absent.bed"], "no such BED file"),
    ],
    ids=["unknown-chromosome", "off-chromosome", "malformed-region", "empty-bed", "malformed-bed", "missing-bed"],
)
def test_bad_regions_end_in_one_line(setup, capsys, change, message):
    tmp_path, _ = setup
    (tmp_path / "empty.bed").write_text("# nothing\n")
    (tmp_path / "broken.bed").write_text("chr1\t0\t10\nchr1\t5\n")
    code = run_cli("predict", "--weights", tmp_path / "weights", "--fasta", tmp_path / "genome.fa", "--length", 1024,
                   "--no-progress", "--out", tmp_path / "out.h5", *change(tmp_path))
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0 and error.startswith("senformer predict: error:") and message in error
    assert not list(tmp_path.glob("out.h5*"))


def test_missing_inputs_and_weights_end_in_one_line(setup, capsys):
    tmp_path, _ = setup
    base = ["predict", "--region", "chr1:0-100", "--length", 1024, "--no-progress", "--out", tmp_path / "out.h5"]
    assert run_cli(*base, "--weights", tmp_path / "weights", "--fasta", tmp_path / "absent.fa") == 2
    assert "no such FASTA file" in capsys.readouterr().err
    assert run_cli(*base, "--weights", tmp_path / "nothing", "--fasta", tmp_path / "genome.fa") == 2
    assert "no such weights" in capsys.readouterr().err
    assert run_cli("predict", "--weights", tmp_path / "weights", "--out", tmp_path / "out.h5") == 2
    assert "need --fasta with --regions" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.h5*"))


def test_convert_command_and_its_errors(setup, capsys, shared_dir):
    tmp_path, _ = setup
    fixture = shared_dir / "fixtures" / "official_tf_tiny"
    assert run_cli("convert", fixture / "ckpt", tmp_path / "native", "--attention", "bigbird") == 0
    assert "tf-checkpoint" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == ["config.json", "model.safetensors", "run.json"]
    # A truncated checkpoint.
    shutil.copy(fixture / "ckpt.index", tmp_path / "cut.index")
    data = (fixture / "ckpt.data-00000-of-00001").read_bytes()
    (tmp_path / "cut.data-00000-of-00001").write_bytes(data[: len(data) // 3])
    assert run_cli("convert", tmp_path / "cut", tmp_path / "from_cut") == 2
    error = capsys.readouterr().err.strip()
    assert "truncated" in error and error.count("\n") == 0
    # Wrong shapes: a config asking for another key size.
    assert run_cli("convert", fixture / "ckpt", tmp_path / "wrong", "--set", "key_size=32") == 2
    error = capsys.readouterr().err.strip()
    assert "5 with the wrong shape" in error and "--partial" in error and error.count("\n") == 0
    assert not (tmp_path / "from_cut").exists() and not (tmp_path / "wrong").exists()
    assert run_cli("convert", fixture / "ckpt", tmp_path / "partial", "--set", "key_size=32", "--partial") == 0
    assert "partial load, 122 tensors loaded" in capsys.readouterr().out


def test_negative_shifts_parse_with_equals():
    from senformer.cli import build_parser

    args = build_parser().parse_args(["predict", "--weights", "w", "--out", "o.h5", "--shifts=-1,0,1"])
    assert args.shifts == (-1, 0, 1)


def test_a_device_this_machine_lacks_ends_in_one_line(setup, capsys):
    tmp_path, _ = setup
    code = run_cli("predict", "--weights", tmp_path / "weights", "--fasta", tmp_path / "genome.fa", "--region",
                   "chr1:0-100", "--length", 1024, "--device", "cuda:99", "--out", tmp_path / "out.h5")
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0 and "device 'cuda:99'" in error
    assert not list(tmp_path.glob("out.h5*"))
