"""Figure 6 comparison: scores per assay group, correlation, wins and ties."""

import numpy as np
import pytest
import torch

from helpers import randomize_, tiny_config, tiny_model
from senformer import Enformer
from senformer.analysis.common import default_tracks
from senformer.analysis.compare import compare_scores, group_scores, pearson, score_models
from senformer.errors import UserError


def in_memory_dataset(count: int, bp: int, bins: int, tracks: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for index in range(count):
        tokens = torch.randint(0, 4, (bp,), generator=generator)
        examples.append({
            "sequence": torch.eye(4)[tokens],
            "target": torch.rand(bins, tracks, generator=generator) * 5,
            "index": index,
            "interval": f"chr1:{index * bp}-{(index + 1) * bp}",
        })
    return examples


def test_group_scores_average_finite_tracks_per_group():
    scores = np.array([[0.2, 0.4, np.nan, 1.0], [0.0, np.nan, np.nan, 0.5]])
    result = group_scores(scores, ["DNase/ATAC", "DNase/ATAC", "CAGE", "CAGE"])
    assert list(result) == ["DNase/ATAC", "CAGE", "all"]
    np.testing.assert_allclose(result["DNase/ATAC"], [0.3, 0.0])
    np.testing.assert_allclose(result["CAGE"], [1.0, 0.5])
    np.testing.assert_allclose(result["all"], [(0.2 + 0.4 + 1.0) / 3, 0.25])
    with pytest.raises(ValueError, match="3 tracks"):
        group_scores(scores, ["a", "b", "c"])


def test_compare_of_scores_with_themselves_is_correlation_one_and_all_ties():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 0.9, size=(40, 6))
    groups = ["CAGE", "CAGE", "ChIP-TF", "ChIP-TF", "ChIP-Histone", "DNase/ATAC"]
    table = compare_scores(scores, scores.copy(), groups, ("enformer", "senformer"))
    assert list(table["group"]) == ["CAGE", "ChIP-TF", "ChIP-Histone", "DNase/ATAC", "all"]
    np.testing.assert_allclose(table["correlation"], 1.0, atol=1e-12)
    assert (table["ties"] == 40).all() and (table["enformer_wins"] == 0).all() and (table["senformer_wins"] == 0).all()
    assert (table["tie_share"] == 1.0).all()


def test_compare_counts_wins_and_ties_apart():
    a = np.array([[0.5], [0.6], [0.7], [0.8], [np.nan]])
    b = np.array([[0.4], [0.6], [0.9], [0.8 + 5e-7], [0.1]])
    table = compare_scores(a, b, ["CAGE"], ("a", "b"), prediction_correlation=np.array([0.75]))
    row = table.iloc[0]
    assert row["examples"] == 4  # the NaN example is left out
    assert (row["a_wins"], row["b_wins"], row["ties"]) == (1, 1, 2)  # 5e-7 is within the tie tolerance
    assert row["a_win_share"] == 0.25 and row["tie_share"] == 0.5
    assert row["prediction_correlation"] == 0.75
    assert row["correlation"] == pytest.approx(pearson(a[:4, 0], b[:4, 0]))
    assert row["correlation"] == pytest.approx(np.corrcoef(a[:4, 0], b[:4, 0])[0, 1])


def test_compare_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        compare_scores(np.zeros((3, 2)), np.zeros((4, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="different names"):
        compare_scores(np.zeros((3, 2)), np.zeros((3, 2)), ["a", "b"], ("m", "m"))


def test_score_models_of_a_model_with_itself():
    model = tiny_model(seed=1)
    twin = randomize_(Enformer(tiny_config()), seed=1).eval()
    dataset = in_memory_dataset(5, 1024, 8, 5, seed=2)
    scores, between, index = score_models({"a": model, "b": twin}, dataset, "human", batch_size=2, progress=False)
    assert scores["a"].shape == (5, 5)
    np.testing.assert_array_equal(index, np.arange(5))
    np.testing.assert_allclose(between, 1.0, atol=1e-6)
    np.testing.assert_allclose(scores["a"], scores["b"], atol=1e-6)
    table = compare_scores(scores["a"], scores["b"], ["x", "x", "y", "y", "y"], ("a", "b"), prediction_correlation=between)
    np.testing.assert_allclose(table["correlation"], 1.0, atol=1e-9)
    assert (table["ties"] == 5).all()
    # a different model is not tied everywhere, and its scores are the per-example Pearson of its predictions
    other = tiny_model(seed=7)
    scores, between, _ = score_models({"a": model, "c": other}, dataset, "human", batch_size=3, progress=False)
    assert not np.allclose(scores["a"], scores["c"])
    with torch.no_grad():
        prediction = other(torch.stack([e["sequence"] for e in dataset]))["human"].numpy()
    target = torch.stack([e["target"] for e in dataset]).numpy()
    expected = [np.corrcoef(prediction[i, :, t], target[i, :, t])[0, 1] for i in range(5) for t in range(5)]
    np.testing.assert_allclose(scores["c"].ravel(), expected, atol=1e-5)


def test_score_models_are_an_evaluations_per_example_scores():
    from senformer.data.tracks import head_track_table
    from senformer.evaluate import evaluate

    models = {"a": tiny_model(seed=1), "b": tiny_model(seed=4)}
    dataset = in_memory_dataset(5, 1024, 8, 5, seed=3)
    scores, _, index = score_models(models, dataset, "human", batch_size=2, progress=False)
    evaluation = evaluate(models, dataset, "human", tracks=head_track_table("human", 5), batch_size=2, progress=False)
    for name in models:  # the same loop, so the same numbers, not merely close ones
        np.testing.assert_array_equal(scores[name], evaluation.models[name].per_example)
    np.testing.assert_array_equal(index, evaluation.models["a"].example_index)


def test_score_models_reports_a_shape_mismatch():
    with pytest.raises(UserError, match="the data has 4 tracks"):
        score_models({"a": tiny_model(0), "b": tiny_model(1)}, in_memory_dataset(2, 1024, 8, 4), "human",
                     progress=False)
    with pytest.raises(UserError, match="targets are"):
        score_models({"a": tiny_model(0), "b": tiny_model(1)}, in_memory_dataset(2, 1024, 6, 5), "human",
                     progress=False)


def test_default_tracks_are_the_first_of_each_group():
    assert default_tracks(["CAGE", "CAGE", "DNase/ATAC", "CAGE", "ChIP-TF"]) == [0, 2, 4]
