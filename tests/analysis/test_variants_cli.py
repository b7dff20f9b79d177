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

from helpers import tiny_model
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
