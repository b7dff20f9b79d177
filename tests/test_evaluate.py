"""Evaluation end to end: synthetic tiny data -> BasenjiDataset -> models -> metrics files, against numpy."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import strand_passes, tiny_borzoi, tiny_model
from senformer.cli import main
from senformer.data.basenji import BasenjiDataset
from senformer.data.synthetic import make_synthetic
from senformer.evaluate import evaluate
from senformer.sequence import reverse_complement
from senformer import save_model

TRACKS = 8  # the tiny synthetic dataset
BINS = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("evaluate") / "tiny", "tiny", seed=0)


def _model(seed):
    return tiny_model(seed, output_heads={"human": TRACKS}, target_length=BINS)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return {name: save_model(_model(seed), root / name) for name, seed in (("alpha", 1), ("beta", 2))}


def _direct_predictions(model, data, rc=False, batch_size=1):
    """The model called by hand on batches of the test split (float32 results depend on the batching)."""
    examples = list(BasenjiDataset(data, "test"))
    predictions, targets = [], []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            sequence = torch.stack([example["sequence"] for example in batch])
            prediction = model(sequence)["human"]
            if rc:
                prediction = (prediction + model(reverse_complement(sequence))["human"].flip(1)) / 2
            predictions.extend(prediction.double().numpy())
            targets.extend(example["target"].double().numpy() for example in batch)
    return np.stack(predictions), np.stack(targets)


def test_pooled_and_per_example_pearson_equal_numpy(data):
    model = _model(1)
    result = evaluate({"alpha": model}, BasenjiDataset(data, "test"), "human", batch_size=3, progress=False)
    pred, target = _direct_predictions(model, data, batch_size=3)
    alpha = result.models["alpha"]
    assert result.examples == 4 and list(alpha.example_index) == [0, 1, 2, 3]
    for track in range(TRACKS):
        expected = np.corrcoef(pred[..., track].ravel(), target[..., track].ravel())[0, 1]
        assert alpha.pooled[track] == pytest.approx(expected, abs=1e-5)
        for example in range(4):
            with np.errstate(invalid="ignore", divide="ignore"):
                expected = np.corrcoef(pred[example, :, track], target[example, :, track])[0, 1]
            np.testing.assert_allclose(alpha.per_example[example, track], expected, atol=2e-4, equal_nan=True)
    assert np.isnan(alpha.per_example).sum() > 0  # the tiny data has constant (example, track) pairs
    table = result.per_assay().set_index("assay_group")
    assert list(table.index) == ["DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE", "all"]
    assert table.loc["all", "pooled_alpha"] == pytest.approx(np.nanmean(alpha.pooled))
    assert table.loc["CAGE", "pooled_alpha"] == pytest.approx(np.nanmean(alpha.pooled[[3, 7]]))
    assert result.settings["flanks"] == "none" and result.settings["split"] == "test"


def test_reverse_complement_averaging_and_max_examples(data):
    model = _model(1)
    result = evaluate({"m": model}, BasenjiDataset(data, "test"), "human", rc_average=True, max_examples=3,
                      batch_size=2, progress=False)
    pred, target = _direct_predictions(model, data, rc=True, batch_size=2)
    pred, target = pred[:3], target[:3]
    expected = [np.corrcoef(pred[..., t].ravel(), target[..., t].ravel())[0, 1] for t in range(TRACKS)]
    # Example 2 runs alone here and beside example 3 by hand: float32 batching moves a Pearson by ~1e-5; a
    # wrong strand or count would move it by ~0.1.
    np.testing.assert_allclose(result.models["m"].pooled, expected, atol=5e-5)
    assert result.examples == 3 and result.settings["rc_average"] is True


def test_rc_averaged_metrics_are_exactly_those_of_the_model_called_by_hand(data):
    """The same batches through the model by hand, (forward + reverse) / 2 in float32, give bit-identical
    pooled and per-example Pearson."""
    from senformer.metrics import StreamingPearson, per_example_pearson

    model = _model(2)
    result = evaluate({"m": model}, BasenjiDataset(data, "test"), "human", rc_average=True, batch_size=3,
                      progress=False).models["m"]
    examples = list(BasenjiDataset(data, "test"))
    pooled, per_example = StreamingPearson(TRACKS), []
    with torch.no_grad():
        for start in range(0, len(examples), 3):
            batch = examples[start : start + 3]
            sequence = torch.stack([example["sequence"] for example in batch])
            target = torch.stack([example["target"] for example in batch])
            forward, reverse = strand_passes(model, sequence)
            prediction = (forward["human"] + reverse["human"].flip(1)) / 2
            pooled.update(prediction, target)
            per_example.append(per_example_pearson(prediction, target))
    np.testing.assert_array_equal(result.pooled, pooled.compute())
    np.testing.assert_array_equal(result.per_example, np.concatenate(per_example))


def test_bf16_runs_and_is_recorded(data, monkeypatch):
    # A random tiny model's correlations are near 0, so bf16 rounding moves them visibly; only check sanity.
    import senformer.device

    monkeypatch.setattr(senformer.device, "bf16_supported", lambda device="cpu", **_: True)  # bf16 on any CPU
    model = _model(1)
    dataset = BasenjiDataset(data, "test", max_examples=2)
    exact = evaluate({"m": model}, dataset, "human", progress=False)
    bf16 = evaluate({"m": model}, dataset, "human", bf16=True, progress=False)
    assert bf16.settings["bf16"] is True and exact.settings["bf16"] is False
    # bf16's coarse grid can flatten a near-constant track of this random model to one value over the two
    # examples: its Pearson is then undefined (NaN, as evaluation reports it), never infinite.
    pooled = bf16.models["m"].pooled
    assert not np.isinf(pooled).any() and np.isfinite(pooled).sum() >= len(pooled) - 2
    assert not np.array_equal(bf16.models["m"].pooled, exact.models["m"].pooled)


@pytest.mark.slow
def test_cli_compares_two_models_and_writes_every_output(data, weights, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--data", str(data), "--split", "test", "--weights", str(weights["alpha"]),
                 "--weights", f"second={weights['beta']}", "--out", str(out), "--batch-size", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.png", "metrics.json", "per_assay.csv", "per_example_alpha.npz", "per_example_second.npz", "per_track.csv",
        "run.json",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == 4 and metrics["flanks"] == "none"
    assert metrics["tracks"] == {"DNase/ATAC": 2, "ChIP-Histone": 2, "ChIP-TF": 2, "CAGE": 2}
    alpha, second = metrics["models"]["alpha"], metrics["models"]["second"]
    assert set(alpha["pooled_pearson"]["per_assay"]) == {"DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE"}
    difference = metrics["differences"]["second - alpha"]["pooled"]["all"]
    assert difference == pytest.approx(second["pooled_pearson"]["mean"] - alpha["pooled_pearson"]["mean"])
    per_track = pd.read_csv(out / "per_track.csv")
    assert list(per_track.columns[:4]) == ["index", "identifier", "description", "assay_group"]
    assert per_track["pooled_alpha"].mean() == pytest.approx(alpha["pooled_pearson"]["mean"])
    per_assay = pd.read_csv(out / "per_assay.csv")
    assert "pooled_second_minus_alpha" in per_assay.columns and len(per_assay) == 5
    arrays = np.load(out / "per_example_second.npz")
    assert arrays["pearson"].shape == (4, TRACKS) and list(arrays["example_index"]) == [0, 1, 2, 3]
    # Same model, same numbers as the Python API.
    direct = evaluate({"alpha": _model(1)}, BasenjiDataset(data, "test"), "human", progress=False)
    np.testing.assert_allclose(per_track["pooled_alpha"], direct.models["alpha"].pooled, atol=1e-4)  # batch 2 vs 1: float32 order
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_labels_zero_flanks(data, weights, tmp_path, capsys):
    out = tmp_path / "flanks"
    assert main(["evaluate", "--data", str(data), "--weights", str(weights["alpha"]), "--out", str(out),
                 "--length", "6144", "--max-examples", "2", "--no-progress"]) == 0
    assert "ZERO flanks" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["flanks"] == "zeros" and "ZERO flanks" in metrics["input"] and metrics["examples"] == 2


def test_cli_user_errors(data, tmp_path, capsys):
    wrong = save_model(tiny_model(0, output_heads={"human": 5}, target_length=BINS), tmp_path / "wrong")
    assert main(["evaluate", "--data", str(data), "--weights", str(wrong), "--out", str(tmp_path / "o")]) == 2
    assert "predicts 5 tracks" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path), "--weights", str(wrong), "--out", str(tmp_path / "o")]) == 2
    assert "no statistics.json" in capsys.readouterr().err


def test_evaluate_on_each_device_matches_cpu(data, device):
    if device.type == "cpu":
        pytest.skip("compares another device with the CPU")
    model = _model(1)
    dataset = BasenjiDataset(data, "test")
    on_cpu = evaluate({"m": model}, dataset, "human", progress=False).models["m"]
    on_device = evaluate({"m": _model(1)}, dataset, "human", device=device, progress=False).models["m"]
    np.testing.assert_allclose(on_device.pooled, on_cpu.pooled, atol=2e-3)
    np.testing.assert_allclose(on_device.per_example, on_cpu.per_example, atol=2e-2, equal_nan=True)


def test_a_non_finite_prediction_is_an_error_naming_the_example(data):
    from senformer.errors import UserError

    model = _model(1)
    with torch.no_grad():
        model.heads["human"].bias[2] = float("nan")
    with pytest.raises(UserError, match=r"model 'broken' predicts a non-finite value for example 0 of the split"):
        evaluate({"broken": model}, BasenjiDataset(data, "test", max_examples=2), "human", progress=False)


@pytest.mark.slow
def test_basenji_length_records_are_evaluated_at_their_own_length_by_default(weights, tmp_path, capsys):
    """evaluate, analyze and train agree: without --length the records are read as stored (131,072 bp for
    Basenji2's); evaluate used to extend them to 196,608 bp with zero flanks."""
    data = make_synthetic(tmp_path / "basenji", "tiny", seed=0, sequence_length=131_072, crop_bp=8192,
                          train=1, valid=1, test=1)
    out = tmp_path / "own"
    assert main(["evaluate", "--data", str(data), "--weights", str(weights["alpha"]), "--out", str(out),
                 "--max-examples", "1", "--no-progress"]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["flanks"] == "none" and metrics["sequence_length"] == 131_072


def test_an_unfinished_dataset_is_refused_in_one_line(data, weights, tmp_path, capsys):
    """A dataset still at ``OUT.partial`` (a killed `data synthetic`/`from-bigwig`) may lack records: it is
    never scored, and a missing dataset whose partial lies beside it says how to finish it."""
    import shutil

    partial = tmp_path / "tiny.partial"
    shutil.copytree(data, partial)
    for given in (partial, tmp_path / "tiny"):
        out = tmp_path / f"eval-{given.name}"
        code = main(["evaluate", "--data", str(given), "--weights", str(weights["alpha"]), "--out", str(out),
                     "--no-progress"])
        error = capsys.readouterr().err.strip()
        assert code == 2 and len(error.splitlines()) == 1, error
        assert str(given) in error and "unfinished" in error and "again to finish it" in error
        assert not out.exists() and not (tmp_path / f"eval-{given.name}.partial").exists()


def test_per_assay_and_metrics_list_rna_in_group_order():
    from senformer.evaluate import EvaluationResult, ModelResult

    groups = ["RNA", "CAGE", "other", "DNase/ATAC", "RNA"]
    tracks = pd.DataFrame({"index": range(5), "identifier": list("abcde"), "description": [""] * 5,
                           "assay_group": groups})
    pooled = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    result = EvaluationResult({"m": ModelResult("m", pooled, pooled[None], np.array([0]), 0.0)}, tracks, 1)
    table = result.per_assay().set_index("assay_group")
    assert list(table.index) == ["DNase/ATAC", "CAGE", "RNA", "other", "all"]
    assert table.loc["RNA", "tracks"] == 2 and table.loc["RNA", "pooled_m"] == pytest.approx(0.3)
    metrics = result.metrics()
    assert list(metrics["tracks"]) == ["DNase/ATAC", "CAGE", "RNA", "other"] and metrics["tracks"]["RNA"] == 2
    assert metrics["models"]["m"]["pooled_pearson"]["per_assay"]["RNA"] == pytest.approx(0.3)


class _Split(list):
    """Examples as evaluate() reads a dataset: a folder holding its targets.txt, and the track count."""

    def __init__(self, examples, directory):
        super().__init__(examples)
        self.directory, self.num_targets = str(directory), examples[0]["target"].shape[-1]


def _borzoi_split(folder, pairs):
    """Two random 1,024-bp examples for a tiny Borzoi's 2,608-track mouse head, in ``folder`` whose targets.txt
    is the shipped mouse table with ``pairs`` as its strand_pair column."""
    from senformer.data.borzoi_targets import borzoi_track_table
    from senformer.sequence import one_hot

    folder.mkdir(exist_ok=True)
    table = borzoi_track_table("mouse").drop(columns="assay_group").assign(strand_pair=pairs)
    table.to_csv(folder / "targets.txt", sep="\t", index=False)
    rng = np.random.default_rng(3)
    return _Split([{"sequence": one_hot("".join(rng.choice(list("ACGT"), 1024))),
                    "target": torch.from_numpy(rng.random((28, 2608), dtype=np.float32)), "index": index}
                   for index in range(2)], folder)


def test_rc_average_reads_stranded_tracks_by_the_datasets_strand_pairs(tmp_path):
    """The dataset's targets.txt pairs rows 0-3 otherwise than the shipped mouse table (0-1, 2-3): its pairs,
    not the shipped ones, swap the reverse pass's tracks; a broken column is one line naming file and row."""
    from senformer.data.borzoi_targets import borzoi_track_table
    from senformer.errors import UserError

    model = tiny_borzoi(seed=1, output_heads={"mouse": 2608})
    pairs = np.arange(2608)
    pairs[:4] = [2, 3, 0, 1]
    shipped = np.array(borzoi_track_table("mouse")["strand_pair"])
    assert list(shipped[:4]) == [1, 0, 3, 2]
    split = _borzoi_split(tmp_path / "data", pairs)
    seen = []
    evaluate({"b": model}, split, "mouse", rc_average=True, batch_size=2, progress=False,
             on_predictions=lambda predictions, target: seen.append(predictions["b"]))
    with torch.no_grad():
        forward, reverse = strand_passes(model, torch.stack([example["sequence"] for example in split]))
    expected = (forward["mouse"] + reverse["mouse"].flip(1)[..., pairs]) / 2
    torch.testing.assert_close(seen[0], expected, rtol=1e-6, atol=0)
    by_shipped = (forward["mouse"] + reverse["mouse"].flip(1)[..., shipped]) / 2
    assert (seen[0][..., :4] - by_shipped[..., :4]).abs().max() > 1e-2 * by_shipped[..., :4].abs().max()

    broken = pairs.copy()
    broken[5] = 0  # row 0 already pairs with row 2
    folder = tmp_path / "broken"
    where = re.escape(str(folder / "targets.txt"))
    with pytest.raises(UserError, match=rf"^{where}: row 5 \(track '.*'\) pairs with row 0, "
                                        "which does not pair back"):
        evaluate({"b": model}, _borzoi_split(folder, broken), "mouse", rc_average=True, progress=False)
    with pytest.raises(UserError, match=rf"^{where}: row 7 .* has strand_pair='x'"):
        evaluate({"b": model}, _borzoi_split(folder, [*range(7), "x", *range(8, 2608)]), "mouse", progress=False)
