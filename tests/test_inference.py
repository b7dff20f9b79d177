"""``senformer.inference``: the averaged prediction equals the model called by hand, pass by pass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import random_tokens, tiny_borzoi, tiny_config, tiny_model

from senformer.constants import SEQUENCE_LENGTH
from senformer.data.batch import iterate_batches
from senformer.errors import UserError
from senformer.inference import (
    default_sequence_length,
    predict_batch,
    predict_batches,
    resolve_sequence_length,
)
from senformer.sequence import reverse_complement, tokens_to_one_hot

LENGTH = 1024  # tiny model: 8 bins of 128 bp


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


def one_hot_batch(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return tokens_to_one_hot(random_tokens(batch, length, seed))


def test_default_and_resolved_sequence_length():
    from senformer import EnformerConfig

    assert default_sequence_length(EnformerConfig()) == SEQUENCE_LENGTH == 196_608
    tiny = tiny_config()  # target_length 8: 196,608 bp is valid (the central 8 bins are kept)
    assert default_sequence_length(tiny) == SEQUENCE_LENGTH
    long_output = tiny_config(target_length=2_048)  # 2,048 bins need more than 196,608 bp
    assert default_sequence_length(long_output) == long_output.min_sequence_length() == 262_144
    assert resolve_sequence_length(long_output, None) == 262_144
    assert resolve_sequence_length(tiny, None) == SEQUENCE_LENGTH
    assert resolve_sequence_length(tiny, 2_048) == 2_048
    with pytest.raises(UserError, match=r"1,000 bp is not valid.*nearest valid: 1,024"):
        resolve_sequence_length(tiny, 1_000)
    with pytest.raises(UserError, match=r"1,100 bp is not valid.*1,024 or 1,152"):
        resolve_sequence_length(tiny, 1_100)


def test_a_single_pass_is_the_model_output(model):
    x = one_hot_batch(2, LENGTH)
    with torch.no_grad():
        direct = model(x)
    result = predict_batch(model, x)
    assert set(result) == {"human", "mouse"}
    for head in ("human", "mouse"):
        assert result[head].dtype == torch.float32 and result[head].device.type == "cpu"
        assert torch.equal(result[head], direct[head])
    # Tokens are one-hot encoded by the model: the same numbers.
    assert torch.equal(predict_batch(model, random_tokens(2, LENGTH), heads=["mouse"])["mouse"], direct["mouse"])


def test_reverse_complement_and_shifts_average_the_passes_in_order(model):
    margin, shifts = 3, (-3, 0, 2)
    x = one_hot_batch(2, LENGTH + 2 * margin, seed=1)
    tracks = {"human": np.array([4, 0, 2])}
    result = predict_batch(model, x, heads=["human", "mouse"], tracks=tracks, reverse_complement=True,
                           shifts=shifts, margin=margin, embeddings=True)
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for shift in shifts:
            window = x[:, margin + shift : margin + shift + LENGTH]
            for flip in (False, True):
                outputs = model(reverse_complement(window) if flip else window, return_embeddings=True)
                outputs["human"] = outputs["human"][..., [4, 0, 2]]
                for name, value in outputs.items():
                    value = value.flip(1) if flip else value
                    sums[name] = sums[name] + value if name in sums else value
    assert set(result) == {"human", "mouse", "embeddings"}
    assert result["human"].shape == (2, 8, 3) and result["embeddings"].shape == (2, 8, 2 * model.config.dim)
    for name, value in sums.items():
        assert torch.equal(result[name], value / 6), name
    # The two strands really differ, so the average is not one pass.
    with torch.no_grad():
        forward = model(x[:, margin : margin + LENGTH])["mouse"]
    assert not torch.allclose(result["mouse"], forward, rtol=1e-3)


def test_float64_accumulation_converts_each_pass_before_summing(model):
    x = one_hot_batch(3, LENGTH, seed=2)
    result = predict_batch(model, x, heads=["human"], tracks={"human": [1, 3]}, reverse_complement=True,
                           accumulate=torch.float64)
    with torch.no_grad():
        forward = model(x, heads=["human"])["human"][..., [1, 3]].double()
        backward = model(reverse_complement(x), heads=["human"])["human"][..., [1, 3]].double().flip(1)
    assert result["human"].dtype == torch.float64
    assert torch.equal(result["human"], (forward + backward) / 2)


def test_one_windows_strands_run_as_one_batch_of_two_with_the_two_passes_numbers(model):
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        x = one_hot_batch(1, LENGTH + 4, seed=9)
        predict_batch(model, x, reverse_complement=True, shifts=(-2, 1), margin=2)
        assert calls == [2, 2]  # one call per shift, both strands in it
        calls.clear()
        predict_batch(model, one_hot_batch(2, LENGTH, seed=9), reverse_complement=True)
        assert calls == [2, 2]  # a batch of two windows already fills the machine: one call per strand
    finally:
        handle.remove()
    # The passes' numbers to fp32 rounding (the batch may change a product's summation order), and exactly the
    # passes' maths: in float64 they agree to 1e-12.
    exact = tiny_model(seed=3).double()
    for tested, bound in ((model, 1e-5), (exact, 1e-12)):
        result = predict_batch(tested, x, reverse_complement=True, shifts=(-2, 1), margin=2, embeddings=True,
                               accumulate=torch.float64)
        sums: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for shift in (-2, 1):
                window = x[:, 2 + shift : 2 + shift + LENGTH].to(next(tested.parameters()).dtype)
                for flip in (False, True):
                    outputs = tested(reverse_complement(window) if flip else window, return_embeddings=True)
                    for name, value in outputs.items():
                        value = (value.flip(1) if flip else value).double()
                        sums[name] = sums[name] + value if name in sums else value
        for name, value in sums.items():
            torch.testing.assert_close(result[name], value / 4, rtol=0, atol=bound * value.abs().max().item())


def test_a_float64_model_takes_the_one_hot_in_its_dtype():
    model = tiny_model(seed=4).double()
    x = one_hot_batch(1, LENGTH, seed=5)
    with torch.no_grad():
        direct = model(x.double(), heads=["human"])["human"]
    assert torch.equal(predict_batch(model, x, heads=["human"], accumulate=torch.float64)["human"], direct)


@pytest.fixture
def native_bf16(monkeypatch):
    """bf16 as on a CPU with AVX512-BF16 / AMX, whatever this machine has."""
    import senformer.device

    monkeypatch.setattr(senformer.device, "bf16_supported", lambda device="cpu", **_: True)


def test_bf16_is_the_autocast_forward(model, native_bf16):
    x = one_hot_batch(1, LENGTH, seed=6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        direct = model(x, heads=["human"])["human"].float()
    result = predict_batch(model, x, heads=["human"], bf16=True)["human"]
    assert torch.equal(result, direct)
    assert not torch.equal(result, predict_batch(model, x, heads=["human"])["human"])


def test_emulated_bf16_warns_once_and_runs_float32(model, monkeypatch):
    import senformer.device

    monkeypatch.setattr(senformer.device, "bf16_supported", lambda device="cpu", **_: False)
    monkeypatch.setattr(senformer.device, "_warned_no_bf16", set())
    x = one_hot_batch(1, LENGTH, seed=6)
    with pytest.warns(UserWarning, match="--bf16 ignored, running fp32"):
        first = predict_batch(model, x, heads=["human"], bf16=True)["human"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second request is silent
        second = predict_batch(model, x, heads=["human"], bf16=True)["human"]
    exact = predict_batch(model, x, heads=["human"])["human"]
    assert torch.equal(first, exact) and torch.equal(second, exact)


def test_misuse_is_refused(model):
    x = one_hot_batch(1, LENGTH + 2)
    with pytest.raises(ValueError, match="margin of at least 2"):
        predict_batch(model, x, shifts=(-2, 0), margin=1)
    with pytest.raises(UserError, match="at least one value"):
        predict_batch(model, x, shifts=(), margin=1)
    training = tiny_model(seed=3).train()
    with pytest.raises(ValueError, match="eval mode"):
        predict_batch(training, x[:, 1:-1])
    assert training.training  # the mode is the caller's decision


def test_the_reverse_strand_swaps_stranded_tracks_with_their_pair():
    borzoi = tiny_borzoi(output_heads={"human": 5})
    pairs = np.array([1, 0, 2, 4, 3])  # two + / - pairs and an unstranded track
    chosen = np.array([0, 2, 3])  # one of each pair's strands: the swap reads the partner's column
    margin, shifts = 2, (-2, 1)
    x = one_hot_batch(2, LENGTH + 2 * margin, seed=7)
    result = predict_batch(borzoi, x, tracks={"human": chosen}, reverse_complement=True, shifts=shifts,
                           margin=margin, strand_pairs={"human": pairs})["human"]
    expected = 0
    with torch.no_grad():
        for shift in shifts:
            window = x[:, margin + shift : margin + shift + LENGTH]
            forward = borzoi(window)["human"]
            backward = borzoi(reverse_complement(window))["human"].flip(1)[..., pairs]  # + and - change places
            expected = expected + forward[..., chosen] + backward[..., chosen]
    assert result.shape == (2, 28, 3)
    torch.testing.assert_close(result, expected / 4, rtol=1e-6, atol=0)
    # Without pairs the tracks keep their columns: a different, wrong average for stranded tracks.
    unpaired = predict_batch(borzoi, x, tracks={"human": chosen}, reverse_complement=True, shifts=shifts,
                             margin=margin)["human"]
    torch.testing.assert_close(unpaired[..., 1], result[..., 1], rtol=1e-6, atol=0)  # the unstranded track
    assert not torch.allclose(unpaired[..., 0], result[..., 0], rtol=1e-3)
    with pytest.raises(ValueError, match="must reorder its 5 tracks"):
        predict_batch(borzoi, x[:, :LENGTH], reverse_complement=True, strand_pairs={"human": [1, 1, 2, 4, 3]})


def test_a_published_borzoi_head_swaps_by_the_shipped_table():
    from senformer.data.borzoi_targets import borzoi_track_table
    from senformer.inference import model_strand_pairs

    borzoi = tiny_borzoi(output_heads={"human": 7611})
    shipped = borzoi_track_table("human")["strand_pair"].to_numpy()
    assert np.array_equal(model_strand_pairs(borzoi)["human"], shipped)
    assert model_strand_pairs(tiny_model(seed=3)) == {}  # Enformer: every track unstranded
    x = one_hot_batch(1, LENGTH, seed=8)
    columns = np.flatnonzero(shipped != np.arange(len(shipped)))[:4]  # stranded tracks
    by_default = predict_batch(borzoi, x, tracks={"human": columns}, reverse_complement=True)["human"]
    given = predict_batch(borzoi, x, tracks={"human": columns}, reverse_complement=True,
                          strand_pairs={"human": shipped})["human"]
    assert torch.equal(by_default, given)


def test_predict_batches_streams_each_batch(model):
    dataset = [{"sequence": one_hot_batch(1, LENGTH, seed=i)[0], "index": i} for i in range(5)]
    seen = []
    for batch, outputs in predict_batches(model, iterate_batches(dataset, 2), heads=["mouse"], reverse_complement=True):
        seen.extend(batch["index"].tolist())
        assert torch.equal(outputs["mouse"],
                           predict_batch(model, batch["sequence"], heads=["mouse"], reverse_complement=True)["mouse"])
        assert outputs["mouse"].shape == (len(batch["index"]), 8, 3)
    assert seen == [0, 1, 2, 3, 4]


def test_device(model, device):
    x = one_hot_batch(2, LENGTH, seed=7)
    expected = predict_batch(model, x, reverse_complement=True)["human"]
    moved = tiny_model(seed=3).to(device)
    result = predict_batch(moved, x, reverse_complement=True)["human"]
    assert result.device.type == "cpu"
    torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-4)


# Who calls a model ----------------------------------------------------------------------------------------
FORWARD_ALLOWED = {"inference.py", "train/loop.py", "analysis/attribution.py"}  # + bench/ and model/ itself
MODEL_NAMES = {"model", "network", "teacher", "student"}


def _model_calls(source: str) -> list[int]:
    """Lines calling something named like a model (``model(...)``, ``self.teacher(...)``) or its
    ``forward``/``trunk``: how every forward pass in senformer is spelled."""
    import ast

    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        name = callee.id if isinstance(callee, ast.Name) else callee.attr if isinstance(callee, ast.Attribute) else ""
        if name.lower() in MODEL_NAMES:
            lines.append(node.lineno)
        elif name in ("forward", "trunk") and isinstance(callee, ast.Attribute):
            owner = callee.value
            if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super"):
                lines.append(node.lineno)
    return lines


def test_only_the_allowed_modules_call_a_models_forward():
    from pathlib import Path

    import senformer

    root = Path(senformer.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in FORWARD_ALLOWED or relative.startswith(("bench/", "model/")):
            continue
        offenders += [f"{relative}:{line}" for line in _model_calls(path.read_text(encoding="utf-8"))]
    assert offenders == [], "predictions go through senformer.inference.predict_batch"
    # The detector sees the spellings in use.
    assert _model_calls("model(x)\nself.teacher(x, heads=['h'])\nm.trunk(x)\nsuper().forward(x)\nload_model(p)\n") == [1, 2, 3]
