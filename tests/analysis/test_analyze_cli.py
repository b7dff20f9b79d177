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
                 "--weights", f"y={workspace / 'a'}", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "compare.csv")
    assert list(table["group"]) == ["DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE", "all"]
    np.testing.assert_allclose(table["correlation"], 1.0, atol=1e-9)
    np.testing.assert_allclose(table["prediction_correlation"], 1.0, atol=1e-6)
    assert (table["ties"] == table["examples"]).all() and (table["x_wins"] == 0).all()
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "analyze compare" and record["settings"]["models"] == ["x", "y"]
    assert record["argv"] and record["senformer"]["version"]


def test_compare_two_models_and_the_tracks_figure(workspace, tmp_path):
    weights = ["--weights", f"a={workspace / 'a'}", "--weights", f"b={workspace / 'b'}"]
    assert main(["analyze", "compare", "--data", str(workspace / "data"), *weights, "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "c" / "compare.csv")
    assert (table["a_wins"] + table["b_wins"] + table["ties"] == table["examples"]).all()
    assert (table["ties"] < table["examples"]).any()
    out = tmp_path / "t"
    assert main(["analyze", "tracks", "--data", str(workspace / "data"), *weights, "--examples", "1",
                 "--tracks", "0", "7", "--out", str(out), "--no-progress"]) == 0
    arrays = np.load(out / "tracks.npz")
    assert arrays["target"].shape == (1, 16, 2) and arrays["prediction_a"].shape == (1, 16, 2)
    summary = pd.read_csv(out / "overprediction.csv")
    assert set(summary["model"]) == {"a", "b"} and (summary["share_over"].between(0, 1)).all()
    assert (out / "tracks_example1.png").is_file()


def test_receptive_field_per_attention_kind(workspace, tmp_path):
    out = tmp_path / "rf"
    assert main(["analyze", "receptive-field", "--weights", f"m={workspace / 'a'}", "--attention", "full",
                 "--attention", "bigbird", "--length", "4096", "--sequences", "1", "--positions", "4",
                 "--out", str(out), "--no-progress"]) == 0
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
                 "--out", str(out), "--no-progress"]) == 0
    arrays = np.load(out / "attribution.npz")
    assert arrays["gradient_x_input"].shape == (4096, 4) and arrays["ism"].shape == (4, 4)
    from senformer.data.genome import Genome, Interval

    bases = Genome(fasta).fetch(Interval(chrom, 2999, 3001))
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"{chrom}\t3000\tsame\t{bases[0]}\t{bases[0]}\t.\t.\t.\n"
                   f"{chrom}\t3000\tsnv\t{bases[0]}\t{'A' if bases[0] != 'A' else 'C'}\t.\t.\t.\n"
                   f"{chrom}\t3000\tdel\t{bases}\t{bases[0]}\t.\t.\t.\n")
    table_path = tmp_path / "sad.tsv"
    assert main(["analyze", "variants", "--weights", str(workspace / "a"), "--fasta", str(fasta), "--vcf", str(vcf),
                 "--length", "4096", "--stats", "SAD,center", "--out", str(table_path), "--no-progress"]) == 0
    table = pd.read_csv(table_path, sep="\t", comment="#")
    sad = table.filter(regex="^SAD:").to_numpy()
    assert sad.shape == (3, 8)
    assert (sad[0] == 0).all() and (table.filter(like="center:").to_numpy()[0] == 0).all()
    assert np.abs(sad[1]).max() > 0 and np.abs(sad[2]).max() > 0
    bad = tmp_path / "bad.vcf"
    bad.write_text(f"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n{chrom}\t3000\t.\tNNNN\tA\t.\t.\t.\n")
    assert main(["analyze", "variants", "--weights", str(workspace / "a"), "--fasta", str(fasta), "--vcf", str(bad),
                 "--length", "4096", "--out", str(tmp_path / "bad.tsv"), "--no-progress"]) == 2


def test_user_mistakes_end_in_one_line(workspace, tmp_path, capsys):
    assert main(["analyze", "compare", "--data", str(workspace / "data"), "--weights", str(workspace / "a"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "exactly two models" in capsys.readouterr().err
    assert main(["analyze", "tracks", "--data", str(workspace / "data"), "--weights", str(tmp_path / "none"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "no such weights file or directory" in capsys.readouterr().err


def test_compare_reuses_an_evaluation(workspace, tmp_path):
    weights = ["--weights", f"a={workspace / 'a'}", "--weights", f"b={workspace / 'b'}"]
    data = ["--data", str(workspace / "data")]
    assert main(["evaluate", *data, *weights, "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert main(["analyze", "compare", "--evaluation", str(tmp_path / "eval"), *data, "--out", str(tmp_path / "reuse"),
                 "--no-progress"]) == 0
    assert main(["analyze", "compare", *data, *weights, "--out", str(tmp_path / "direct"), "--no-progress"]) == 0
    reused = pd.read_csv(tmp_path / "reuse" / "compare.csv")
    direct = pd.read_csv(tmp_path / "direct" / "compare.csv")
    assert "prediction_correlation" not in reused.columns
    # compare runs the models through evaluate's loop with evaluate's default batch size: the same numbers
    pd.testing.assert_frame_equal(reused, direct.drop(columns="prediction_correlation"), check_exact=True)
    assert main(["analyze", "compare", "--evaluation", str(tmp_path / "eval"), "--models", "a", "c",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2


def test_the_four_kinds_of_tracks_value_select_the_same_tracks_in_every_subcommand(workspace, tmp_path):
    """A range, an identifier, a description and a pattern, each resolved by `predict` and every analyze
    subcommand that takes --tracks against the dataset's targets.txt, give the positions pandas finds there."""
    import re

    import h5py

    data = workspace / "data"
    table = pd.read_csv(data / "targets.txt", sep="\t")
    identifier, description = table["identifier"][5], table["description"][7]
    pattern = "ACCESSIBILITY"
    expressions = {
        "0,2-3": [0, 2, 3],
        identifier: table.index[table["identifier"] == identifier].tolist(),
        description: table.index[table["description"] == description].tolist(),
        pattern: table.index[table["description"].str.contains(pattern, flags=re.IGNORECASE)].tolist(),
    }
    assert len(expressions[pattern]) == 2
    fasta = data / "genome.fa"
    chrom = (data / "genome.fa.fai").read_text().split("\t")[0]
    vcf = tmp_path / "one.vcf"
    vcf.write_text(f"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n{chrom}\t3000\t.\tA\t<DEL>\t.\t.\t.\n")  # a NaN row: only the header's tracks matter here
    weights = ["--weights", str(workspace / "a")]
    quiet = ["--no-progress"]
    for number, (value, expected) in enumerate(expressions.items()):
        out = tmp_path / str(number)
        assert main(["analyze", "tracks", "--data", str(data), *weights, "--tracks", value,
                     "--out", str(out / "tracks"), *quiet]) == 0
        chosen = [track["position"] for track in json.loads((out / "tracks" / "tracks.json").read_text())["tracks"]]
        assert chosen == expected, ("tracks", value)
        assert main(["analyze", "receptive-field", *weights, "--data", str(data), "--length", "4096",
                     "--sequences", "1", "--positions", "1", "--tracks", value, "--out", str(out / "rf"), *quiet]) == 0
        summary = json.loads((out / "rf" / "receptive_field.json").read_text())
        assert summary["a"]["tracks"] == expected, ("receptive-field", value)
        assert main(["analyze", "attribution", *weights, "--data", str(data), "--example", "0", "--ism-width", "0",
                     "--tracks", value, "--out", str(out / "attribution"), *quiet]) == 0
        assert json.loads((out / "attribution" / "attribution.json").read_text())["tracks"] == expected
        assert main(["analyze", "variants", *weights, "--fasta", str(fasta), "--vcf", str(vcf), "--length", "4096",
                     "--targets", str(data / "targets.txt"), "--tracks", value, "--out", str(out / "sad.tsv"),
                     *quiet]) == 0
        header = pd.read_csv(out / "sad.tsv", sep="\t", comment="#").columns
        assert [name.removeprefix("SAD:") for name in header if name.startswith("SAD:")] == \
            table["identifier"][expected].tolist(), ("variants", value)
        assert main(["predict", *weights, "--fasta", str(fasta), "--region", f"{chrom}:2000-2100", "--length", "4096",
                     "--targets", str(data / "targets.txt"), "--tracks", value, "--out", str(out / "p.h5"),
                     *quiet]) == 0
        with h5py.File(out / "p.h5", "r") as handle:
            assert handle["human/tracks/index"][:].tolist() == expected, ("predict", value)


def test_quiet_is_a_hidden_alias_of_no_progress(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "tracks", "--help"])
    text = capsys.readouterr().out
    assert "--no-progress" in text and "--quiet" not in text


def test_the_python_api_writes_what_the_command_writes(workspace, tmp_path):
    """`analyze tracks` and `analyze compare --evaluation` are one library call each: the same files."""
    from senformer import load_model
    from senformer.analysis.compare import evaluation_scores, run_compare
    from senformer.analysis.tracks import run_tracks
    from senformer.data.basenji import BasenjiDataset
    from senformer.data.tracks import head_track_table

    data = workspace / "data"
    weights = ["--weights", f"a={workspace / 'a'}", "--weights", f"b={workspace / 'b'}"]
    assert main(["analyze", "tracks", "--data", str(data), *weights, "--examples", "1", "--tracks", "CAGE",
                 "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    models = {name: load_model(workspace / name) for name in ("a", "b")}
    result = run_tracks(tmp_path / "api", models, BasenjiDataset(data, "test"), "human", tracks=["CAGE"],
                        targets=data, examples=[1], progress=False)
    assert result.tracks == [3, 7]
    for name in ("overprediction.csv", "overprediction_tracks.csv", "tracks.json"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    api, cli = np.load(tmp_path / "api" / "tracks.npz"), np.load(tmp_path / "cli" / "tracks.npz")
    assert sorted(api.files) == sorted(cli.files)
    for key in api.files:
        np.testing.assert_array_equal(api[key], cli[key])
    assert (tmp_path / "api" / "tracks_example1.png").is_file()

    assert main(["evaluate", "--data", str(data), *weights, "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert main(["analyze", "compare", "--evaluation", str(tmp_path / "eval"), "--data", str(data),
                 "--out", str(tmp_path / "compare_cli"), "--no-progress"]) == 0
    scores, example_index = evaluation_scores(tmp_path / "eval")
    run_compare(tmp_path / "compare_api", scores, example_index, head_track_table("human", 8, data))
    for name in ("compare.csv", "per_example.csv", "compare.json"):
        assert (tmp_path / "compare_api" / name).read_bytes() == (tmp_path / "compare_cli" / name).read_bytes(), name
