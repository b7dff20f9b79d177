"""analyze variants as a run: resume after a kill in every format, a changed genome under a partial, the REF
mismatch rule, non-finite scores and a second writer refused."""

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import Killed, interrupt_after, tiny_model
from senformer.analysis import variants as variants_module
from senformer.analysis.variants import VariantOptions, write_variant_scores
from senformer.data.genome import Genome
from senformer.errors import UserError
from senformer.outputs import output_lock

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "variants"
LENGTH = 2048


@pytest.fixture
def fasta(tmp_path):
    shutil.copy(FIXTURES / "genome.fa", tmp_path / "genome.fa")
    return tmp_path / "genome.fa"


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5, conv_tile_length=10 * 128)


OPTIONS = VariantOptions(sequence_length=LENGTH, tracks=("0", "2"), batch_size=2, reverse_complement=False)


@pytest.fixture(autouse=True)
def write_every_window(monkeypatch):
    """Rows are written every window, as a run whose windows each take longer than the write interval does
    (a tiny model's windows take milliseconds, so rows would be written a few seconds' worth at a time)."""
    monkeypatch.setattr(variants_module, "WRITE_EVERY_SECONDS", 0.0)


def test_rows_written_many_windows_at_a_time_are_the_same_bytes(model, fasta, tmp_path, monkeypatch):
    every = write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", tmp_path / "every.tsv.gz", OPTIONS,
                                 progress=False)
    monkeypatch.setattr(variants_module, "WRITE_EVERY_SECONDS", 3600.0)
    grouped = write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", tmp_path / "grouped.tsv.gz",
                                   OPTIONS, progress=False)
    assert grouped.out.read_bytes() == every.out.read_bytes()  # one gzip member per window either way
    assert every.out.read_bytes().count(b"\x1f\x8b\x08") >= 9  # the header and 8 windows


def count_windows_run(monkeypatch):
    from senformer.edits import EditEngine

    runs = []
    original = EditEngine.reference_output

    def counted(self):
        runs.append(1)
        return original(self)

    monkeypatch.setattr(EditEngine, "reference_output", counted)
    return runs


def read_rows(path):
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as handle:
            return ([v.decode() if isinstance(v, bytes) else v for v in handle["variants/id"][:]],
                    handle["scores/SAD"][:])
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
    return list(table["id"]), table[[c for c in table.columns if c.startswith("SAD:")]].to_numpy(dtype=float)


@pytest.mark.parametrize("suffix", ["tsv", "tsv.gz", "h5"])
def test_a_killed_run_resumes_where_it_stopped(model, fasta, tmp_path, monkeypatch, suffix):
    whole = write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", tmp_path / f"whole.{suffix}", OPTIONS,
                                 progress=False)
    out = tmp_path / f"killed.{suffix}"
    writer = variants_module.H5Writer if suffix == "h5" else variants_module.TableWriter
    with monkeypatch.context() as patch:
        interrupt_after(patch, writer, appends=2)  # two windows written, then killed
        with pytest.raises(Killed):
            write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", out, OPTIONS, progress=False)
    partial = Path(f"{out}.partial")
    assert partial.is_file() and not out.exists()
    torn = b"chr1\t3300\tmnv\tAC"  # a row torn by the kill
    if suffix != "h5":
        with open(partial, "ab") as handle:
            handle.write(torn if suffix == "tsv" else gzip.compress(torn + b"\tCA\n")[:25])
    runs = count_windows_run(monkeypatch)
    resumed = write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", out, OPTIONS, progress=False)
    # 13 rows in 8 windows that run the model (skipped alleles ride in the window before them); rows are
    # written a whole window at a time, and the first 2 windows are not run again
    assert len(runs) == 8 - 2 and resumed.counts == whole.counts
    ids, sad = read_rows(out)
    whole_ids, whole_sad = read_rows(whole.out)
    assert ids == whole_ids and len(ids) == 13
    np.testing.assert_allclose(sad, whole_sad, rtol=1e-6, equal_nan=True)
    assert resumed.bases_sha256 == whole.bases_sha256
    assert not partial.exists() and not Path(f"{partial}.bases").exists()
    # and once complete, the same run is up to date without running the model
    runs.clear()
    assert write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", out, OPTIONS, progress=False).up_to_date
    assert not runs


def test_a_partial_from_other_genome_bases_starts_again(model, fasta, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores.tsv"
    with monkeypatch.context() as patch:
        interrupt_after(patch, variants_module.TableWriter, appends=1)
        with pytest.raises(Killed):
            write_variant_scores(model, fasta, FIXTURES / "variants.vcf.gz", out, OPTIONS, progress=False)
    lines = fasta.read_text().splitlines()
    lines[10] = ("A" if lines[10][0] != "A" else "C") + lines[10][1:]  # chr1 bp 540: inside the first window
    fasta.write_text("\n".join(lines) + "\n")
    os.utime(fasta, (os.path.getmtime(fasta) + 5,) * 2)
    runs = count_windows_run(monkeypatch)
    write_variant_scores(model, Genome(fasta), FIXTURES / "variants.vcf.gz", out, OPTIONS, progress=False)
    assert "genome's bases changed under row 1: starting it again" in capsys.readouterr().err
    assert len(runs) == 8
    # the finished output is no longer up to date with a genome changed under it
    lines[12] = ("A" if lines[12][0] != "A" else "C") + lines[12][1:]
    fasta.write_text("\n".join(lines) + "\n")
    os.utime(fasta, (os.path.getmtime(fasta) + 10,) * 2)
    with pytest.raises(UserError, match="other bases than genome.fa gives now"):
        write_variant_scores(model, Genome(fasta), FIXTURES / "variants.vcf.gz", out, OPTIONS, progress=False)


def write_vcf(path, genome, positions, wrong):
    """SNVs at ``positions`` of chr1; those in ``wrong`` carry a REF the genome does not have."""
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=6000>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for pos in positions:
        base = genome[pos - 1]
        ref = "ACGT"[("ACGT".index(base) + 1) % 4] if pos in wrong else base
        alt = "ACGT"[("ACGT".index(ref) + 2) % 4]
        lines.append(f"chr1\t{pos}\tv{pos}\t{ref}\t{alt}\t.\t.\t.")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ref_mismatch_is_skipped_and_counted_and_many_stop_the_run(model, fasta, tmp_path):
    chr1 = "".join(fasta.read_text().split(">chr2")[0].splitlines()[1:])
    positions = list(range(1200, 1200 + 20 * 50, 50))
    few = write_vcf(tmp_path / "few.vcf", chr1, positions, wrong={positions[3]})  # 1 of 20: 5%
    run = write_variant_scores(model, fasta, few, tmp_path / "few.tsv", OPTIONS, progress=False)
    assert run.counts == {"scored": 19, "REF differs from the genome": 1}
    table = pd.read_csv(tmp_path / "few.tsv", sep="\t", keep_default_na=False)
    assert table.loc[3, "note"] == f"skipped: REF differs from the genome ({chr1[positions[3] - 1]})"
    assert table.loc[3, "SAD:human-0"] == "nan" and table.loc[4, "note"] == ""
    many = write_vcf(tmp_path / "many.vcf", chr1, positions, wrong=set(positions[:3]))  # 3 of 20: 15%
    with pytest.raises(UserError, match=r"REF differs from genome.fa at 3 of the first 20 variants .*wrong genome "
                                        r"build\? \(--allow-ref-mismatch"):
        write_variant_scores(model, fasta, many, tmp_path / "many.tsv", OPTIONS, progress=False)
    assert not (tmp_path / "many.tsv").exists()
    allowed = VariantOptions(**{**OPTIONS.__dict__, "allow_ref_mismatch": True})
    run = write_variant_scores(model, fasta, many, tmp_path / "allowed.tsv", allowed, progress=False)
    assert run.counts == {"scored": 17, "REF differs from the genome": 3}


def test_non_finite_scores_are_refused_naming_the_variant(fasta, tmp_path):
    broken = tiny_model(seed=6)
    with torch.no_grad():
        broken.heads["human"].bias[2] = float("inf")  # the softplus head overflows for track 2
    with pytest.raises(UserError, match=r"variant chr1:1500 C>A: SAD of track 2 is not finite"):
        write_variant_scores(broken, fasta, FIXTURES / "variants.vcf.gz", tmp_path / "x.tsv", OPTIONS,
                             progress=False)
    assert not (tmp_path / "x.tsv").exists()


def test_a_second_writer_is_refused_naming_the_holder(model, fasta, tmp_path):
    out = tmp_path / "scores.h5"
    with output_lock(out):
        with pytest.raises(UserError, match=rf"being written by another run \(pid {os.getpid()} on host"):
            write_variant_scores(model, fasta, FIXTURES / "variants.bcf", out, OPTIONS, progress=False)
    assert write_variant_scores(model, fasta, FIXTURES / "variants.bcf", out, OPTIONS, progress=False).counts


def test_options_and_output_names_are_checked():
    with pytest.raises(UserError, match="unknown score 'SADX'"):
        VariantOptions(stats=("SAD", "SADX"))
    with pytest.raises(UserError, match="odd and positive"):
        VariantOptions(center_bins=2)
    with pytest.raises(UserError, match=r"\.tsv, \.tsv\.gz or \.h5"):
        variants_module.output_format("scores.csv")
