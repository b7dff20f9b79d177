"""The real-weights protocol end to end on the tiny checkpoint the official TF code wrote (converted), a
small generated genome and the tiniest settings: teacher data from held-out chromosomes, rows 3-6 trained
attention-only, teacher correlation with intervals, and --estimate."""

import json

import numpy as np
import pytest

from senformer.cli import main


@pytest.fixture
def converted(shared_dir, tmp_path):
    folder = tmp_path
    assert main(["convert", str(shared_dir / "fixtures" / "official_tf_tiny" / "ckpt"), str(folder / "native")]) == 0
    generator = np.random.default_rng(0)
    with open(folder / "genome.fa", "w") as handle:
        for name, windows in (("chr1", 2), ("chr8", 1), ("chr9", 1)):
            handle.write(f">{name}\n" + "".join(generator.choice(list("ACGT"), windows * 2048)) + "\n")
    return folder


# 2,048 bp: 16 positions in 8 blocks of 2, so BigBird (3 window + 2 global + 3 random) is sparse.
TINY = ["--records", "2", "1", "1", "--sequence-length", "2048", "--steps", "1", "--seed-count", "1", "--track-step", "1000",
        "--device", "cpu", "--set", "target_length=8", "--set", "block_size=2", "--set", "num_random_blocks=1"]


@pytest.mark.slow
def test_real_weights_runs_end_to_end_on_the_tiny_checkpoint(converted, capsys):
    out = converted / "out"
    arguments = ["study", "real-weights", "--weights", str(converted / "native"), "--fasta",
                 str(converted / "genome.fa"), "--out", str(out), *TINY]
    assert main(arguments) == 0, capsys.readouterr().err
    record = json.loads((out / "real-weights.json").read_text())
    assert record["windows"] == {"train": 2, "valid": 1, "test": 1} and record["tracks"] == 6
    # The held-out chromosomes are the data's valid and test splits.
    bed = (out / "data" / "sequences.bed").read_text().splitlines()
    assert {line.split("\t")[0] for line in bed if line.endswith("test")} == {"chr8"}
    assert {line.split("\t")[0] for line in bed if line.endswith("train")} == {"chr1"}
    for name, row in record["rows"].items():
        assert -1 <= row["mean"] <= 1 and list(row["teacher_correlation"]) == ["0"], name
    assert record["rows"]["zero-shot"]["mean"] < 1.0  # a sparse pattern changes the teacher's outputs
    for contrast in record["contrasts"].values():
        assert contrast["bootstrap"]["low"] <= contrast["bootstrap"]["difference"] <= contrast["bootstrap"]["high"]
    assert "teacher correlation" in (out / "real-weights.md").read_text()

    assert main([*arguments, "--estimate"]) == 0
    assert "projected:" in capsys.readouterr().out
    missing = list(arguments)
    missing[missing.index("--fasta") + 1] = str(converted / "absent.fa")
    assert main(missing) == 2
    assert "absent.fa" in capsys.readouterr().err


def test_held_out_chromosomes_the_fasta_lacks_are_refused_before_anything_is_written(tmp_path, capsys):
    generator = np.random.default_rng(1)
    (tmp_path / "genome.fa").write_text(">chr1\n" + "".join(generator.choice(list("ACGT"), 4096)) + "\n")
    from helpers import tiny_config

    from senformer import Enformer, save_model

    weights = save_model(Enformer(tiny_config()), tmp_path / "weights")
    out = tmp_path / "out"
    status = main(["study", "real-weights", "--weights", str(weights), "--fasta", str(tmp_path / "genome.fa"),
                   "--out", str(out), *TINY])
    assert status == 2 and not out.exists()
    assert "chr8" in capsys.readouterr().err
