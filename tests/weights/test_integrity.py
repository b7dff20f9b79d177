"""Damaged, bare and foreign weights through the loader and the commands: a checksum for native files, a
finiteness check for formats without one, configs inferred for senformer tensors without config.json, and
``senformer convert`` under the existing-output rule."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from helpers import random_tokens, tiny_model, write_random_chromosome
from safetensors.torch import load_file, save_file

from senformer import EnformerConfig
from senformer.cli import main
from senformer.errors import UserError
from senformer.outputs import lock_path, output_lock
from senformer.weights import detect_format, infer_config, load_model, save_model


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def forget_checksum(directory) -> None:
    """config.json as senformer wrote it before it recorded the weights' checksum."""
    values = json.loads((directory / "config.json").read_text())
    del values["weights_sha256"]
    (directory / "config.json").write_text(json.dumps(values))


def header_length(path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def flip_data_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[(header_length(path) + len(data)) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def retype_first_tensor(path) -> None:
    """One changed header byte: the first float32 tensor's bytes read as int32 (the data section unchanged)."""
    data = path.read_bytes()
    end = header_length(path)
    position = data.index(b'"F32"', 8, end)
    path.write_bytes(data[:position] + b'"I32"' + data[position + 5 :])


@pytest.fixture
def genome(tmp_path):
    write_random_chromosome(tmp_path / "genome.fa", 5_000, seed=1)
    return tmp_path / "genome.fa"


def predict(weights, genome, out) -> int:
    return run_cli("predict", "--weights", weights, "--fasta", genome, "--region", "chr1:3,000-3,050",
                   "--length", 1024, "--no-progress", "--out", out)


# The checksum -------------------------------------------------------------------------------------------
def test_save_model_records_the_sha256_of_model_safetensors_and_the_config_still_reads_as_a_config(tmp_path):
    model = tiny_model(seed=1)
    save_model(model, tmp_path / "w")
    values = json.loads((tmp_path / "w" / "config.json").read_text())
    assert values["weights_sha256"] == hashlib.sha256((tmp_path / "w" / "model.safetensors").read_bytes()).hexdigest()
    # `--config weights/config.json` (train, info) reads the same file as a plain config.
    assert EnformerConfig.from_json(tmp_path / "w" / "config.json") == model.config


@pytest.mark.parametrize("damage", [flip_data_byte, retype_first_tensor], ids=["data-byte", "header-byte"])
def test_damaged_native_weights_are_refused_by_predict_and_convert(tmp_path, genome, capsys, damage):
    save_model(tiny_model(seed=2), tmp_path / "w")
    damage(tmp_path / "w" / "model.safetensors")
    expected = f"{tmp_path / 'w' / 'model.safetensors'} does not match the checksum in config.json: damaged or replaced"
    with pytest.raises(UserError, match="does not match the checksum"):
        load_model(tmp_path / "w" / "model.safetensors")  # the file alone, its config beside it
    assert predict(tmp_path / "w", genome, tmp_path / "out.h5") == 2
    assert expected in one_line_error(capsys)
    assert run_cli("convert", tmp_path / "w", tmp_path / "converted") == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "converted").exists()


def test_without_a_checksum_a_retyped_tensor_is_refused_by_its_dtype(tmp_path):
    save_model(tiny_model(seed=2), tmp_path / "w")
    forget_checksum(tmp_path / "w")
    retype_first_tensor(tmp_path / "w" / "model.safetensors")
    with pytest.raises(UserError, match=r"1 of the wrong kind of dtype: \S+ \(model float32, weights int32\)"):
        load_model(tmp_path / "w")


def test_weights_replaced_after_saving_are_refused(tmp_path):
    # Another model of the same architecture: every shape and value valid, only the checksum tells.
    save_model(tiny_model(seed=3), tmp_path / "w")
    save_model(tiny_model(seed=4), tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").replace(tmp_path / "w" / "model.safetensors")
    with pytest.raises(UserError, match="model.safetensors does not match the checksum in config.json"):
        load_model(tmp_path / "w")


# Formats without a checksum: non-finite values -----------------------------------------------------------
def poison(state: dict, name: str) -> dict:
    state = {key: tensor.clone() for key, tensor in state.items()}
    state[name].view(-1)[-1] = float("nan")
    return state


def test_a_native_file_without_a_checksum_holding_nan_names_the_file_and_the_tensor(tmp_path, genome, capsys):
    save_model(tiny_model(seed=5), tmp_path / "w")
    forget_checksum(tmp_path / "w")
    weights = tmp_path / "w" / "model.safetensors"
    save_file(poison(load_file(str(weights)), "conv_tower.1.conv.conv.weight"), str(weights))
    assert predict(tmp_path / "w", genome, tmp_path / "out.h5") == 2
    assert f"{weights}: tensor conv_tower.1.conv.conv.weight holds non-finite values" in one_line_error(capsys)
    torch.save(poison(tiny_model(seed=5).state_dict(), "heads.mouse.bias"), tmp_path / "state.pt")
    assert run_cli("convert", tmp_path / "state.pt", tmp_path / "converted", "--set", "target_length=8") == 2
    assert "state.pt: tensor heads.mouse.bias holds non-finite values" in one_line_error(capsys)
    assert not (tmp_path / "converted").exists() and not (tmp_path / "out.h5").exists()


def test_a_nan_poisoned_enformer_pytorch_state_dict_never_exits_0(tmp_path, genome, capsys):
    enformer_pytorch = pytest.importorskip("enformer_pytorch")
    torch.manual_seed(0)
    peer = enformer_pytorch.Enformer.from_hparams(
        dim=48, depth=2, heads=2, attn_dim_key=8, output_heads=dict(human=5, mouse=3), target_length=8,
        dim_divisible_by=8,
    )
    peer.save_pretrained(tmp_path / "hf", safe_serialization=False)
    weights = tmp_path / "hf" / "pytorch_model.bin"
    torch.save(poison(peer.state_dict(), "transformer.1.1.fn.1.weight"), weights)
    assert predict(tmp_path / "hf", genome, tmp_path / "out.h5") == 2
    assert f"{weights}: tensor transformer.1.1.fn.1.weight holds non-finite values" in one_line_error(capsys)
    assert run_cli("convert", tmp_path / "hf", tmp_path / "converted") == 2
    assert "non-finite values" in one_line_error(capsys)
    assert not (tmp_path / "converted").exists() and not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("damage", ["truncated", "not-utf8", "a-list"])
def test_a_config_json_that_does_not_parse_is_an_error_naming_it_not_absent(tmp_path, genome, capsys, damage):
    """Read as absent, the shape would be inferred and a model trained with target_length 8 would predict
    896 bins, exit 0."""
    model = tiny_model(seed=7)
    save_model(model, tmp_path / "w")
    config = tmp_path / "w" / "config.json"
    text = config.read_bytes()
    config.write_bytes({"truncated": text[: len(text) // 2], "not-utf8": b"\xff\xfe" + text, "a-list": b"[1, 2]"}[damage])
    for source in (tmp_path / "w", tmp_path / "w" / "model.safetensors"):
        with pytest.raises(UserError, match=f"{config}: damaged config"):
            load_model(source)
    assert predict(tmp_path / "w", genome, tmp_path / "out.h5") == 2
    assert f"{config}: damaged config" in one_line_error(capsys)
    assert not (tmp_path / "out.h5").exists()


# senformer tensors without config.json -------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["folder", "safetensors-file", "pt-file"])
def test_senformer_tensors_without_config_are_inferred_and_the_defaults_named(tmp_path, layout):
    model = tiny_model(seed=6)
    save_model(model, tmp_path / "w")
    (tmp_path / "w" / "config.json").unlink()
    source = {"folder": tmp_path / "w", "safetensors-file": tmp_path / "w" / "model.safetensors",
              "pt-file": tmp_path / "state.pt"}[layout]
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert detect_format(source) == "native"
    with pytest.warns(UserWarning) as caught:
        loaded, report = load_model(source, with_report=True)
    note = f"{source} has no senformer config.json: the architecture comes from the tensor shapes; " \
           "defaults used for target_length=896, attention='full', dropout rates"
    assert [str(w.message) for w in caught] == report.notes and report.notes[0].startswith(note)
    for field in ("dim", "depth", "heads", "key_size", "output_heads", "conv_tower_divisible_by"):
        assert getattr(loaded.config, field) == getattr(model.config, field), field
    assert loaded.config.target_length == 896
    # Told what the shapes cannot, the load equals the saved model, and nothing is left to note.
    given = {"target_length": 8, "attention": "full", **{k: 0.0 for k in (
        "dropout_rate", "attention_dropout_rate", "positional_dropout_rate", "final_dropout_rate")},
             "chunk_size": 5, "block_size": 4}
    loaded, report = load_model(source, given, with_report=True)
    assert loaded.config == model.config and not report.notes
    tokens = random_tokens(1, 1024, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens)["human"], model(tokens)["human"], rtol=0, atol=0)


def test_convert_says_in_one_line_what_it_could_not_infer(tmp_path, capsys):
    model = tiny_model(seed=7, relative_positions=False, heads=4, key_size=6)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert run_cli("convert", tmp_path / "state.pt", tmp_path / "native", "--attention", "bigbird") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: ")
    assert "defaults used for target_length=896, dropout rates, heads=8" in err and "attention" not in err


def test_a_valid_model_whose_heads_differ_from_the_default_converts(tmp_path):
    # dim 36 is not divisible by the default 8 heads: inferring the tower's rounding must not need it.
    model = tiny_model(seed=8, dim=36, heads=2, conv_tower_divisible_by=6)
    assert infer_config(model.state_dict(), {"target_length": 8}).conv_tower_filters == model.config.conv_tower_filters


def test_an_invalid_inferred_config_reports_its_own_reason(tmp_path, capsys):
    state = tiny_model(seed=9).state_dict()
    for layer in range(2):  # 20 relative-position features: not 6 families' worth
        state[f"transformer.{layer}.attention.to_r_k.weight"] = torch.zeros(16, 20)
    torch.save(state, tmp_path / "state.pt")
    assert run_cli("convert", tmp_path / "state.pt", tmp_path / "native") == 2
    error = one_line_error(capsys)
    assert "state.pt: the tensor shapes imply a configuration senformer cannot build" in error
    assert "num_relative_position_features=20 is not divisible by 6" in error and "rounding" not in error


# convert onto an existing DST ------------------------------------------------------------------------------
def test_convert_follows_the_existing_output_rule(tmp_path, capsys):
    model = tiny_model(seed=10)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(model.config.to_json())
    dst = tmp_path / "native"
    assert run_cli("convert", tmp_path / "state.pt", dst) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors", "run.json"]
    written = (dst / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    # Same files, same settings: up to date, nothing rewritten.
    assert run_cli("convert", tmp_path / "state.pt", dst) == 0
    assert capsys.readouterr().out.strip() == f"{dst} is up to date"
    assert (dst / "model.safetensors").stat().st_mtime_ns == written
    # Other settings: refused in one line, unless --overwrite.
    assert run_cli("convert", tmp_path / "state.pt", dst, "--attention", "bigbird") == 2
    assert "pass --overwrite to replace it" in one_line_error(capsys)
    assert load_model(dst).config.attention == "full"
    assert run_cli("convert", tmp_path / "state.pt", dst, "--attention", "bigbird", "--overwrite") == 0
    assert load_model(dst).config.attention == "bigbird"
    # Other source bytes are other inputs too.
    torch.save(tiny_model(seed=11).state_dict(), tmp_path / "state.pt")
    assert run_cli("convert", tmp_path / "state.pt", dst, "--attention", "bigbird") == 2
    assert "was written from other inputs" in one_line_error(capsys)


def test_convert_refuses_a_file_a_foreign_folder_and_a_locked_output(tmp_path, capsys):
    save_model(tiny_model(seed=12), tmp_path / "w")
    (tmp_path / "file").write_text("not a folder")
    assert run_cli("convert", tmp_path / "w", tmp_path / "file") == 2
    assert "is a file, but a directory is due there" in one_line_error(capsys)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert run_cli("convert", tmp_path / "w", tmp_path / "mine", "--overwrite") == 2
    assert "senformer did not write" in one_line_error(capsys)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with output_lock(tmp_path / "busy"):
        assert run_cli("convert", tmp_path / "w", tmp_path / "busy") == 2
        assert f"being written by another run (pid {os.getpid()}" in one_line_error(capsys)
    assert not (tmp_path / "busy").exists() and not lock_path(tmp_path / "busy").exists()


def test_convert_replaces_a_partial_output_of_other_inputs_with_a_notice(tmp_path, capsys):
    save_model(tiny_model(seed=13), tmp_path / "w")
    partial = tmp_path / "native.partial"
    partial.mkdir()
    (partial / "run.json").write_text(json.dumps({"fingerprint": "0" * 64}))
    (partial / "model.safetensors").write_bytes(b"half")
    assert run_cli("convert", tmp_path / "w", tmp_path / "native") == 0
    assert f"{partial} was written from other inputs: starting it again" in capsys.readouterr().err
    assert not partial.exists()
    assert torch.equal(load_model(tmp_path / "native").stem.conv.weight, tiny_model(seed=13).stem.conv.weight)
