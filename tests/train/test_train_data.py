"""Batches, shards, augmentation and the pooled validation statistic."""

import numpy as np
import pytest
import torch
from train_support import examples

from senformer.errors import UserError
from senformer.sequence import reverse_complement
from senformer.train import BatchStream, CrossRankBatchNorm, InMemoryExamples, augment, convert_batchnorm
from senformer.metrics import StreamingPearson
from senformer.train.validation import all_reduce_pearson, summarise, track_groups


def _indices(stream, batches):
    return [stream.next_batch()["index"].tolist() for _ in range(batches)]


def test_stream_resumes_at_its_position_across_epochs():
    source = examples(10, 3, seed=0)
    straight = BatchStream(source, 3, seed=1, max_shift=3, reverse=True)
    first = [straight.next_batch() for _ in range(5)]  # crosses into epoch 1 (10 examples, batch 3)
    assert straight.state_dict() == {"epoch": 1, "position": 5}
    resumed = BatchStream(source, 3, seed=1, max_shift=3, reverse=True)
    for _ in range(2):
        resumed.next_batch()
    state = resumed.state_dict()
    fresh = BatchStream(source, 3, seed=1, max_shift=3, reverse=True)
    fresh.load_state_dict(state)
    for expected in first[2:]:
        got = fresh.next_batch()
        assert torch.equal(expected["index"], got["index"]) and torch.equal(expected["sequence"], got["sequence"])
        assert torch.equal(expected["target"], got["target"])


def test_epochs_are_permutations_and_ranks_split_the_global_batch():
    source = examples(12, 3, seed=0)
    one = BatchStream(source, 4, seed=2)
    epoch = sum(_indices(one, 3), [])
    assert sorted(epoch) == list(range(12)) and epoch != list(range(12))
    ranks = [BatchStream(source, 2, rank=r, world_size=2, seed=2) for r in range(2)]
    for expected in _indices(BatchStream(source, 4, seed=2), 3):
        assert sorted(sum((r.next_batch()["index"].tolist() for r in ranks), [])) == sorted(expected)


def test_augmentation_depends_only_on_seed_epoch_and_example():
    source = examples(6, 3, seed=0)
    single = BatchStream(source, 6, seed=3, max_shift=3, reverse=True).next_batch()
    ranks = [BatchStream(source, 3, rank=r, world_size=2, seed=3, max_shift=3, reverse=True).next_batch() for r in range(2)]
    by_index = {int(i): s for batch in ranks for i, s in zip(batch["index"], batch["sequence"])}
    for index, sequence in zip(single["index"], single["sequence"]):
        assert torch.equal(by_index[int(index)], sequence)
    raw = {e["index"]: e["sequence"] for e in source.examples(0, shuffle=False)}
    assert any(not torch.equal(raw[int(i)], s) for i, s in zip(single["index"], single["sequence"]))


def test_augment_reverse_complements_with_the_target_and_shifts_with_n_padding():
    sequence = torch.eye(4)[torch.tensor([0, 1, 2, 3, 3, 0, 1, 2])]
    target = torch.arange(6.0).view(3, 2)
    flips = {}
    for seed in range(20):
        out_sequence, out_target = augment(sequence, target, 0, True, torch.Generator().manual_seed(seed))
        flipped = not torch.equal(out_sequence, sequence)
        if flipped:
            assert torch.equal(out_sequence, reverse_complement(sequence)) and torch.equal(out_target, target.flip(0))
        flips[flipped] = True
    assert flips == {True: True, False: True}
    shifted, same_target = augment(sequence, target, 2, False, torch.Generator().manual_seed(0))
    assert torch.equal(same_target, target)
    offset = next(k for k in range(-2, 3) if torch.equal(shifted, _shift(sequence, k)))
    assert shifted.shape == sequence.shape and (offset == 0 or shifted.sum() == 8 - abs(offset))


def _shift(sequence, offset):
    out = torch.zeros_like(sequence)
    if offset >= 0:
        out[offset:] = sequence[: len(sequence) - offset]
    else:
        out[:offset] = sequence[-offset:]
    return out


def test_a_rank_without_examples_is_a_clear_error():
    stream = BatchStream(examples(1, 3, seed=0), 1, rank=1, world_size=2)
    with pytest.raises(UserError, match="rank 1 of 2 has no training examples"):
        stream.next_batch()


def test_in_memory_examples_check_their_shapes():
    with pytest.raises(ValueError, match="3 sequences but 2 targets"):
        InMemoryExamples(torch.zeros(3, 8, dtype=torch.long), torch.zeros(2, 1, 1))


def test_pooled_pearson_equals_numpy_over_all_examples_and_bins():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.rand(6, 5, 4, generator=generator)
    targets = predictions * torch.tensor([1.0, -1.0, 0.0, 2.0]) + 0.3 * torch.rand(6, 5, 4, generator=generator)
    targets[..., 2] = 1.0  # a constant track: NaN, ignored by the means
    sums = StreamingPearson(4)
    for start in range(0, 6, 4):  # uneven batches
        sums.update(predictions[start:start + 4], targets[start:start + 4])
    r = all_reduce_pearson(sums).compute()  # one process: the sums are unchanged
    for track in (0, 1, 3):
        expected = np.corrcoef(predictions[..., track].flatten(), targets[..., track].flatten())[0, 1]
        assert r[track] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(r[2])
    summary = summarise(r, {"up": [0, 3], "down": [1], "flat": [2]})
    assert summary["pearson"] == pytest.approx(np.mean(r[[0, 1, 3]]))
    assert summary["pearson/up"] == pytest.approx(np.mean(r[[0, 3]])) and np.isnan(summary["pearson/flat"])


def test_track_groups_from_targets_and_synthetic_metadata(tmp_path):
    from senformer.data.synthetic import make_synthetic

    directory = make_synthetic(tmp_path / "data", size="tiny")
    groups = track_groups(directory, 8)
    assert list(groups) == ["DNase/ATAC", "ChIP-Histone", "ChIP-TF", "CAGE", "long-range"]
    assert sorted(sum((groups[g] for g in list(groups)[:4]), [])) == list(range(8))
    assert groups["long-range"] and set(groups["long-range"]) <= set(groups["ChIP-Histone"]) | set(groups["CAGE"])
    assert track_groups(directory, 9) == {} and track_groups(None, 8) == {}


def test_cross_rank_batchnorm_is_batchnorm_in_one_process():
    generator = torch.Generator().manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv1d(3, 6, 1), torch.nn.BatchNorm1d(6), torch.nn.BatchNorm1d(6))
    plain[1].running_mean.normal_(generator=generator)
    converted = convert_batchnorm(__import__("copy").deepcopy(plain))
    assert all(isinstance(m, CrossRankBatchNorm) for m in converted[1:])
    assert converted.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(4, 3, 10, generator=generator)
    for mode in (True, False):
        plain.train(mode), converted.train(mode)
        assert torch.allclose(plain(x), converted(x), atol=1e-6)
    for name, tensor in plain.state_dict().items():
        assert torch.allclose(tensor.float(), converted.state_dict()[name].float(), atol=1e-6), name
