"""Native weights (config.json + model.safetensors), config inference and the strict/partial load checks."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import random_tokens, tiny_config, tiny_model

from senformer import Enformer
from senformer.errors import UserError
from senformer.weights import detect_format, infer_config, load_model, save_model


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name, tensor in state_a.items():
        assert tensor.dtype == state_b[name].dtype, name
        assert torch.equal(tensor, state_b[name]), name


def forget_checksum(directory) -> None:
    """Rewrite ``directory``'s config.json as senformer wrote it before it recorded the weights' checksum."""
    values = json.loads((directory / "config.json").read_text())
    del values["weights_sha256"]
    (directory / "config.json").write_text(json.dumps(values))


def test_round_trip_is_exact_and_keeps_the_config(tmp_path):
    model = tiny_model(seed=1)
    model.save_pretrained(tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["config.json", "model.safetensors"]
    assert detect_format(tmp_path / "w") == "native"
    loaded = Enformer.from_pretrained(tmp_path / "w")
    assert loaded.config == model.config
    assert not loaded.training
    assert_same_state(model, loaded)
    tokens = random_tokens(2, 1024, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens)["human"], model(tokens)["human"], rtol=0, atol=0)
    # native -> model -> native again: byte-identical tensors.
    save_model(loaded, tmp_path / "again")
    assert_same_state(load_model(tmp_path / "again"), model)


def test_a_bare_safetensors_file_with_its_config_loads(tmp_path):
    model = tiny_model(seed=2)
    save_model(model, tmp_path)
    assert detect_format(tmp_path / "model.safetensors") == "native"
    assert_same_state(load_model(tmp_path / "model.safetensors"), model)


@pytest.mark.parametrize("kind", ["chunked", "bigbird"])
def test_weights_load_unchanged_into_every_attention_kind(tmp_path, kind):
    model = tiny_model(seed=4)
    save_model(model, tmp_path)
    other = Enformer.from_pretrained(tmp_path, attention=kind, num_random_blocks=1)
    assert other.config.attention == kind
    assert_same_state(model, other)
    tokens = random_tokens(1, 2048, seed=5)
    with torch.no_grad():
        reference, result = model(tokens)["human"], other(tokens)["human"]
    if kind == "chunked":  # exact kind
        torch.testing.assert_close(result, reference, rtol=1e-5, atol=1e-6)


def test_infer_config_reads_every_shape():
    config = tiny_config(value_size=12, num_relative_position_features=18, output_heads={"human": 7, "pig": 2})
    model = Enformer(config)
    inferred = infer_config(model.state_dict(), {"target_length": 8})
    for field in ("dim", "depth", "heads", "key_size", "value_size", "num_relative_position_features",
                  "num_conv_tower_blocks", "conv_tower_divisible_by", "output_heads", "target_length"):
        assert getattr(inferred, field) == getattr(config, field), field
    assert inferred.conv_tower_filters == config.conv_tower_filters


def test_infer_config_without_relative_positions_takes_heads_from_overrides():
    config = tiny_config(relative_positions=False, heads=4, key_size=6)
    state = Enformer(config).state_dict()
    inferred = infer_config(state, {"heads": 4})
    assert (inferred.heads, inferred.key_size, inferred.relative_positions) == (4, 6, False)


def test_strict_load_lists_every_problem_in_one_error(tmp_path):
    model = tiny_model(seed=0)
    save_model(model, tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    del state["stem.conv.bias"]
    state["transformer.0.attention.to_q.weight"] = torch.zeros(3, 3)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    forget_checksum(tmp_path)  # weights edited on purpose, as a file written before checksums were
    with pytest.raises(UserError) as error:
        load_model(tmp_path)
    message = str(error.value)
    assert "1 missing: stem.conv.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "transformer.0.attention.to_q.weight (model [16, 48], weights [3, 3])" in message
    assert "--partial" in message


def test_partial_load_starts_a_different_attention_shape_and_a_new_head_from_the_weights(tmp_path):
    model = tiny_model(seed=6)
    save_model(model, tmp_path)
    # The S-Enformer report's layer (key size 24 here, no relative positions) plus a new head.
    overrides = {"key_size": 24, "relative_positions": False, "output_heads": {"human": 5, "mouse": 3, "pig": 4}}
    with pytest.warns(UserWarning, match="partial load"):
        loaded, report = load_model(tmp_path, overrides, strict=False, with_report=True)
    assert "heads.pig.weight" in report.missing
    assert "transformer.0.attention.r_w_bias" in report.unexpected
    assert ("transformer.0.attention.to_q.weight", (48, 48), (16, 48)) in report.mismatched
    new_state = loaded.state_dict()
    for name in report.loaded:
        assert torch.equal(new_state[name], model.state_dict()[name]), name
    assert "stem.conv.weight" in report.loaded and "transformer.1.attention.to_v.weight" in report.loaded


def test_the_report_of_a_complete_load_lists_every_tensor_as_loaded(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path)
    _, report = load_model(tmp_path, with_report=True)
    assert report.complete and report.source_format == "native"
    assert report.loaded == list(model.state_dict()) and not (report.fresh or report.skipped)


def test_damaged_and_missing_weights_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such weights"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no weights"):
        load_model(tmp_path / "empty")
    save_model(tiny_model(), tmp_path / "cut")
    weights = tmp_path / "cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserError, match="model.safetensors does not match the checksum in config.json"):
        load_model(tmp_path / "cut")
    forget_checksum(tmp_path / "cut")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_model(tmp_path / "cut")
    save_model(tiny_model(), tmp_path / "badconfig")
    (tmp_path / "badconfig" / "config.json").write_text(json.dumps({**tiny_config().to_dict(), "dim": 47}))
    with pytest.raises(UserError, match="dim=47"):
        load_model(tmp_path / "badconfig")


def test_pickled_state_dicts_load_with_weights_only(tmp_path):
    model = tiny_model(seed=8)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(model.config.to_json())
    assert_same_state(load_model(tmp_path / "state.pt"), model)
    # Arbitrary objects are refused rather than unpickled.
    torch.save({"stem.conv.weight": object()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="evil.pt holds pickled Python objects, which are never loaded") as error:
        load_model(tmp_path / "evil.pt")
    assert "\n" not in str(error.value)


def test_a_full_disk_while_saving_is_an_os_error_naming_the_file(tmp_path):
    """safetensors reports its writer's I/O errors as its own error with the errno in the text: save_model
    raises the OSError (ENOSPC, the file's name) that the output rule turns into one line; nothing is left."""
    import errno
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(OSError) as raised:
            save_model(tiny_model(), disk / "weights")
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(disk / "weights" / "model.safetensors")
        assert list((disk / "weights").iterdir()) == []
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)
