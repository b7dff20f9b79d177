"""``senformer analyze genes`` in process on a tiny saved Borzoi: notes, shards, the existing-output rule, errors."""

import json

import h5py
import numpy as np
import pytest
import torch

from helpers import Killed, interrupt_after, randomize_, write_random_chromosome
from senformer.cli import main
from senformer.config import BorzoiConfig
from senformer.model.borzoi import Borzoi

LENGTH = 4096  # 124 output bins of 32 bp (crop 2)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from senformer import save_model

    root = tmp_path_factory.mktemp("genes")
    sequence = write_random_chromosome(root / "genome.fa", 30_000, seed=3, name="chr1")
    config = BorzoiConfig(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5, conv_tower_start=8,
                          conv_tower_divisible_by=4, crop=2, final_channels=12, output_heads={"human": 3},
                          dropout_rate=0.0, attention_dropout_rate=0.0, positional_dropout_rate=0.0,
                          final_dropout_rate=0.0)
    for replicate in (0, 1):
        torch.manual_seed(replicate)
        save_model(randomize_(Borzoi(config), replicate).eval(), root / f"model{replicate}")
    (root / "targets.txt").write_text(
        "\tidentifier\tfile\tclip\tclip_soft\tscale\tsum_stat\tstrand_pair\tdescription\n"
        "0\tRNA1+\tx\t384\t0.3\t2.0\tsum_sqrt\t1\tRNA:x\n"
        "1\tRNA1-\tx\t384\t0.5\t0.5\tsum_sqrt\t0\tRNA:x\n"
        "2\tDNASE1\tx\t384\t0.4\t1.0\tsum\t2\tDNASE:y\n")
    (root / "genes.gtf").write_text(
        'chr1\tt\texon\t9001\t9200\t.\t+\t.\tgene_id "PLUS"; gene_name "P";\n'
        'chr1\tt\texon\t9801\t10000\t.\t+\t.\tgene_id "PLUS"; gene_name "P";\n'
        'chr1\tt\texon\t10401\t10600\t.\t-\t.\tgene_id "MINUS"; gene_name "M";\n'
        'chr1\tt\texon\t20001\t20100\t.\t+\t.\tgene_id "FAR"; gene_name "F";\n')

    def other(base: str) -> str:
        return "A" if base != "A" else "C"

    records = [(9100, sequence[9099], other(sequence[9099])),  # SNV in PLUS's first exon
               (9500, sequence[9499], sequence[9499] + "GAT"),  # insertion between the exons
               (10500, sequence[10499:10503], sequence[10499]),  # deletion in MINUS
               (9600, other(sequence[9599]), "G"),  # REF mismatch
               (2000, sequence[1999], other(sequence[1999]))]  # near no gene
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=30000>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr1\t{pos}\tv{index}\t{ref}\t{alt}\t.\t.\t." for index, (pos, ref, alt) in enumerate(records)]
    (root / "variants.vcf").write_text("\n".join(lines) + "\n")
    return root


def command(root, out, *extra):
    return ["analyze", "genes", "--weights", str(root / "model0"), "--weights", str(root / "model1"),
            "--vcf", str(root / "variants.vcf"), "--gtf", str(root / "genes.gtf"), "--fasta", str(root / "genome.fa"),
            "--targets", str(root / "targets.txt"), "--length", str(LENGTH), "--threads", "1", "--no-progress",
            "--out", str(out), *extra]


def test_scores_notes_and_the_existing_output_rule(workspace, tmp_path, capsys):
    out = tmp_path / "genes.h5"
    assert main(command(workspace, out, "--rc")) == 0
    with h5py.File(out, "r") as handle:
        rows = [(pos, gene.decode()) for pos, gene in zip(handle["rows/pos"][()], handle["rows/gene_id"][()])]
        notes = [(int(pos), gene.decode(), note.decode()) for pos, gene, note in
                 zip(handle["notes/pos"][()], handle["notes/gene_id"][()], handle["notes/note"][()])]
        assert handle["scores/logSED"].shape == (len(rows), 2) and handle["tracks/plus"][()].tolist() == [0, 2]
        assert handle["tracks/minus"][()].tolist() == [1, 2]
        assert np.isfinite(handle["scores/SED"][()]).all() and np.abs(handle["scores/SED"][()]).min() > 0
    assert rows == [(9100, "PLUS"), (9100, "MINUS"), (9500, "PLUS"), (9500, "MINUS"), (10500, "PLUS"),
                    (10500, "MINUS")]
    assert notes[0][:2] == (9600, "") and notes[0][2].startswith("REF ")
    assert notes[1] == (2000, "", "no gene in the output window")
    assert main(command(workspace, out, "--rc")) == 0
    assert "is up to date" in capsys.readouterr().out


def test_two_shards_or_ranks_write_the_bytes_of_one_process(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr("senformer.analysis.gene_outputs.BLOCK_ROWS", 2)  # rows reach the file in several blocks
    for suffix, extra in ((".h5", ["--centre", "gene"]), (".tsv", ["--stats", "logSED"])):
        whole = tmp_path / f"whole{suffix}"
        split = tmp_path / f"split{suffix}"
        assert main(command(workspace, whole, *extra)) == 0
        for index in (0, 1):
            if suffix == ".h5":
                assert main(command(workspace, split, *extra, "--shard", f"{index}/2")) == 0
            else:  # torchrun's ranks
                with monkeypatch.context() as ranks:
                    ranks.setenv("RANK", str(index))
                    ranks.setenv("WORLD_SIZE", "2")
                    assert main(command(workspace, split, *extra)) == 0
        assert split.read_bytes() == whole.read_bytes()
    header, *lines = whole.read_text().splitlines()
    assert header.split("\t")[9:] == ["logSED:RNA1", "logSED:DNASE1"]  # only what was asked
    assert lines[-1].split("\t")[8] == "no gene in the output window"
    with h5py.File(tmp_path / "whole.h5", "r") as handle:  # gene-centred: the far variant is in no gene's window
        assert [note.decode() for note in handle["notes/note"][()]][-1] == "outside every gene's window"
        assert handle["rows/gene_id"][()].tolist() == [b"PLUS"] * 3 + [b"MINUS"] * 3  # each window its gene


def test_user_errors_are_one_line(workspace, tmp_path, capsys):
    bad = tmp_path / "bad.gtf"
    bad.write_text("chr1\tt\texon\t10\n")
    assert main(command(workspace, tmp_path / "a.h5", "--gtf", str(bad))) == 2
    error = capsys.readouterr().err.strip()
    assert "bad.gtf, line 1" in error and len(error.splitlines()) == 1
    assert main(command(workspace, tmp_path / "b.h5", "--vcf", str(tmp_path / "missing.vcf"))) == 2
    assert "missing.vcf" in capsys.readouterr().err
    assert not list(tmp_path.glob("a.h5*")) and not list(tmp_path.glob("b.h5*"))


def read_h5(path) -> dict:
    """Every dataset of a gene-score file, and its attributes."""
    with h5py.File(path, "r") as handle:
        datasets = {}
        handle.visititems(lambda name, item: datasets.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                          else None)
        return {"datasets": datasets, "attrs": dict(handle.attrs)}


def test_tracks_keep_their_columns_bit_for_bit(workspace, tmp_path, capsys):
    every = tmp_path / "every.h5"
    assert main(command(workspace, every, "--rc")) == 0
    full = read_h5(every)["datasets"]
    assert full["tracks/identifier"].tolist() == [b"RNA1", b"DNASE1"]
    # DNASE1 alone (a single column, which NumPy would sum pairwise); RNA1 by the index of its - track
    for selection, column in ((["DNASE1"], [1]), (["1"], [0])):
        out = tmp_path / f"{'-'.join(selection)}.h5"
        assert main(command(workspace, out, "--rc", "--tracks", *selection)) == 0
        kept = read_h5(out)["datasets"]
        assert kept["tracks/identifier"].tolist() == full["tracks/identifier"][column].tolist()
        assert kept["tracks/plus"].tolist() == full["tracks/plus"][column].tolist()
        assert kept["tracks/minus"].tolist() == full["tracks/minus"][column].tolist()
        for stat in ("SED", "logSED"):
            assert np.array_equal(kept[f"scores/{stat}"], full[f"scores/{stat}"][:, column]), (selection, stat)
        assert kept["rows/pos"].tolist() == full["rows/pos"].tolist()
    record = json.loads((tmp_path / "DNASE1.h5.run.json").read_text())
    assert record["settings"]["track_names"] == ["DNASE1"]
    out = tmp_path / "dnase.tsv"
    assert main(command(workspace, out, "--rc", "--tracks", "dnase")) == 0  # a pattern
    header, *lines = out.read_text().splitlines()
    assert header.split("\t")[9:] == ["SED:DNASE1", "logSED:DNASE1"]
    assert [line.split("\t")[9] for line in lines if not line.split("\t")[8]] == \
        [f"{value:.7g}" for value in full["scores/SED"][:, 1]]
    capsys.readouterr()
    # the same output with other options: refused, naming what differs; a selection of nothing: one line
    assert main(command(workspace, every, "--rc", "--tracks", "DNASE1")) == 2
    error = capsys.readouterr().err.strip()
    assert "every.h5 was written from other inputs (--tracks differ)" in error and "--overwrite" in error
    assert main(command(workspace, tmp_path / "none.h5", "--tracks", "CAGE")) == 2
    assert "no track matches 'CAGE'" in capsys.readouterr().err and not list(tmp_path.glob("none.h5*"))


@pytest.mark.parametrize("suffix", [".tsv", ".h5"])
def test_a_killed_run_resumes_to_the_uninterrupted_output(workspace, tmp_path, monkeypatch, capsys, suffix):
    from senformer.analysis.gene_outputs import GeneWriter
    from senformer.edits import EditEngine

    # 3 rows a block: the kill lands after the first block, inside the second window (2 rows each)
    monkeypatch.setattr("senformer.analysis.gene_outputs.BLOCK_ROWS", 3)
    whole = tmp_path / f"whole{suffix}"
    assert main(command(workspace, whole)) == 0
    out = tmp_path / f"killed{suffix}"
    with monkeypatch.context() as patch:
        interrupt_after(patch, GeneWriter, appends=1, method="_write")
        with pytest.raises(Killed):
            main(command(workspace, out))
    partial = tmp_path / f"killed{suffix}.partial"
    assert partial.is_file() and not out.exists()
    if suffix == ".tsv":
        with open(partial, "a") as handle:
            handle.write("chr1\t9500\tv1\tC")  # a row torn by the kill
    windows = []
    original = EditEngine.reference_output
    monkeypatch.setattr(EditEngine, "reference_output", lambda self: windows.append(1) or original(self))
    assert main(command(workspace, out)) == 0
    assert "resuming after 3 rows, at window 2" in capsys.readouterr().err
    assert len(windows) == 2 * 2  # windows 2 and 3 (the others hold only notes), two replicates each
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists() and not list(tmp_path.glob(".killed*"))  # nor the h5 set aside to be replayed


def test_a_killed_shard_resumes_its_part(workspace, tmp_path, monkeypatch, capsys):
    from senformer.analysis.gene_outputs import GeneWriter

    monkeypatch.setattr("senformer.analysis.gene_outputs.BLOCK_ROWS", 1)
    whole, split = tmp_path / "whole.h5", tmp_path / "split.h5"
    assert main(command(workspace, whole)) == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, GeneWriter, appends=1, method="_write")
        with pytest.raises(Killed):
            main(command(workspace, split, "--shard", "0/2"))
    assert main(command(workspace, split, "--shard", "0/2")) == 0
    assert "resuming after 1 row, at window 1" in capsys.readouterr().err
    assert main(command(workspace, split, "--shard", "1/2")) == 0
    assert split.read_bytes() == whole.read_bytes()
