"""Borzoi through predict, read_prediction, plot and the bigWig writer: 32-bp bins at the right genome positions,
the track table's identifiers, strand pairs under the reverse complement, --coverage by calico's rule on every
sum_stat kind, and --ensemble as the mean of its members, each against a direct computation written here."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_borzoi, write_random_chromosome

from senformer import save_model
from senformer.cli import main
from senformer.data.genome import Genome, Interval
from senformer.errors import UserError
from senformer.model.borzoi import Borzoi
from senformer.predictions import read_prediction, track_panels
from senformer.sequence import one_hot, reverse_complement

LENGTH = 1024  # 32 bins of 32 bp less a crop of 2 a side: 28 output bins, 896 bp
BINS, BIN = 28, 32
TABLE = pd.DataFrame({
    "identifier": ["RNA1+", "RNA1-", "RNA2+", "RNA2-", "DNASE1", "CAGE1"],
    "clip": [768.0] * 6, "clip_soft": [0.4, 0.6, 0.5, 0.3, 0.45, 0.5], "scale": [2.0, 0.5, 0.3, 1.0, 0.8, 1.5],
    "sum_stat": ["sum_sqrt", "sum_sqrt", "mean", "mean_sqrt", "sum", "mean"], "strand_pair": [1, 0, 3, 2, 4, 5],
    "description": ["RNA:liver", "RNA:liver", "RNA:K562", "RNA:K562", "DNASE:K562", "CAGE:K562"],
})
PAIRS = TABLE["strand_pair"].to_list()


def calico_untransform(preds: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """baskerville ``dataset.untransform_preds1`` with its defaults (unscale=False, unclip=True), transcribed."""
    scale = table["scale"].to_numpy()[None]
    preds = preds / scale
    soft = table["clip_soft"].to_numpy()[None]
    preds = np.where(preds > soft, soft + (preds - soft) ** 2, preds)
    root = np.array(["_sqrt" in stat for stat in table["sum_stat"]])
    preds[:, root] = preds[:, root] ** (4 / 3)
    return preds * scale


@pytest.fixture(scope="module")
def borzoi_run(tmp_path_factory):
    pytest.importorskip("pybigtools")
    root = tmp_path_factory.mktemp("borzoi")
    write_random_chromosome(root / "genome.fa", 6_000, seed=5)
    TABLE.to_csv(root / "targets.txt", sep="\t")
    models = [tiny_borzoi(seed) for seed in (1, 2)]
    for number, model in enumerate(models):
        save_model(model, root / f"w{number}")
    common = ["--fasta", root / "genome.fa", "--length", LENGTH, "--targets", root / "targets.txt", "--no-progress"]
    assert main([str(a) for a in ["predict", "--weights", root / "w0", "--region", "chr1:2,000-2,100", "--rc",
                                  "--coverage", "--bigwig", root / "tracks", "--out", root / "cov.h5", *common]]) == 0
    assert main([str(a) for a in ["predict", "--weights", root / "w0", "--region", "chr1:2,000-2,100", "--rc",
                                  "--out", root / "model.h5", *common]]) == 0
    return root, models, common


def direct(model: Borzoi, genome: Genome, start: int) -> np.ndarray:
    """(bins, tracks) the model's output for the input at ``start``, averaged with its reverse complement read
    back along bins with + and - tracks exchanged."""
    x = one_hot(genome.fetch(Interval("chr1", start, start + LENGTH)))[None]
    with torch.no_grad():
        forward = model(x)["human"][0]
        backward = model(reverse_complement(x))["human"][0].flip(0)[:, PAIRS]
    return ((forward + backward) / 2).double().numpy()


def test_a_borzoi_prediction_is_in_32_bp_bins_at_genome_positions(borzoi_run):
    root, models, _ = borzoi_run
    span_start = 2_000 + (100 - BINS * BIN) // 2  # the output window centred on the region
    with h5py.File(root / "cov.h5") as handle:
        assert handle.attrs["bin_size"] == BIN and handle.attrs["bins"] == BINS and handle.attrs["offset_bins"] == 2
        assert handle.attrs["units"] == "coverage x scale"
        assert handle["regions/bins_start"][0] == span_start and handle["regions/num_bins"][0] == BINS
        stored = handle["human/predictions"][0]
        assert stored.dtype == np.float32
        assert list(handle["human/tracks/strand_pair"][:]) == list(PAIRS)
    # The input starts two cropped bins before the output; its RC pass swaps + and -, then calico's untransform.
    model_output = direct(models[0], Genome(root / "genome.fa"), span_start - 2 * BIN)
    np.testing.assert_allclose(stored, calico_untransform(model_output, TABLE), rtol=1e-5, atol=1e-6)
    assert (model_output / TABLE["scale"].to_numpy() > TABLE["clip_soft"].to_numpy()).any(axis=0).all()  # clips met

    import pybigtools

    # The bigWig is on the genome's 32-bp grid: 1,602 is 2 bp past it, so grid bin g holds 30/32 of bin
    # g - 50 and 2/32 of bin g - 51 (their overlaps with it), and one grid bin more than the prediction.
    records = list(pybigtools.open(str(root / "tracks" / "human_1_RNA1-.bw")).records("chr1"))
    first = span_start // BIN
    assert [(start, end) for start, end, _ in records] == [(BIN * g, BIN * (g + 1)) for g in range(first, first + BINS + 1)]
    column = np.concatenate([[0.0], stored[:, 1].astype(np.float64), [0.0]])
    weights = np.concatenate([[0.0], np.ones(BINS), [0.0]])
    late, early = 2 / BIN, 30 / BIN  # the share of grid bin g in bin g - 51 and in bin g - 50
    expected = (late * column[:-1] + early * column[1:]) / (late * weights[:-1] + early * weights[1:])
    np.testing.assert_allclose([value for _, _, value in records], expected, rtol=1e-6)


def test_read_prediction_and_tracks_take_the_borzoi_table(borzoi_run):
    root, _, _ = borzoi_run
    prediction = read_prediction(root / "cov.h5", tracks=["RNA1-", "DNASE:K562"])
    assert prediction.bin_size == BIN and list(np.diff(prediction.positions[:3])) == [BIN, BIN]
    assert list(prediction.tracks["human"]["identifier"]) == ["RNA1-", "DNASE1"] and prediction.units == "coverage x scale"
    # A file of model outputs read as coverage: the same rule on its float16 values.
    model_file = read_prediction(root / "model.h5")
    assert model_file.units == "model output"
    as_coverage = read_prediction(root / "model.h5", coverage=True)
    np.testing.assert_allclose(as_coverage.values["human"], calico_untransform(model_file.values["human"].astype(np.float64), TABLE),
                               rtol=1e-5)
    np.testing.assert_allclose(as_coverage.values["human"], read_prediction(root / "cov.h5").values["human"], rtol=5e-3)
    assert read_prediction(root / "model.h5", coverage=True, unscale=True).units == "coverage"
    with pytest.raises(UserError, match="holds coverage x scale, not coverage"):
        read_prediction(root / "cov.h5", coverage=True, unscale=True)


def test_plot_draws_stranded_pairs_in_one_panel(borzoi_run, capsys):
    root, _, _ = borzoi_run
    table = read_prediction(root / "cov.h5", tracks=["RNA", "CAGE1"]).tracks["human"]
    assert track_panels(table) == [(0, 1), (2, 3), (4,)]  # + above, - mirrored below; CAGE alone
    assert track_panels(table.iloc[[1, 0, 4]].reset_index(drop=True)) == [(1, 0), (2,)]  # + first, whatever the order
    assert track_panels(table.iloc[[1, 4]].reset_index(drop=True)) == [(0,), (1,)]  # one strand alone
    out = root / "plot.png"
    assert main(["plot", str(root / "model.h5"), "--tracks", "RNA1", "DNASE", "--coverage", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and "wrote" in capsys.readouterr().out


def test_coverage_needs_a_squashed_scale(borzoi_run, tmp_path, capsys):
    root, _, common = borzoi_run
    code = main([str(a) for a in ["predict", "--weights", root / "w0", "--region", "chr1:2,000-2,100", "--coverage",
                                  "--out", tmp_path / "x.h5", *common[:4], "--no-progress"]])
    assert code == 2 and "squashed scale needs column(s) clip_soft, scale, sum_stat" in capsys.readouterr().err
    assert main(["predict", "--weights", str(root / "w0"), "--region", "chr1:2,000-2,100", "--unscale", "--fasta",
                 str(root / "genome.fa"), "--out", str(tmp_path / "y.h5")]) == 2
    assert "--unscale applies to --coverage" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_ensemble_is_the_mean_of_its_members(borzoi_run, tmp_path, capsys, monkeypatch):
    root, models, common = borzoi_run
    region = ["--region", "chr1:3,000-4,200"]  # longer than one output window: tiled and stitched
    weights = f"{root / 'w0'},{root / 'w1'}"
    assert main([str(a) for a in ["predict", "--weights", weights, "--ensemble", *region, "--rc", "--out",
                                  tmp_path / "mean.h5", *common]]) == 0
    for number in range(2):
        assert main([str(a) for a in ["predict", "--weights", root / f"w{number}", *region, "--rc", "--out",
                                      tmp_path / f"m{number}.h5", *common]]) == 0
    mean = read_prediction(tmp_path / "mean.h5").values["human"]
    members = [read_prediction(tmp_path / f"m{number}.h5").values["human"] for number in range(2)]
    assert mean.shape == (BINS + 10, 6)  # 1,200 bp: 38 bins
    np.testing.assert_allclose(mean, (members[0] + members[1]) / 2, rtol=2e-3, atol=1e-3)  # float16 files
    # A name stands for its replicates (hub.replicates: borzoi's four; here the two files twice).
    import senformer.hub

    monkeypatch.setattr(senformer.hub, "replicates", lambda name: [str(root / f"w{k % 2}") for k in range(4)])
    assert main([str(a) for a in ["predict", "--weights", "tiny-borzoi", "--ensemble", *region, "--rc", "--out",
                                  tmp_path / "named.h5", *common]]) == 0
    np.testing.assert_allclose(read_prediction(tmp_path / "named.h5").values["human"], mean, rtol=2e-3, atol=1e-4)
    monkeypatch.undo()
    # In memory (float32, no file): the ensemble's passes average to the members' mean.
    from senformer.model.ensemble import Ensemble
    from senformer.predict import PredictOptions, predict_regions

    options = PredictOptions(sequence_length=LENGTH, reverse_complement=True, targets=str(root / "targets.txt"))
    together, = predict_regions(Ensemble(models), root / "genome.fa", ["chr1:3,000-4,200"], options)
    alone = [predict_regions(model, root / "genome.fa", ["chr1:3,000-4,200"], options)[0] for model in models]
    np.testing.assert_allclose(together.values["human"], (alone[0].values["human"] + alone[1].values["human"]) / 2,
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="member 2 differs from the first in output_heads"):
        Ensemble([models[0], Borzoi(models[0].config.replace(output_heads={"human": 5}))])
    # The fingerprint covers every member: another second member is another result.
    swapped = f"{root / 'w0'},{root / 'w0'}"
    assert main([str(a) for a in ["predict", "--weights", swapped, "--ensemble", *region, "--rc", "--out",
                                  tmp_path / "mean.h5", *common]]) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err
    with h5py.File(tmp_path / "mean.h5") as handle, h5py.File(tmp_path / "m0.h5") as single:
        assert handle.attrs["fingerprint"] != single.attrs["fingerprint"]
    for argv, message in (([root / "w0", "--ensemble"], "is one model; give --weights a comma-separated list"),
                          ([weights], "several weights are averaged with --ensemble")):
        assert main([str(a) for a in ["predict", "--weights", *argv, *region, "--out", tmp_path / "z.h5", *common]]) == 2
        assert message in capsys.readouterr().err
