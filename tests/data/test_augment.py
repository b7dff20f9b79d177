"""Reverse complement and shift augmentations."""

import pytest
import torch

from senformer.data.augment import reverse_complement, shift
from senformer.sequence import one_hot


def test_reverse_complement_of_sequence_and_target():
    sequence = one_hot("AACGN")
    target = torch.arange(6.0).reshape(3, 2)
    flipped, flipped_target = reverse_complement(sequence, target)
    assert torch.equal(flipped, one_hot("NCGTT"))
    assert torch.equal(flipped_target, torch.tensor([[4.0, 5.0], [2.0, 3.0], [0.0, 1.0]]))
    twice, target_twice = reverse_complement(*reverse_complement(sequence, target))
    assert torch.equal(twice, sequence) and torch.equal(target_twice, target)
    batched, _ = reverse_complement(sequence[None].repeat(2, 1, 1))
    assert torch.equal(batched[1], one_hot("NCGTT"))


def test_shift_moves_bases_and_pads_with_n():
    sequence = one_hot("ACGTA")
    assert torch.equal(shift(sequence, 2), one_hot("NNACG"))
    assert torch.equal(shift(sequence, -3), one_hot("TANNN"))
    assert torch.equal(shift(sequence, 0), sequence)
    padded = shift(sequence, 1, pad_value=0.25)
    assert torch.equal(padded[0], torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="not smaller than the sequence length"):
        shift(sequence, 5)
    with pytest.raises(ValueError, match=r"one-hot tensor \(\.\.\., length, 4\)"):
        shift(torch.zeros(5, 3), 1)

