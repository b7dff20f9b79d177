"""Figure 7: chosen examples and tracks, and the over-prediction summary, against direct numpy."""

import numpy as np
import pytest
import torch

from helpers import tiny_model
from senformer.analysis.tracks import OverPrediction, collect_tracks
from test_compare_analysis import in_memory_dataset


def test_overprediction_per_track_and_group():
    prediction = np.array([[[1.0, 2.0], [3.0, 0.0]]])  # (1 example, 2 bins, 2 tracks)
    target = np.array([[[2.0, 1.0], [1.0, 1.0]]])
    summary = OverPrediction(2)
    summary.update(prediction, target)
    per_track = summary.per_track()
    np.testing.assert_allclose(per_track["ratio"], [4 / 3, 1.0])
    np.testing.assert_allclose(per_track["share_over"], [0.5, 0.5])
    per_group = summary.per_group(["CAGE", "CAGE"])
    assert list(per_group["group"]) == ["CAGE"]
    row = per_group.iloc[0]
    assert row["mean_predicted"] == 1.5 and row["mean_observed"] == 1.25
    assert row["ratio"] == pytest.approx(1.2) and row["share_over"] == 0.5
    split = summary.per_group(["CAGE", "DNase/ATAC"])
    assert list(split["group"]) == ["CAGE", "DNase/ATAC", "all"]
    assert split.iloc[2]["ratio"] == pytest.approx(1.2)


def test_collect_tracks_keeps_the_chosen_examples_and_sums_everything():
    models = {"a": tiny_model(seed=1), "b": tiny_model(seed=2)}
    dataset = in_memory_dataset(5, 1024, 8, 5, seed=3)
    chosen, summaries = collect_tracks(models, dataset, "human", tracks=[4, 0], examples=[3, 1], batch_size=2,
                                       progress=False)
    assert chosen.example_index == [1, 3] and chosen.intervals == ["chr1:1024-2048", "chr1:3072-4096"]
    sequences = torch.stack([e["sequence"] for e in dataset])
    targets = torch.stack([e["target"] for e in dataset]).numpy()
    arrays = chosen.arrays()
    assert arrays["target"].shape == (2, 8, 2)
    np.testing.assert_array_equal(arrays["target"], targets[[1, 3]][..., [4, 0]])
    for name, model in models.items():
        with torch.no_grad():
            prediction = model(sequences)["human"].numpy()
        np.testing.assert_allclose(arrays[f"prediction_{name}"], prediction[[1, 3]][..., [4, 0]], rtol=1e-5, atol=1e-6)
        per_track = summaries[name].per_track()
        np.testing.assert_allclose(per_track["ratio"], prediction.sum((0, 1)) / targets.sum((0, 1)), rtol=1e-5)
        np.testing.assert_allclose(per_track["share_over"], (prediction > targets).mean((0, 1)))


def test_collect_tracks_reports_missing_examples():
    dataset = in_memory_dataset(2, 1024, 8, 5)
    with pytest.raises(ValueError, match=r"\[4\] are beyond the 2 examples"):
        collect_tracks({"a": tiny_model(0)}, dataset, "human", tracks=[0], examples=[4], progress=False)
