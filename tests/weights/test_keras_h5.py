"""calico's Keras .h5 Borzoi files -> senformer, against the outputs calico's own code wrote.

The fixtures in ../shared/fixtures/borzoi_keras were written by baskerville under TensorFlow 2.15 (random
weights, BatchNorm statistics set): ``pred_small`` has every block kind of the published model and both
heads, ``micro`` is params_micro.json (no upsampling conv, no crop, no final conv). baskerville builds the
position basis from the input's length, which the converted config keeps (``positional_basis_length=None``).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from senformer import load_model
from senformer.config import preset
from senformer.errors import UserError
from senformer.model.borzoi import Borzoi
from senformer.weights import detect_format
from senformer.weights.keras_h5 import keras_files, read_keras_borzoi, read_keras_borzoi_files


def fixture(shared_dir: Path, name: str) -> Path:
    return shared_dir / "fixtures" / "borzoi_keras" / name


def calico_outputs(model: Borzoi, folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    reference = np.load(folder / "reference.npz")
    tokens = torch.from_numpy(reference["tokens"].astype(np.int64))[None]
    with torch.no_grad():
        outputs = model(tokens)
    return outputs, {head: reference[f"head{index}"] for index, head in enumerate(model.config.output_heads)}


def assert_reproduces(model: Borzoi, folder: Path) -> None:
    outputs, expected = calico_outputs(model, folder)
    for head, want in expected.items():
        got = outputs[head][0].numpy()
        assert got.shape == want.shape, head
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error <= 1e-4, (head, error)


def test_pred_small_both_heads(shared_dir):
    folder = fixture(shared_dir, "pred_small")
    assert detect_format(folder) == "keras-h5"
    model = load_model(folder)
    assert isinstance(model, Borzoi)
    # The graph gives the architecture: params_pred.json shrunk by pred_small_overrides.json.
    assert model.config == preset("borzoi-pred-small")
    assert_reproduces(model, folder)
    # The conv trunk in tiles of 16,384 bp (exact) gives calico's outputs too.
    assert_reproduces(load_model(folder, overrides={"conv_tile_length": 16_384}), folder)


def test_micro(shared_dir):
    folder = fixture(shared_dir, "micro")
    model = load_model(folder / "model0.h5")
    # params_micro.json; its attention-weight dropout (0.01) is not in the saved graph.
    assert model.config == preset("borzoi-micro", attention_dropout_rate=model.config.attention_dropout_rate)
    assert_reproduces(model, folder)


def test_one_file_is_one_head(shared_dir):
    folder = fixture(shared_dir, "pred_small")
    human, mouse = read_keras_borzoi(folder / "model0.h5"), read_keras_borzoi(folder / "model1.h5")
    assert (human.head, mouse.head) == ("human", "mouse")
    assert human.config["output_heads"] == {"human": 12} and mouse.config["output_heads"] == {"mouse": 6}
    assert [path.name for path in keras_files(folder)] == ["model0.h5", "model1.h5"]
    # The converter only renames and reshapes: a conv kernel [width, in, out] is the tensor [out, in, width].
    with h5py.File(folder / "model0.h5", "r") as handle:
        kernel = handle["model_weights/conv1d_1/conv1d_1/kernel:0"][()]
    np.testing.assert_array_equal(human.state["conv_tower.0.conv.weight"].numpy(), kernel.transpose(2, 1, 0))


def test_convert_command_writes_native_weights(shared_dir, tmp_path):
    folder = fixture(shared_dir, "pred_small")
    destination = tmp_path / "borzoi-native"
    result = subprocess.run([sys.executable, "-m", "senformer", "convert", str(folder), str(destination)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "keras-h5" in result.stdout
    model = load_model(destination)
    assert isinstance(model, Borzoi) and model.config == preset("borzoi-pred-small")
    assert_reproduces(model, folder)


def copy_fixture(shared_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pred_small"
    copy.mkdir()
    for name in ("model0.h5", "model1.h5"):
        shutil.copyfile(fixture(shared_dir, "pred_small") / name, copy / name)
        (copy / name).chmod(0o644)
    return copy


def test_missing_layer_is_refused_by_name(shared_dir, tmp_path):
    copy = copy_fixture(shared_dir, tmp_path)
    with h5py.File(copy / "model0.h5", "r+") as handle:
        del handle["model_weights/dense_4"]  # the first U-Net step's upsampling conv
    with pytest.raises(UserError, match="layer dense_4 .* has no weights"):
        load_model(copy / "model0.h5")


def relabel(weights: h5py.Group, old: str, new: str) -> None:
    """Save layer ``old`` under the name ``new`` throughout (group, inner group, weight_names)."""
    weights.move(old, new)
    weights[new].move(old, new)
    names = [n.decode() if isinstance(n, bytes) else n for n in weights[new].attrs["weight_names"]]
    weights[new].attrs["weight_names"] = [n.replace(old + "/", new + "/", 1).encode() for n in names]


def test_mislabelled_layer_is_refused_by_name(shared_dir, tmp_path):
    copy = copy_fixture(shared_dir, tmp_path)
    with h5py.File(copy / "model0.h5", "r+") as handle:
        # The two U-Net skips' BatchNorms (96 and 80 channels) saved under each other's names.
        relabel(handle["model_weights"], "batch_normalization_7", "swap")
        relabel(handle["model_weights"], "batch_normalization_9", "batch_normalization_7")
        relabel(handle["model_weights"], "swap", "batch_normalization_9")
    with pytest.raises(UserError, match=r"layer batch_normalization_[79] holds .* of shape \[80\] .* mislabelled"):
        load_model(copy / "model0.h5")
    with h5py.File(copy / "model1.h5", "r+") as handle:
        handle["model_weights"].move("conv1d_2", "renamed")  # the group alone: its weights keep their names
        handle["model_weights"].move("conv1d_4", "conv1d_2")
    with pytest.raises(UserError, match="layer conv1d_2 .* lacks its weight 'kernel'"):
        read_keras_borzoi(copy / "model1.h5")


def test_missing_weight_and_foreign_layer_are_refused(shared_dir, tmp_path):
    copy = copy_fixture(shared_dir, tmp_path)
    with h5py.File(copy / "model0.h5", "r+") as handle:
        del handle["model_weights/multihead_attention_1/multihead_attention_1/r_w_bias:0"]
    with pytest.raises(UserError, match="layer multihead_attention_1 .* lacks its weight 'r_w_bias'"):
        read_keras_borzoi(copy / "model0.h5")
    with h5py.File(copy / "model1.h5", "r+") as handle:
        group = handle["model_weights"].create_group("dense_99")
        group.attrs["weight_names"] = [b"dense_99/kernel:0"]
        group.create_dataset("dense_99/kernel:0", data=np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(UserError, match="not part of Borzoi's architecture: dense_99"):
        read_keras_borzoi(copy / "model1.h5")


def test_heads_with_different_trunks_are_refused(shared_dir, tmp_path):
    copy = copy_fixture(shared_dir, tmp_path)
    with h5py.File(copy / "model1.h5", "r+") as handle:
        handle["model_weights/conv1d_3/conv1d_3/bias:0"][0] += 1.0
    with pytest.raises(UserError, match="conv1d_3/bias differs .* do not share one trunk"):
        read_keras_borzoi_files(keras_files(copy))


def test_not_a_keras_model(tmp_path):
    path = tmp_path / "model0.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(UserError, match="not a Keras model saved whole"):
        load_model(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        load_model(path)


def test_sync_batch_normalization_layers_are_accepted(shared_dir, tmp_path):
    # A multi-device save writes SyncBatchNormalization layers named sync_batch_normalization_<n>.
    copy = copy_fixture(shared_dir, tmp_path)
    with h5py.File(copy / "model0.h5", "r+") as handle:
        text = handle.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        text = text.replace('"BatchNormalization"', '"SyncBatchNormalization"')
        text = text.replace('"batch_normalization', '"sync_batch_normalization')
        handle.attrs["model_config"] = text
        weights = handle["model_weights"]
        for name in [name for name in weights if name.startswith("batch_normalization")]:
            relabel(weights, name, f"sync_{name}")
        layer_names = [n.decode() if isinstance(n, bytes) else n for n in weights.attrs["layer_names"]]
        weights.attrs["layer_names"] = [(f"sync_{n}" if n.startswith("batch_normalization") else n).encode()
                                        for n in layer_names]
        assert "SyncBatchNormalization" in handle.attrs["model_config"]
    model = load_model(copy / "model0.h5")
    outputs, expected = calico_outputs(model, fixture(shared_dir, "pred_small"))
    assert np.abs(outputs["human"][0].numpy() - expected["human"]).max() <= 1e-4 * np.abs(expected["human"]).max()
