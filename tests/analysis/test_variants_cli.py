"""``senformer analyze variants`` end to end on the committed fixtures and a saved tiny model."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import tiny_borzoi, tiny_model, write_random_chromosome
from senformer.cli import main
from senformer.commands.analyze import STATS_DEFAULT

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "variants"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from senformer import save_model

    root = tmp_path_factory.mktemp("variants")
    save_model(tiny_model(seed=7, conv_tile_length=10 * 128), root / "model")
    shutil.copy(FIXTURES / "genome.fa", root / "genome.fa")
    return root


def command(workspace, out, *extra):
    return ["analyze", "variants", "--weights", str(workspace / "model"), "--fasta", str(workspace / "genome.fa"),
            "--length", "2048", "--out", str(out), "--no-progress", *extra]


def test_bcf_to_hdf5_then_up_to_date(workspace, tmp_path, capsys):
    out = tmp_path / "scores.h5"
    assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.bcf"), "--tracks", "human-1", "3")) == 0
    printed = capsys.readouterr().out
    assert "scored 9 alleles; skipped 1 breakend, 1 missing ALT, 1 spanning deletion, 1 symbolic allele" in printed
    with h5py.File(out, "r") as handle:
        assert sorted(handle["scores"]) == sorted(STATS_DEFAULT)
        assert handle["scores/SAD"].shape == (13, 2) and handle["tracks/index"][:].tolist() == [1, 3]
        assert handle["variants/note"][6].decode() == "skipped: symbolic allele"
    record = json.loads(Path(f"{out}.run.json").read_text())
    assert record["command"] == "analyze variants" and record["settings"]["counts"]["scored"] == 9
    assert set(record["inputs"]) >= {"weights", "vcf"} and record["fingerprint"]
    assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.bcf"), "--tracks", "human-1", "3")) == 0
    assert f"{out} is up to date" in capsys.readouterr().out
    # other settings need --overwrite
    assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.bcf"), "--tracks", "0")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.bcf"), "--tracks", "0",
                        "--overwrite")) == 0


def test_engine_and_plain_commands_agree_and_the_old_flag_is_kept(workspace, tmp_path):
    vcf = str(FIXTURES / "variants.vcf.gz")
    assert main(command(workspace, tmp_path / "engine.tsv.gz", "--vcf", vcf, "--stats", "SAD,D2")) == 0
    assert main(command(workspace, tmp_path / "plain.tsv.gz", "--vcf", vcf, "--stats", "SAD,D2", "--plain",
                        "--allow-ref-mismatch")) == 0
    engine = pd.read_csv(tmp_path / "engine.tsv.gz", sep="\t", keep_default_na=False)
    plain = pd.read_csv(tmp_path / "plain.tsv.gz", sep="\t", keep_default_na=False)
    assert list(engine.columns[8:]) == [f"{s}:human-{t}" for s in ("SAD", "D2") for t in range(5)]
    scored = engine["note"] == ""
    values = engine.iloc[:, 8:][scored].to_numpy(dtype=float)
    np.testing.assert_allclose(values, plain.iloc[:, 8:][scored].to_numpy(dtype=float), rtol=1e-4,
                               atol=1e-5 * np.abs(values).max())
    record = json.loads((tmp_path / "plain.tsv.gz.run.json").read_text())
    assert record["settings"]["allow_ref_mismatch"] is True


def test_anchored_command(workspace, tmp_path):
    bed = tmp_path / "tss.bed"
    bed.write_text("chr1\t2799\t2800\tgeneA\t0\t-\n")
    out = tmp_path / "eqtl.tsv"
    assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.vcf.gz"), "--anchors", str(bed),
                        "--max-distance", "700", "--center-bins", "1")) == 0
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(table["id"]) == ["multi", "multi", "del3", "ins4", "mnv", "sv"]
    assert set(table["anchor"]) == {"geneA"} and list(table["distance"]) == [600, 600, 200, -200, -500, -700]


def test_the_command_lists_the_analysis_scores_and_its_default():
    from senformer.analysis.variants import DEFAULT_STATS, STATS
    from senformer.commands import analyze

    assert analyze.STATS == STATS  # the command lists them without importing the analysis at start-up
    assert STATS_DEFAULT == DEFAULT_STATS == ("SAD",)


def test_user_mistakes_end_in_one_line(workspace, tmp_path, capsys):
    vcf = str(FIXTURES / "variants.vcf.gz")
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes((FIXTURES / "variants.vcf.gz").read_bytes()[:-28])
    cases = [
        (command(workspace, tmp_path / "x.csv", "--vcf", vcf), ".tsv, .tsv.gz or .h5"),
        (command(workspace, tmp_path / "x.tsv", "--vcf", str(cut)), f"{cut}: truncated"),
        (command(workspace, tmp_path / "x.tsv", "--vcf", vcf, "--max-distance", "10"), "applies to --anchors"),
        (command(workspace, tmp_path / "x.tsv", "--vcf", vcf, "--stats", "SAD,foo"), "unknown score 'foo'"),
        (command(workspace, tmp_path / "x.tsv", "--vcf", vcf, "--cluster-bp", "5000"), "half the output window"),
    ]
    for arguments, expected in cases:
        assert main(arguments) == 2, arguments
        error = capsys.readouterr().err.strip()
        assert expected in error and len(error.splitlines()) == 1, error


def test_a_second_run_on_one_output_is_refused_naming_the_holder(workspace, tmp_path, capsys):
    out = tmp_path / "busy.tsv"
    lock = Path(f"{out}.lock")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'host elsewhere pid {os.getpid()}\\n'.encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.vcf.gz"))) == 2
        assert f"pid {holder.pid} on host elsewhere" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(command(workspace, out, "--vcf", str(FIXTURES / "variants.vcf.gz"))) == 0


def test_bf16_engine_is_as_close_to_whole_bf16_windows_as_bf16_is_to_fp32(workspace, tmp_path, monkeypatch):
    import senformer.device

    monkeypatch.setattr(senformer.device, "bf16_supported", lambda device: True)  # whatever this CPU has
    vcf = str(FIXTURES / "variants.vcf.gz")
    runs = {"fp32": [], "bf16": ["--bf16"], "bf16-plain": ["--bf16", "--plain"]}
    scores = {}
    for name, extra in runs.items():
        assert main(command(workspace, tmp_path / f"{name}.tsv", "--vcf", vcf, "--stats", "REF,ALT", *extra)) == 0
        scores[name] = pd.read_csv(tmp_path / f"{name}.tsv", sep="\t").filter(regex="^(REF|ALT):").to_numpy()
    scored = np.isfinite(scores["fp32"]).all(axis=1)
    assert scored.sum() >= 9 and all(np.isfinite(values[scored]).all() for values in scores.values())
    bf16_error = np.abs(scores["bf16-plain"][scored] - scores["fp32"][scored]).max()
    engine_error = np.abs(scores["bf16"][scored] - scores["bf16-plain"][scored]).max()
    assert 0 < bf16_error and engine_error <= bf16_error  # the bound for bf16
    assert json.loads((tmp_path / "bf16.tsv.run.json").read_text())["settings"]["bf16"] is True


def test_rc_reads_stranded_tracks_by_the_strand_pairs_of_targets(tmp_path, capsys):
    """A tiny Borzoi's 2,608-track mouse head with --rc and a --targets table that pairs rows 0-3 otherwise
    than the shipped table (0-1, 2-3): REF and ALT are the forward and reverse passes averaged with the
    table's pairs swapped, written here directly; a table without the column keeps the shipped pairs; a
    broken column is one line naming the file and the row, and no output."""
    from senformer import save_model
    from senformer.data.borzoi_targets import borzoi_track_table
    from senformer.sequence import one_hot, reverse_complement

    model = tiny_borzoi(seed=3, output_heads={"mouse": 2608})
    save_model(model, tmp_path / "borzoi")
    bases = write_random_chromosome(tmp_path / "genome.fa", 3000, seed=4)
    positions = (1200, 1800)  # 1-based SNVs, each centred in its own 1,024-bp window
    alts = ["A" if bases[pos - 1] != "A" else "C" for pos in positions]
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    (tmp_path / "snvs.vcf").write_text(header + "".join(
        f"chr1\t{pos}\tv{pos}\t{bases[pos - 1]}\t{alt}\t.\t.\t.\n" for pos, alt in zip(positions, alts)))
    shipped_table = borzoi_track_table("mouse").drop(columns="assay_group")
    shipped = np.array(shipped_table["strand_pair"])
    pairs = np.arange(2608)
    pairs[:4] = [2, 3, 0, 1]
    chosen = np.arange(6)
    common = ["analyze", "variants", "--weights", str(tmp_path / "borzoi"), "--fasta", str(tmp_path / "genome.fa"),
              "--vcf", str(tmp_path / "snvs.vcf"), "--head", "mouse", "--length", "1024", "--rc", "--no-progress"]

    def scores(targets_table, name):
        targets_table.to_csv(tmp_path / f"{name}.txt", sep="\t", index=False)
        assert main([*common, "--targets", str(tmp_path / f"{name}.txt"), "--tracks", "0-5", "--stats", "REF,ALT",
                     "--out", str(tmp_path / f"{name}.tsv")]) == 0
        table = pd.read_csv(tmp_path / f"{name}.tsv", sep="\t", keep_default_na=False)
        names = shipped_table["identifier"][chosen]
        return {stat: table[[f"{stat}:{track}" for track in names]].to_numpy() for stat in ("REF", "ALT")}

    def direct(swap):
        """{stat: (variants, tracks)}: bins summed of forward and reverse passes averaged, ``swap`` exchanging
        the reverse pass's tracks."""
        found = {"REF": [], "ALT": []}
        for pos, alt in zip(positions, alts):
            window = bases[pos - 1 - 512 : pos - 1 + 512]
            for stat, text in (("REF", window), ("ALT", window[:512] + alt + window[513:])):
                x = one_hot(text)[None]
                with torch.no_grad():
                    forward = model(x)["mouse"][0].double()
                    backward = model(reverse_complement(x))["mouse"][0].flip(0).double()[:, swap]
                found[stat].append(((forward + backward) / 2).sum(dim=0)[chosen].numpy())
        return {stat: np.stack(values) for stat, values in found.items()}

    custom, by_shipped = direct(pairs), direct(shipped)
    result = scores(shipped_table.assign(strand_pair=pairs), "custom")
    for stat in ("REF", "ALT"):
        scale = np.abs(custom[stat]).max()
        np.testing.assert_allclose(result[stat], custom[stat], rtol=1e-5, atol=1e-6 * scale, err_msg=stat)
        assert np.abs(custom[stat][:, :4] - by_shipped[stat][:, :4]).max() > 1e-2 * scale  # the pairs matter
    result = scores(shipped_table.drop(columns="strand_pair"), "plain")  # no column: the shipped pairs
    np.testing.assert_allclose(result["REF"], by_shipped["REF"], rtol=1e-5, atol=1e-6 * np.abs(by_shipped["REF"]).max())

    broken = pairs.copy()
    broken[5] = 0  # row 0 already pairs with row 2
    shipped_table.assign(strand_pair=broken).to_csv(tmp_path / "broken.txt", sep="\t", index=False)
    capsys.readouterr()
    assert main([*common, "--targets", str(tmp_path / "broken.txt"), "--out", str(tmp_path / "broken.tsv")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{tmp_path / 'broken.txt'}: row 5 (track " in error, error
    assert "pairs with row 0, which does not pair back" in error
    assert not list(tmp_path.glob("broken.tsv*"))
