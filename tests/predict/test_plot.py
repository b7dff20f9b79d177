"""Reading a predict output in memory and ``senformer plot``: the region's values, str metadata, the figure."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers import tiny_model, write_random_chromosome

from senformer import save_model
from senformer.cli import main
from senformer.errors import UserError
from senformer.predictions import list_regions, read_prediction


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    write_random_chromosome(root / "genome.fa", 6_000, seed=2)
    (root / "regions.bed").write_text("chr1\t1000\t1100\tpeak1\nchr1\t3000\t3300\tpeak2\n")
    save_model(tiny_model(seed=4), root / "weights")
    assert main(["predict", "--weights", str(root / "weights"), "--fasta", str(root / "genome.fa"), "--regions",
                 str(root / "regions.bed"), "--length", "1024", "--no-progress", "--out", str(root / "p.h5")]) == 0
    return root


def test_read_prediction_returns_one_region_with_str_metadata(predicted):
    path = predicted / "p.h5"
    regions = list_regions(path)
    assert list(regions["name"]) == ["peak1", "peak2"] and isinstance(regions["chrom"][0], str)
    with h5py.File(path) as handle:
        stored = handle["human/predictions"][1, : handle["regions/num_bins"][1]].astype(np.float32)
        bins_start = int(handle["regions/bins_start"][1])
    for region in (1, "1", "peak2", "chr1:3,100-3,200"):
        second = read_prediction(path, region=region)
        np.testing.assert_array_equal(second.values["human"], stored)
        assert second.region.name == "peak2" and second.bins_start == bins_start
        assert second.positions[1] - second.positions[0] == 128
    chosen = read_prediction(path, region="peak2", tracks=["1-2"])
    np.testing.assert_array_equal(chosen.values["human"], stored[:, 1:3])
    assert list(chosen.tracks["human"]["identifier"]) == ["human-1", "human-2"]
    assert all(isinstance(v, str) for v in chosen.tracks["mouse"]["identifier"])
    only_human = read_prediction(path, tracks=["3-4"])  # mouse has 3 tracks: out of range there, so left out
    assert list(only_human.values) == ["human"]
    for region, message in ((7, "holds 2 regions"), ("chr2:1-10", "no region named or overlapping")):
        with pytest.raises(UserError, match=message):
            read_prediction(path, region=region)
    with pytest.raises(UserError, match="no track matches .no-such-track."):
        read_prediction(path, tracks=["no-such-track"])


def test_plot_command_draws_png_and_pdf_with_an_experiment(predicted, capsys):
    pybigtools = pytest.importorskip("pybigtools")
    signal = predicted / "signal.bw"
    writer = pybigtools.open(str(signal), "w")
    writer.write({"1": 6000}, [("1", 3000, 3100, 2.0)])  # Ensembl naming: matched to chr1
    png = predicted / "peak2.png"
    assert main(["plot", str(predicted / "p.h5"), "--region", "peak2", "--tracks", "0", "human-3",
                 "--bigwig", f"dnase={signal}", "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG") and "wrote" in capsys.readouterr().out
    pdf = predicted / "peak1.pdf"
    assert main(["plot", str(predicted / "p.h5"), "--head", "mouse", "--out", str(pdf)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF")
    assert main(["plot", str(predicted / "p.h5"), "--out", str(predicted / "x.svg")]) == 2
    assert "must be .png or .pdf" in capsys.readouterr().err
    assert main(["plot", str(predicted / "absent.h5"), "--out", str(png)]) == 2


def test_binned_signal_averages_over_the_prediction_bins(tmp_path):
    pybigtools = pytest.importorskip("pybigtools")
    from senformer.data.bigwig import binned_signal

    path = tmp_path / "s.bw"
    writer = pybigtools.open(str(path), "w")
    writer.write({"chr1": 1000}, [("chr1", 100, 164, 4.0)])
    np.testing.assert_allclose(binned_signal(path, "chr1", 0, 3, 128), [4.0 * 28 / 128, 4.0 * 36 / 128, 0.0])
    np.testing.assert_allclose(binned_signal(path, "1", 128, 2, 64), [4.0 * 36 / 64, 0.0])


def test_predict_regions_in_memory_equals_the_file(predicted):
    from senformer import load_model
    from senformer.predict import PredictOptions, predict_regions

    model = load_model(predicted / "weights")
    options = PredictOptions(sequence_length=1024, tracks=("1-2",))
    first, second = predict_regions(model, predicted / "genome.fa", ["chr1:1000-1100", "chr1:3,000-3,300"], options)
    on_disk = read_prediction(predicted / "p.h5", region="peak2")
    assert second.bins_start == on_disk.bins_start and second.region.chrom == "chr1"
    assert second.values["human"].dtype == np.float32 and list(second.tracks["human"]["index"]) == [1, 2]
    # the file stores float16 of the same float32 values
    np.testing.assert_array_equal(second.values["human"].astype(np.float16).astype(np.float32),
                                  on_disk.values["human"][:, 1:3])
    assert first.values["human"].shape == (8, 2) and set(first.values) == {"human", "mouse"}
    with pytest.raises(UserError, match="runs off chr1"):
        predict_regions(model, predicted / "genome.fa", ["chr1:5,990-6,100"], options)


def test_rows_that_were_never_computed_are_refused_not_drawn(predicted, tmp_path, capsys):
    """A partial or damaged file's unwritten rows hold the NaN fill: plot and read_prediction say so in one line."""
    import shutil

    partial = tmp_path / "p.h5.partial"
    shutil.copy(predicted / "p.h5", partial)
    with h5py.File(partial, "a") as handle:
        handle.attrs["completed"] = 1  # a run stopped after its first row
    assert read_prediction(partial, region="peak1").values["human"].shape[0] > 0
    with pytest.raises(UserError, match="peak2 .row 1. was never computed: the file holds 1 of its 2 rows"):
        read_prediction(partial, region="peak2")
    damaged = tmp_path / "damaged.h5"
    shutil.copy(predicted / "p.h5", damaged)
    with h5py.File(damaged, "a") as handle:
        handle["human/predictions"][0, 3, 2] = np.nan  # a row whose write was lost
    assert main(["plot", str(damaged), "--region", "peak1", "--out", str(tmp_path / "peak1.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no finite prediction for head human track human-2 at bin 3" in error
    assert not (tmp_path / "peak1.png").exists()
