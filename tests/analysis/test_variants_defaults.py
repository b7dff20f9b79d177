"""``analyze variants``' defaults fit a cohort: 1,000 SNVs against the official 5,313-track human table, with
default options, make a compact HDF5 of SAD only (at most 25 MB), announced with its size, with a progress
bar that knows its total."""

import h5py
import numpy as np
import pytest

from helpers import tiny_model, write_random_chromosome
from senformer.analysis.variant_files import default_suffix, size_estimate
from senformer.cli import main

SNVS = 1000
HUMAN_TRACKS = 5313


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 1,000-SNV VCF on a random 120-kb chromosome and a one-layer model with the official human head: one
    conv-tower block (4-bp bins) and 128-bp windows, so that 1,000 windows take seconds."""
    from senformer import save_model

    root = tmp_path_factory.mktemp("cohort")
    model = tiny_model(seed=3, dim=24, depth=1, key_size=4, output_heads={"human": HUMAN_TRACKS}, target_length=4,
                       num_conv_tower_blocks=1, num_poolings=2)
    save_model(model, root / "model")
    bases = write_random_chromosome(root / "genome.fa", 120_000, seed=3)
    positions = np.sort(np.random.default_rng(3).choice(np.arange(1_000, 119_000), SNVS, replace=False))
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr1\t{p + 1}\tv{p}\t{bases[p]}\t{'A' if bases[p] != 'A' else 'C'}\t.\t.\t." for p in positions]
    (root / "cohort.vcf").write_text("\n".join(lines) + "\n")
    return root


def test_a_thousand_snvs_with_default_options_write_a_small_hdf5(cohort, capfd):
    # --threads 1: two test workers share two cores; --length: a tiny window (the options under test are defaults)
    assert main(["analyze", "variants", "--weights", str(cohort / "model"), "--fasta", str(cohort / "genome.fa"),
                 "--vcf", str(cohort / "cohort.vcf"), "--length", "128", "--threads", "1",
                 "--out", str(cohort / "scores")]) == 0
    printed, progress = capfd.readouterr()
    out = cohort / "scores.h5"  # no suffix given: compact HDF5
    assert out.stat().st_size <= 25e6
    with h5py.File(out, "r") as handle:
        assert list(handle["scores"]) == ["SAD"] and handle["scores/SAD"].shape == (SNVS, HUMAN_TRACKS)
        assert np.isfinite(handle["scores/SAD"][:]).all()
    announced = printed.splitlines()[0]
    assert announced.endswith("1,000 alleles x 5,313 tracks x 1 score x 4 bytes (h5): about 21.3 MB")
    assert f"{SNVS}/{SNVS}" in progress and "<00:00" in progress.replace("\r", "\n").splitlines()[-1]


def test_the_size_said_before_a_run():
    assert size_estimate(10_000, 5313, 6, "tsv") == (
        "10,000 alleles x 5,313 tracks x 6 scores x 13 bytes (tsv): about 4.1 GB")
    assert size_estimate(1, 2, 1, "tsv.gz").endswith("1 allele x 2 tracks x 1 score x 6 bytes (tsv.gz): about 0 kB")
    assert [default_suffix(name) for name in ("calls", "calls.tsv", "runs/calls.h5")] == [
        "calls.h5", "calls.tsv", "runs/calls.h5"]
