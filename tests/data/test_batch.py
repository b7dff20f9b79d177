"""The one batch stacker: tensors, arrays, indices and other values; batches of a dataset with a limit."""

import numpy as np
import pytest
import torch

from senformer.data.batch import iterate_batches, stack_examples


def test_stack_examples_tensors_arrays_indices_and_other_values():
    examples = [
        {"sequence": torch.full((3, 4), float(i)), "target": np.full((2, 5), i, np.float32), "index": np.int64(i),
         "interval": f"chr1:{i}-{i + 3}"}
        for i in range(3)
    ]
    batch = stack_examples(examples)
    assert batch["sequence"].shape == (3, 3, 4) and torch.equal(batch["sequence"][2], torch.full((3, 4), 2.0))
    assert isinstance(batch["target"], torch.Tensor) and batch["target"].shape == (3, 2, 5)
    assert batch["target"].dtype == torch.float32 and float(batch["target"][1, 0, 0]) == 1.0
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [0, 1, 2]
    assert batch["interval"] == ["chr1:0-3", "chr1:1-4", "chr1:2-5"]
    with pytest.raises(ValueError, match="no examples"):
        stack_examples([])


def test_iterate_batches_sizes_and_limit():
    dataset = [{"sequence": torch.zeros(2, 4), "index": i} for i in range(7)]
    assert [b["index"].tolist() for b in iterate_batches(dataset, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b["index"].tolist() for b in iterate_batches(dataset, 2, max_examples=3)] == [[0, 1], [2]]
    assert list(iterate_batches(dataset, 4, max_examples=0)) == []
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(iterate_batches(dataset, 0))
