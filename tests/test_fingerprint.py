"""Fingerprints: every byte of every tensor counts; bases and settings digests are exact and order-free."""

import torch

from helpers import tiny_model
from senformer.fingerprint import bases_digest, combine, file_digest, value_digest, weights_digest


def test_weights_digest_sees_every_byte_of_every_tensor():
    model = tiny_model(seed=0)
    reference = weights_digest(model)
    assert reference == weights_digest(model.state_dict()) == weights_digest(tiny_model(seed=0))
    state = model.state_dict()
    name = sorted(state)[-1]  # a late tensor, past any sample of leading values
    changed = dict(state)
    changed[name] = state[name].clone()
    changed[name].view(-1)[-1] += 1e-7 if changed[name].is_floating_point() else 1
    assert weights_digest(changed) != reference
    renamed = {("x" + k if k == name else k): v for k, v in state.items()}
    assert weights_digest(renamed) != reference
    assert weights_digest({k: v.double() for k, v in state.items()}) != reference


def test_bases_file_and_value_digests(tmp_path):
    assert bases_digest("ACGTN") == bases_digest("ACGTN") != bases_digest("ACGTA")
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x00" * 3_000_000)
    first = file_digest(path)
    path.write_bytes(b"\x00" * 2_999_999 + b"\x01")
    assert file_digest(path) != first
    assert value_digest({"a": 1, "b": [1, 2]}) == value_digest({"b": [1, 2], "a": 1}) != value_digest({"a": 2, "b": [1, 2]})
    assert combine({"weights": "w", "inputs": "i"}) == combine({"inputs": "i", "weights": "w"})
    assert weights_digest({"empty": torch.zeros(0)}) != weights_digest({"empty": torch.zeros(1)})
