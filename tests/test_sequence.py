"""The one owner of DNA encodings: tokens <-> bases, the bool one-hot of Basenji records, and a sequence
given as tokens or one-hot."""

import numpy as np
import pytest
import torch

from senformer.sequence import BASES, as_one_hot, one_hot, one_hot_array, tokens, tokens_to_bases


def test_tokens_and_bases_round_trip():
    text = "ACGTNacgtRY"
    assert tokens_to_bases(tokens(text)) == "ACGTNACGTNN"
    assert tokens_to_bases(torch.tensor([3, 2, 1, 0, 4])) == "TGCAN" and tokens_to_bases(np.zeros(0, np.int8)) == ""
    assert [BASES[token] for token in tokens("GATTACA")] == list("GATTACA")


def test_the_bool_one_hot_matches_the_float_one():
    text = "ACGTNacgtN"
    array = one_hot_array(text)
    assert array.dtype == np.bool_ and array.shape == (10, 4)
    np.testing.assert_array_equal(array, one_hot(text).numpy().astype(bool))
    assert not array[4].any() and array[5].tolist() == [True, False, False, False]  # lower case counts


def test_as_one_hot_takes_tokens_or_one_hot_and_names_a_wrong_shape():
    from_tokens = as_one_hot(torch.tensor([0, 3, 4]), torch.float64)
    assert from_tokens.dtype == torch.float64 and from_tokens.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert torch.equal(as_one_hot(from_tokens.float()), from_tokens.float())
    with pytest.raises(ValueError, match=r"left_flank: a one-hot sequence must be \(bp, 4\)"):
        as_one_hot(torch.zeros(3, 5), name="left_flank")
    with pytest.raises(ValueError, match=r"a token sequence must be \(bp,\)"):
        as_one_hot(torch.zeros(2, 3, dtype=torch.long))
