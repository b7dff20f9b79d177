"""``senformer analyze ...`` end to end on a tiny synthetic Basenji2 folder and saved tiny models."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import tiny_model
from senformer.cli import main

pytestmark = pytest.mark.slow  # about a minute in all: each command loads models and writes figures


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from senformer.data.synthetic import make_synthetic
    from senformer import save_model

    root = tmp_path_factory.mktemp("analyze")
    data = make_synthetic(root / "data", size="tiny", seed=0)
    statistics = json.loads((data / "statistics.json").read_text())
    heads = {"human": statistics["num_targets"]}
    for name, seed in (("a", 1), ("b", 2)):
        model = tiny_model(seed=seed, target_length=statistics["target_length"], output_heads=heads)
        save_model(model, root / name)
    return root


def test_compare_a_model_with_itself(workspace, tmp_path):
    out = tmp_path / "compare"
    assert main(["analyze", "compare", "--data", str(workspace / "data"), "--weights", f"x={workspace / 'a'}",
                 "--weights", f"y={workspace / 'a'}", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "compare.csv")
    assert list(table["group"]) == ["DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE", "all"]
    np.testing.assert_allclose(table["correlation"], 1.0, atol=1e-9)
    np.testing.assert_allclose(table["prediction_correlation"], 1.0, atol=1e-6)
    assert (table["ties"] == table["examples"]).all() and (table["x_wins"] == 0).all()
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "senformer analyze compare" and settings["models"] == ["x", "y"]


def test_compare_two_models_and_the_tracks_figure(workspace, tmp_path):
    weights = ["--weights", f"a={workspace / 'a'}", "--weights", f"b={workspace / 'b'}"]
    assert main(["analyze", "compare", "--data", str(workspace / "data"), *weights, "--out", str(tmp_path / "c"),
                 "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "c" / "compare.csv")
    assert (table["a_wins"] + table["b_wins"] + table["ties"] == table["examples"]).all()
    assert (table["ties"] < table["examples"]).any()
    out = tmp_path / "t"
    assert main(["analyze", "tracks", "--data", str(workspace / "data"), *weights, "--examples", "1",
                 "--tracks", "0", "7", "--out", str(out), "--quiet"]) == 0
    arrays = np.load(out / "tracks.npz")
    assert arrays["target"].shape == (1, 16, 2) and arrays["prediction_a"].shape == (1, 16, 2)
    summary = pd.read_csv(out / "overprediction.csv")
    assert set(summary["model"]) == {"a", "b"} and (summary["share_over"].between(0, 1)).all()
    assert (out / "tracks_example1.png").is_file()


def test_receptive_field_per_attention_kind(workspace, tmp_path):
    out = tmp_path / "rf"
    assert main(["analyze", "receptive-field", "--weights", f"m={workspace / 'a'}", "--attention", "full",
                 "--attention", "bigbird", "--length", "4096", "--sequences", "1", "--positions", "4",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "receptive_field.json").read_text())
    assert set(summary) == {"m-full", "m-bigbird"}
    assert summary["m-bigbird"]["attention"] == "bigbird"
    for name in summary:
        assert np.load(out / f"receptive_field_{name}.npz")["change"].shape == (4, 16)
        assert (out / f"receptive_field_{name}_heatmap.png").is_file()
        assert len(summary[name]["reach_share"]) == 4 and 0 < min(summary[name]["reach_share"]) <= 1


def test_attribution_and_variants_on_a_genome(workspace, tmp_path):
    fasta = workspace / "data" / "genome.fa"
    chrom, size = (workspace / "data" / "genome.fa.fai").read_text().split("\t")[:2]
    out = tmp_path / "attr"
    assert main(["analyze", "attribution", "--weights", str(workspace / "a"), "--fasta", str(fasta),
                 "--region", f"{chrom}:3000-3100", "--length", "4096", "--tracks", "1", "--ism-width", "4",
                 "--out", str(out), "--quiet"]) == 0
    arrays = np.load(out / "attribution.npz")
    assert arrays["gradient_x_input"].shape == (4096, 4) and arrays["ism"].shape == (4, 4)
    from senformer.data.genome import Genome, Interval

    bases = Genome(fasta).fetch(Interval(chrom, 2999, 3001))
    vcf = tmp_path / "v.vcf"
    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\n"
                   f"{chrom}\t3000\tsame\t{bases[0]}\t{bases[0]}\n"
                   f"{chrom}\t3000\tsnv\t{bases[0]}\t{'A' if bases[0] != 'A' else 'C'}\n"
                   f"{chrom}\t3000\tdel\t{bases}\t{bases[0]}\n")
    table_path = tmp_path / "sad.tsv"
    assert main(["analyze", "variants", "--weights", str(workspace / "a"), "--fasta", str(fasta), "--vcf", str(vcf),
                 "--length", "4096", "--out", str(table_path), "--quiet"]) == 0
    table = pd.read_csv(table_path, sep="\t", comment="#")
    sad = table.filter(like="SAD:").to_numpy()
    assert sad.shape == (3, 8)
    assert (sad[0] == 0).all() and (table.filter(like="center:").to_numpy()[0] == 0).all()
    assert np.abs(sad[1]).max() > 0 and np.abs(sad[2]).max() > 0
    bad = tmp_path / "bad.vcf"
    bad.write_text(f"{chrom}\t3000\t.\tNNNN\tA\n")
    assert main(["analyze", "variants", "--weights", str(workspace / "a"), "--fasta", str(fasta), "--vcf", str(bad),
                 "--length", "4096", "--out", str(tmp_path / "bad.tsv"), "--quiet"]) == 2


def test_user_mistakes_end_in_one_line(workspace, tmp_path, capsys):
    assert main(["analyze", "compare", "--data", str(workspace / "data"), "--weights", str(workspace / "a"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "exactly two models" in capsys.readouterr().err
    assert main(["analyze", "tracks", "--data", str(workspace / "data"), "--weights", str(tmp_path / "none"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "weights not found" in capsys.readouterr().err


def test_compare_reuses_an_evaluation(workspace, tmp_path):
    weights = ["--weights", f"a={workspace / 'a'}", "--weights", f"b={workspace / 'b'}"]
    data = ["--data", str(workspace / "data")]
    assert main(["evaluate", *data, *weights, "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert main(["analyze", "compare", "--evaluation", str(tmp_path / "eval"), *data, "--out", str(tmp_path / "reuse"),
                 "--quiet"]) == 0
    assert main(["analyze", "compare", *data, *weights, "--out", str(tmp_path / "direct"), "--quiet"]) == 0
    reused = pd.read_csv(tmp_path / "reuse" / "compare.csv")
    direct = pd.read_csv(tmp_path / "direct" / "compare.csv")
    assert "prediction_correlation" not in reused.columns
    # the same scores up to float32 noise of other batch layouts (4 examples amplify it in the correlation)
    np.testing.assert_allclose(reused["correlation"], direct["correlation"], atol=1e-3)
    for column in ("mean_a", "mean_b", "a_wins", "b_wins", "ties"):
        np.testing.assert_allclose(reused[column], direct[column], atol=1e-5, err_msg=column)
    assert main(["analyze", "compare", "--evaluation", str(tmp_path / "eval"), "--models", "a", "c",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
