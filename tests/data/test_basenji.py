"""Basenji2 directories: reading TensorFlow-written data, sharding, shuffling, checks and longer inputs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from senformer.data.basenji import (
    BasenjiDataset,
    BasenjiWriter,
    check_split,
    encode_example,
    read_statistics,
    split_files,
)
from senformer.data.batch import stack_examples
from senformer.data.tfrecord import TFRecordError, write_records
from senformer.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
TF_DIR = FIXTURES / "basenji_tf"


def test_reads_a_tensorflow_written_basenji_directory_exactly():
    expected = np.load(FIXTURES / "expected.npz")
    for split, size in (("train", 3), ("valid", 1), ("test", 2)):
        examples = list(BasenjiDataset(TF_DIR, split))
        assert [e["index"] for e in examples] == list(range(size))
        for number, example in enumerate(examples):
            assert example["sequence"].dtype == torch.float32 and example["sequence"].shape == (512, 4)
            assert example["target"].dtype == torch.float32 and example["target"].shape == (2, 3)
            np.testing.assert_array_equal(example["sequence"].numpy(), expected[f"basenji_{split}_sequence"][number])
            np.testing.assert_array_equal(example["target"].numpy(), expected[f"basenji_{split}_target"][number].astype(np.float32))
    first_test = next(iter(BasenjiDataset(TF_DIR, "test")))
    assert first_test["interval"] == "chr1:3048-3560"  # 5th bed row: train 3, valid 1, then test
    assert check_split(TF_DIR, "train") == 3


def _write_directory(path, counts, records_per_file=2, seq_length=256, crop_bp=64, tracks=2, seed=0):
    """A Basenji2 directory from our writer; targets encode (split number, example index) to check order."""
    rng = np.random.default_rng(seed)
    targets = pd.DataFrame({"identifier": [f"T{i}" for i in range(tracks)],
                            "description": ["DNASE:a", "CAGE:b", "CHIP:H3K4me3:c", "CHIP:CTCF:d"][:tracks]})
    bins = (seq_length - 2 * crop_bp) // 128
    with BasenjiWriter(path, targets, seq_length, crop_bp, 128, records_per_file) as writer:
        for split_number, (split, count) in enumerate(counts.items()):
            for index in range(count):
                sequence = np.eye(4, dtype=bool)[rng.integers(0, 4, seq_length)]
                target = np.full((bins, tracks), index, np.float32)
                target[:, 0] = split_number
                writer.add(split, ("chr1", 1000 * index, 1000 * index + seq_length), sequence, target)
    return path


def test_writer_layout_and_numeric_file_order(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 23, "valid": 2, "test": 3}, records_per_file=2)
    statistics = read_statistics(directory)
    assert statistics == {"num_targets": 2, "seq_length": 256, "pool_width": 128, "crop_bp": 64, "target_length": 1,
                          "train_seqs": 23, "valid_seqs": 2, "test_seqs": 3}
    files = [p.name for p in split_files(directory, "train")]
    assert files[:3] == ["train-0.tfr", "train-1.tfr", "train-2.tfr"] and files[-1] == "train-11.tfr"
    indices = [int(e["target"][0, 1]) for e in BasenjiDataset(directory, "train")]
    assert indices == list(range(23))  # train-10 after train-9, not after train-1
    bed = (directory / "sequences.bed").read_text().splitlines()
    assert [line.split("\t")[3] for line in bed] == ["train"] * 23 + ["valid"] * 2 + ["test"] * 3
    targets = (directory / "targets.txt").read_text().splitlines()
    assert targets[0] == "index\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription"


@pytest.mark.parametrize("world_size, workers", [(1, 2), (2, 1), (3, 2), (4, 2)])
def test_sharding_across_ranks_and_workers(tmp_path, world_size, workers):
    directory = _write_directory(tmp_path / "d", {"train": 23}, records_per_file=4)
    per_rank, batches = [], []
    for rank in range(world_size):
        dataset = BasenjiDataset(directory, "train", rank=rank, world_size=world_size)
        loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=stack_examples)
        rank_batches = list(loader)
        batches.append(len(rank_batches))
        per_rank.append([int(i) for batch in rank_batches for i in batch["index"]])
        assert len(per_rank[-1]) == len(dataset) == 23 // world_size
    seen = [index for indices in per_rank for index in indices]
    assert len(seen) == len(set(seen))  # no duplicates
    assert set(seen) == set(range(23 // world_size * world_size))  # only the remainder is dropped
    assert len(set(batches)) == 1  # every rank runs the same number of batches


def test_shuffle_buffer_is_a_seeded_permutation_changed_by_the_epoch(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 20}, records_per_file=3)

    def order(seed, epoch, **options):
        dataset = BasenjiDataset(directory, "train", shuffle_buffer=6, seed=seed, **options)
        dataset.set_epoch(epoch)
        return [e["index"] for e in dataset]

    first = order(0, 0)
    assert sorted(first) == list(range(20)) and first != list(range(20))
    assert order(0, 0) == first
    assert order(0, 1) != first
    assert order(1, 0) != first
    files_shuffled = order(0, 0, shuffle_files=True)
    assert sorted(files_shuffled) == list(range(20))
    # Sharding still holds with shuffled files: two ranks split the examples without overlap.
    halves = [set(order(0, 2, shuffle_files=True, rank=r, world_size=2)) for r in range(2)]
    assert not halves[0] & halves[1] and len(halves[0] | halves[1]) == 20


def test_max_examples_and_shorter_inputs(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 9}, records_per_file=4)
    dataset = BasenjiDataset(directory, "train", max_examples=5)
    assert [e["index"] for e in dataset] == list(range(5)) and len(dataset) == 5
    full = next(iter(BasenjiDataset(directory, "train")))
    cropped = next(iter(BasenjiDataset(directory, "train", sequence_length=128)))
    assert torch.equal(cropped["sequence"], full["sequence"][64:192])
    assert cropped["interval"] == "chr1:64-192"


def test_zero_flanks_without_a_genome_are_labelled(tmp_path):
    directory = _write_directory(tmp_path / "d", {"test": 2})
    dataset = BasenjiDataset(directory, "test", sequence_length=512)
    example = next(iter(dataset))
    assert dataset.flanks == "zeros" and "ZERO flanks" in dataset.input_description
    assert example["sequence"].shape == (512, 4)
    assert example["sequence"][:128].sum() == 0 and example["sequence"][-128:].sum() == 0
    assert torch.equal(example["sequence"][128:384], next(iter(BasenjiDataset(directory, "test")))["sequence"])
    assert example["interval"] == "chr1:-128-384"


def test_record_of_the_wrong_size_names_file_and_record(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 3}, records_per_file=3)
    good = encode_example(np.zeros((256, 4), bool), np.zeros((1, 2)))
    bad = encode_example(np.zeros((255, 4), bool), np.zeros((1, 2)))
    write_records(directory / "tfrecords" / "train-0.tfr", [good, bad, good])
    with pytest.raises(TFRecordError, match=r"train-0\.tfr: record 1 \(example 1 of train\): sequence has 1,020 bytes"):
        list(BasenjiDataset(directory, "train"))
    with pytest.raises(TFRecordError, match=r"train-0\.tfr: record 1: sequence has 1,020 bytes"):
        check_split(directory, "train")
    wrong_target = encode_example(np.zeros((256, 4), bool), np.zeros((1, 3)))
    write_records(directory / "tfrecords" / "train-0.tfr", [good, good, wrong_target])
    with pytest.raises(TFRecordError, match=r"record 2 .*target has 6 bytes; 1 bins x 2 tracks of float16 need 4"):
        list(BasenjiDataset(directory, "train"))


def test_fewer_records_than_statistics_is_an_error_not_a_short_dataset(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 4}, records_per_file=2)
    (directory / "tfrecords" / "train-1.tfr").unlink()
    with pytest.raises(UserError, match=r"2 train rows|train_seqs = 4"):
        list(BasenjiDataset(directory, "train"))
    statistics = json.loads((directory / "statistics.json").read_text())
    statistics["train_seqs"] = 2
    (directory / "statistics.json").write_text(json.dumps(statistics))
    (directory / "sequences.bed").write_text("chr1\t0\t256\ttrain\nchr1\t1000\t1256\ttrain\n")
    assert len(list(BasenjiDataset(directory, "train"))) == 2
    statistics["train_seqs"] = 3
    (directory / "statistics.json").write_text(json.dumps(statistics))
    (directory / "sequences.bed").unlink()
    with pytest.raises(TFRecordError, match=r"the train files hold 2 records, statistics.json says train_seqs = 3"):
        list(BasenjiDataset(directory, "train"))
    with pytest.raises(TFRecordError, match="hold 2 records"):
        check_split(directory, "train")


def test_truncated_shard_is_reported_through_the_dataset(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 4}, records_per_file=4)
    path = directory / "tfrecords" / "train-0.tfr"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(TFRecordError, match=r"train-0\.tfr: record 3: truncated"):
        list(BasenjiDataset(directory, "train"))


def test_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no statistics.json"):
        BasenjiDataset(tmp_path, "train")
    directory = _write_directory(tmp_path / "d", {"train": 2})
    with pytest.raises(UserError, match=r"no valid-N\.tfr files \(splits present: train\)"):
        BasenjiDataset(directory, "valid")
    with pytest.raises(ValueError, match="rank 2 is not in 0..world_size-1"):
        BasenjiDataset(directory, "train", rank=2, world_size=2)
    with pytest.raises(ValueError, match="odd number of bp"):
        BasenjiDataset(directory, "train", sequence_length=257)
    statistics = json.loads((directory / "statistics.json").read_text())
    statistics["target_length"] = 5
    (directory / "statistics.json").write_text(json.dumps(statistics))
    with pytest.raises(UserError, match=r"target_length 5 != \(seq_length 256 - 2 \* crop_bp 64\) / pool_width 128 = 1"):
        read_statistics(directory)


def test_transform_is_applied(tmp_path):
    directory = _write_directory(tmp_path / "d", {"train": 2})
    dataset = BasenjiDataset(directory, "train", transform=lambda e: {**e, "seen": True})
    assert all(e["seen"] for e in dataset)


def test_genome_flanks_are_fetched_and_checked(tmp_path):
    pytest.importorskip("senformer.data.genome", reason="senformer.data.genome is delivered by the weights helper")
    from senformer.data.synthetic import make_synthetic

    directory = make_synthetic(tmp_path / "syn", "tiny", seed=3)
    record = BasenjiDataset(directory, "valid")
    extended = BasenjiDataset(directory, "valid", genome=directory / "genome.fa", sequence_length=6144)
    assert extended.flanks == "genome" and "genome flanks" in extended.input_description
    for short, long in zip(record, extended):
        assert torch.equal(long["sequence"][1024:5120], short["sequence"])
        assert long["sequence"][:1024].sum() > 0  # real bases, not zeros, in the flank
        assert torch.equal(long["target"], short["target"])
    # The first window of a chromosome starts 512 bp in: the extended input has N (zeros) beyond the end.
    first = next(iter(BasenjiDataset(directory, "train", genome=directory / "genome.fa", sequence_length=6144)))
    assert first["interval"] == "chr1:-512-5632"
    assert first["sequence"][:512].sum() == 0 and first["sequence"][512:1024].sum() == 512
    # DataLoader workers each open their own FASTA handle and give the same inputs.
    loader = DataLoader(BasenjiDataset(directory, "train", genome=directory / "genome.fa", sequence_length=6144),
                        batch_size=1, num_workers=2, collate_fn=stack_examples)
    by_index = {int(b["index"][0]): b["sequence"][0] for b in loader}
    serial = {e["index"]: e["sequence"] for e in BasenjiDataset(directory, "train", genome=directory / "genome.fa", sequence_length=6144)}
    assert by_index.keys() == serial.keys() and all(torch.equal(by_index[i], serial[i]) for i in serial)
    # A genome that differs from the records is an error naming the example.
    fasta = (directory / "genome.fa").read_text().splitlines()
    fasta[20] = "".join("A" if base != "A" else "C" for base in fasta[20])  # bp 1520-1600: example 0
    other = tmp_path / "other.fa"
    other.write_text("\n".join(fasta) + "\n")
    with pytest.raises(UserError, match=r"example 0 of train \(chr1:512-4608\): the genome differs from the TFRecord"):
        list(BasenjiDataset(directory, "train", genome=other, sequence_length=6144))


def test_copy_of_tf_directory_can_be_extended_with_zero_flanks(tmp_path):
    directory = tmp_path / "tf"
    shutil.copytree(TF_DIR, directory)
    examples = list(BasenjiDataset(directory, "train", sequence_length=768))
    assert all(e["sequence"].shape == (768, 4) for e in examples)
