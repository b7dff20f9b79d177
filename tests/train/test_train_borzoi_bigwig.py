"""Fine-tuning a tiny Borzoi on the user's own tracks, the whole path through the commands: bigWigs written by
pyBigWig (libBigWig, another writer than the pybigtools reader), ``data from-bigwig --sqrt borzoi`` with
Borzoi's squashed-scale columns, then ``train --loss poisson_mn``: validation Pearson rises."""

import json

import numpy as np
import pandas as pd
import pytest

from senformer.cli import main
from senformer.data.basenji import BasenjiDataset
from test_train_borzoi import tiny_borzoi

pyBigWig = pytest.importorskip("pyBigWig")

SIZES = {"chr1": 16_384, "chr2": 4_096}
POOL = 4  # bp per bin of the tiny Borzoi (1,024 bp in, 256 bins, 2 cropped per side)


def _signal(sequence: str) -> np.ndarray:
    """Per-bp coverage the model can learn: high on G/C, low on A/T, smoothed over 9 bp."""
    raw = np.array([3.0 if base in "GC" else 0.5 for base in sequence])
    return np.convolve(raw, np.ones(9) / 9, mode="same")


def _write_bigwig(path, sequences: dict[str, str], factor: float) -> None:
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(SIZES.items()))
    for name, sequence in sequences.items():
        bw.addEntries(name, 0, values=(_signal(sequence) * factor).tolist(), span=1, step=1)
    bw.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("borzoi_bigwig")
    rng = np.random.default_rng(0)
    sequences = {name: "".join(rng.choice(list("ACGT"), size)) for name, size in SIZES.items()}
    fasta = root / "genome.fa"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in sequences.items()))
    _write_bigwig(root / "rna.bw", sequences, 1.0)
    _write_bigwig(root / "dnase.bw", sequences, 2.0)
    # Borzoi's columns: an RNA-like sum_sqrt track (x^(3/4) with --sqrt borzoi, soft clip) and a plain sum.
    sheet = root / "tracks.tsv"
    sheet.write_text("identifier\tfile\tdescription\tsum_stat\tclip\tscale\tclip_soft\n"
                     "rna\trna.bw\tRNA:mine\tsum_sqrt\t384\t0.3\t320\n"
                     "dnase\tdnase.bw\tDNASE:mine\tsum\t384\t0.1\t32\n")
    out = root / "data"
    code = main(["data", "from-bigwig", str(out), "--genome", str(fasta), "--tracks", str(sheet), "--sqrt", "borzoi",
                 "--seq-length", "1024", "--crop-bp", str(2 * POOL), "--pool-width", str(POOL), "--stride", "512",
                 "--valid-chroms", "chr2", "--no-progress"])
    assert code == 0
    return root, out, sequences


def test_targets_follow_borzoi_transform(dataset):
    _, out, sequences = dataset
    first = next(iter(BasenjiDataset(out, "train")))
    assert first["interval"] == "chr1:0-1024"
    coverage = _signal(sequences["chr1"][:1024])[2 * POOL:-2 * POOL].reshape(-1, POOL).sum(-1)
    # RNA: sum -> x^(3/4) (borzoi's sqrt) -> soft clip above 320 (not reached) -> clip 384 -> * scale; float16.
    np.testing.assert_allclose(first["target"][:, 0].numpy(), (coverage ** 0.75) * 0.3, rtol=2e-3)
    np.testing.assert_allclose(first["target"][:, 1].numpy(), coverage * 2.0 * 0.1, rtol=2e-3)


def test_tiny_borzoi_learns_the_users_tracks(dataset, tmp_path):
    root, out, _ = dataset
    model = tiny_borzoi()
    model.config = model.config.replace(output_heads={"human": 2})
    from senformer.model.borzoi import Borzoi
    from helpers import randomize_

    randomize_(Borzoi(model.config), 0).save_pretrained(tmp_path / "init")
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--data", f"human={out}", "--init", str(tmp_path / "init"),
                 "--attention", "bigbird", "--loss", "poisson_mn", "--steps", "40", "--batch-size", "2",
                 "--lr", "3e-3", "--warmup-steps", "2", "--eval-every", "20", "--checkpoint-every", "40",
                 "--shift", "0", "--no-reverse-complement", "--no-progress", "--seed", "0"])
    assert code == 0
    evaluation = pd.read_csv(run / "eval_log.csv")
    first, last = evaluation["pearson"].iloc[0], evaluation["pearson"].iloc[-1]
    assert last > first + 0.2, evaluation
    assert json.loads((run / "run.json").read_text())["settings"]["loss"] == "poisson_mn"


@pytest.mark.slow
def test_the_fine_tune_killed_at_a_seeded_write_resumes_to_the_same_bytes(dataset, tmp_path):
    """SIGKILL from outside at a write point drawn with the seed (a checkpoint, the log, the weights), then
    ``--resume`` from what was left: the weights equal the uninterrupted run's byte for byte."""
    from helpers import randomize_, training_killed_and_resumed

    from senformer.model.borzoi import Borzoi

    _, out, _ = dataset
    config = tiny_borzoi().config.replace(output_heads={"human": 2}, dropout_rate=0.1)
    randomize_(Borzoi(config), 0).save_pretrained(tmp_path / "init")
    arguments = ["--data", f"human={out}", "--init", str(tmp_path / "init"), "--attention", "bigbird", "--loss",
                 "poisson_mn", "--steps", "4", "--batch-size", "2", "--warmup-steps", "1", "--eval-every", "0",
                 "--checkpoint-every", "1", "--shift", "3", "--no-progress", "--seed", "0"]
    training_killed_and_resumed(arguments, tmp_path, 7)
