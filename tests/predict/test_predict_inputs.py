"""``predict`` proves its inputs: per-row input bases, weights by every byte, finite float16 rows only."""

from __future__ import annotations

import copy
import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers import tiny_model

from senformer import save_model
from senformer.cli import main
from senformer.data.genome import Interval
from senformer.errors import UserError
from senformer.predict import PredictOptions, predict

LENGTH = 1024


def write_fasta(path, sequence: str) -> None:
    path.write_text(">chrA\n" + "".join(sequence[i : i + 70] + "\n" for i in range(0, len(sequence), 70)))


@pytest.fixture
def genome(tmp_path):
    rng = np.random.default_rng(0)
    sequence = "".join(rng.choice(list("ACGT"), 6_000))
    write_fasta(tmp_path / "genome.fa", sequence)
    return tmp_path / "genome.fa", sequence


class Interrupting(torch.nn.Module):
    """The model, interrupted (as by Ctrl-C) at its ``fail_at``-th call; counts its calls."""

    def __init__(self, model, fail_at: int | None = None):
        super().__init__()
        self.model, self.fail_at, self.calls = model, fail_at, 0
        self.config = model.config

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.model(*args, **kwargs)

    def state_dict(self, *args, **kwargs):  # the same weights as the model it wraps
        return self.model.state_dict(*args, **kwargs)


def read(path):
    with h5py.File(path) as handle:
        return handle["human/predictions"][:].astype(np.float32)


REGIONS = [Interval("chrA", 400 * i + 1_000, 400 * i + 1_050) for i in range(6)]
OPTIONS = PredictOptions(sequence_length=LENGTH, batch_size=2)


def test_a_resume_against_a_rewritten_genome_equals_a_clean_run(genome, tmp_path, capsys):
    fasta, sequence = genome
    model = tiny_model(seed=1)
    out = tmp_path / "resume.h5"
    with pytest.raises(KeyboardInterrupt):  # 4 of 6 regions written
        predict(Interrupting(model, fail_at=3), out, genome=fasta, regions=REGIONS, options=OPTIONS, progress=False)
    # The genome is rewritten in place: the second region's bases change, the first region's do not.
    changed = 1_600  # inside the windows of regions 1 and 2 (1,024 bp around each), not region 0
    write_fasta(fasta, sequence[:changed] + ("A" if sequence[changed] != "A" else "C") + sequence[changed + 1:])
    resumed = predict(model, out, genome=fasta, regions=REGIONS, options=OPTIONS, progress=False)
    assert "region chrA:1400-1450 was computed from other bases" in capsys.readouterr().err
    clean = predict(model, tmp_path / "clean.h5", genome=fasta, regions=REGIONS, options=OPTIONS, progress=False)
    np.testing.assert_array_equal(read(resumed), read(clean))


def test_a_complete_file_whose_genome_changed_is_not_up_to_date(genome, tmp_path, capsys):
    fasta, sequence = genome
    save_model(tiny_model(seed=1), tmp_path / "weights")
    argv = ["predict", "--weights", str(tmp_path / "weights"), "--fasta", str(fasta), "--region", "chrA:3000-3050",
            "--length", str(LENGTH), "--no-progress", "--out", str(tmp_path / "out.h5")]
    assert main(argv) == 0
    assert main(argv) == 0 and "is up to date" in capsys.readouterr().out
    write_fasta(fasta, sequence[:3_000] + "NNNN" + sequence[3_004:])
    moved = tmp_path / "moved.fa"
    fasta.rename(moved)  # moving an input is fine: bases count, not paths
    argv[argv.index(str(fasta))] = str(moved)
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "was computed from other bases than moved.fa gives now" in error
    assert main([*argv, "--overwrite"]) == 0
    assert main(argv) == 0 and "is up to date" in capsys.readouterr().out


def test_weights_that_differ_in_any_value_are_other_inputs(genome, tmp_path):
    fasta, _ = genome
    model = tiny_model(seed=1)
    other = copy.deepcopy(model)
    with torch.no_grad():  # far beyond the first 16 values of the tensor, which the old fingerprint sampled
        other.heads["human"].weight.view(-1)[-1] += 1.0
    out = predict(model, tmp_path / "out.h5", genome=fasta, regions=REGIONS[:1], options=OPTIONS, progress=False)
    with pytest.raises(UserError, match="was written from other inputs"):
        predict(other, out, genome=fasta, regions=REGIONS[:1], options=OPTIONS, progress=False)
    assert predict(model, out, genome=fasta, regions=REGIONS[:1], options=OPTIONS, progress=False) == out


def test_outputs_beyond_float16_stop_the_run_naming_the_region_and_track(genome, tmp_path):
    fasta, _ = genome
    model = tiny_model(seed=1)
    with torch.no_grad():
        model.heads["human"].bias[3] = 1e5  # softplus(1e5 + small) = 1e5 > 65,504
    out = tmp_path / "big.h5"
    with pytest.raises(UserError, match=r"region chrA:1000-1050: head human track \S+ is beyond float16's 65,504"):
        predict(model, out, genome=fasta, regions=REGIONS[:2], options=OPTIONS, progress=False)
    assert not out.exists()
    with h5py.File(out.with_name("big.h5.partial")) as handle:  # the refused row was not written
        assert handle.attrs["completed"] == 0 and np.isnan(handle["human/predictions"][0]).all()


def test_a_bigwig_folder_follows_the_rule(genome, tmp_path, capsys, monkeypatch):
    pytest.importorskip("pybigtools")
    fasta, _ = genome
    save_model(tiny_model(seed=1), tmp_path / "weights")
    argv = ["predict", "--weights", str(tmp_path / "weights"), "--fasta", str(fasta), "--region", "chrA:3000-3050",
            "--length", str(LENGTH), "--no-progress", "--out", str(tmp_path / "out.h5"), "--bigwig", str(tmp_path / "bw")]
    (tmp_path / "bw").write_text("not a folder")
    assert main(argv) == 2
    assert "bw is a file, but a directory is due there" in capsys.readouterr().err
    (tmp_path / "bw").unlink()
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "bw").iterdir())[-1] == "run.json"
    assert main(argv) == 0 and "is up to date" in capsys.readouterr().out
    # Only the bigWigs gone: they are written again from the prediction file, without loading the model.
    written = {p.name: p.read_bytes() for p in (tmp_path / "bw").glob("*.bw")}
    shutil.rmtree(tmp_path / "bw")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although the predictions were up to date")

    monkeypatch.setattr("senformer.weights.load_model", no_model)
    assert main(argv) == 0, capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "bw").glob("*.bw")} == written


def test_a_prediction_made_from_python_is_up_to_date_for_the_command_and_the_other_way_round(
        genome, tmp_path, capsys, monkeypatch):
    """One fingerprint recipe: the weights count by their tensors and resolved configuration, the regions by
    their text and names, the options but the device, whichever way the file is made."""
    import senformer.predict.run
    from senformer.data.genome import read_bed
    from senformer.weights import load_model

    fasta, _ = genome
    save_model(tiny_model(seed=4), tmp_path / "weights")
    bed = tmp_path / "regions.bed"
    bed.write_text("chrA\t1000\t1100\ta\nchrA\t3000\t3400\tb\n")
    options = PredictOptions(sequence_length=LENGTH, reverse_complement=True, shifts=(0, 1), tracks=("0-2",))
    model = load_model(tmp_path / "weights")

    def argv(out):
        return ["predict", "--weights", str(tmp_path / "weights"), "--fasta", str(fasta), "--regions", str(bed),
                "--length", str(LENGTH), "--rc", "--shifts=0,1", "--tracks", "0-2", "--no-progress", "--out", str(out)]

    def unchanged(out):
        return out.stat().st_mtime_ns, out.stat().st_ino, out.with_name(f"{out.name}.run.json").read_bytes()

    # Python first: the command finds it up to date (it loads the model once to learn the weights' identity).
    from_python = predict(model, tmp_path / "python.h5", genome=fasta, regions=list(read_bed(bed)), options=options,
                          progress=False)
    before = unchanged(from_python)
    assert main(argv(from_python)) == 0 and f"{from_python} is up to date" in capsys.readouterr().out
    assert unchanged(from_python) == before
    # The command first: Python finds it up to date and computes nothing.
    from_command = tmp_path / "command.h5"
    assert main(argv(from_command)) == 0
    before = unchanged(from_command)

    def computing(*args, **kwargs):
        raise AssertionError("an up-to-date file was computed again")

    monkeypatch.setattr(senformer.predict.run, "completed_regions", computing)
    assert predict(model, from_command, genome=fasta, regions=list(read_bed(bed)), options=options,
                   progress=False) == from_command
    assert unchanged(from_command) == before
    # and another option is other inputs either way
    with pytest.raises(UserError, match="pass --overwrite"):
        predict(model, from_command, genome=fasta, regions=list(read_bed(bed)),
                options=PredictOptions(sequence_length=LENGTH, tracks=("0-2",)), progress=False)
