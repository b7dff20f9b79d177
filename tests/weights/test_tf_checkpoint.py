"""DeepMind's checkpoint -> senformer: the mapping on the official key list and the outputs of the
checkpoint written by DeepMind's own code (``../shared/fixtures/official_tf_tiny``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from senformer import Enformer, EnformerConfig
from senformer.errors import UserError
from senformer.weights import detect_format, load_model, save_model
from senformer.weights.infer import infer_config
from senformer.weights.tf_checkpoint import read_tf_checkpoint, tf_name_to_senformer

TRACK_STEP = 19  # the fixture keeps every 19th track


@pytest.fixture
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "official_tf_tiny"


def read_key_shapes(path):
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        yield key, tuple(int(n) for n in shape.strip("[]").split(",") if n.strip())


def test_official_full_size_keys_map_onto_the_published_model(fixture_dir):
    """Every weight of the real 1536-channel checkpoint has exactly one place, with the right shape."""
    fake = {}
    for key, shape in read_key_shapes(fixture_dir / "keys_full_size.txt"):
        target = tf_name_to_senformer(key)
        if target is None:
            continue
        name, transform = target
        assert name not in fake, f"{key} collides on {name}"
        fake[name] = np.empty(transform(np.empty(shape, dtype=np.float32)).shape)
    config = infer_config(fake)
    assert config == EnformerConfig()  # 1536 channels, 11 layers, 8 heads, key 64, 5313 + 1643 tracks
    with torch.device("meta"):
        expected = Enformer(config).state_dict()
    assert {name: tuple(t.shape) for name, t in expected.items()} == {name: tuple(a.shape) for name, a in fake.items()}


def test_unmapped_keys_are_only_the_non_weights(fixture_dir):
    unmapped = {key for key, _ in read_key_shapes(fixture_dir / "keys_full_size.txt") if tf_name_to_senformer(key) is None}
    assert unmapped and all(
        key == "_CHECKPOINTABLE_OBJECT_GRAPH" or "/_hidden/" in key or "moving_variance/_counter" in key for key in unmapped
    )


def test_checkpoint_converts_to_native_and_back_exactly(fixture_dir, tmp_path):
    loaded, report = load_model(fixture_dir / "ckpt", with_report=True)
    assert report.source_format == "tf-checkpoint" and report.complete
    config = loaded.config
    assert (config.dim, config.depth, config.heads, config.key_size, config.relative_features) == (384, 1, 8, 64, 48)
    assert config.conv_tower_filters == [256, 256, 256, 256, 384, 384]
    assert config.output_heads == {"human": 5313, "mouse": 1643}
    state = read_tf_checkpoint(fixture_dir / "ckpt")
    save_model(loaded, tmp_path / "native")
    native = load_model(tmp_path / "native")
    for name, tensor in native.state_dict().items():
        assert torch.equal(tensor, state[name].to(tensor.dtype)), name
    # Spot-check the transforms against the raw checkpoint values.
    from senformer.weights.tensorbundle import TensorBundle

    bundle = TensorBundle(fixture_dir / "ckpt")
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    raw_conv = bundle.get("module/_trunk/_layers/1/_layers/0/_layers/0/_layers/2/w" + suffix)  # (5, 192, 256)
    assert torch.equal(native.conv_tower[0].conv.conv.weight, torch.from_numpy(raw_conv).permute(2, 1, 0))
    raw_bias = bundle.get("module/_trunk/_layers/2/_layers/0/_layers/0/_module/_layers/1/_r_w_bias" + suffix)
    assert torch.equal(native.transformer[0].attention.r_w_bias, torch.from_numpy(raw_bias[0, :, 0, :]))
    raw_var = bundle.get("module/_trunk/_layers/4/_layers/0/_layers/0/moving_variance/average" + suffix)
    assert torch.equal(native.final_pointwise.norm.running_var, torch.from_numpy(raw_var.reshape(-1)))


def run_fixture(model: Enformer, fixture_dir) -> dict[str, float]:
    reference = np.load(fixture_dir / "reference_outputs.npz")
    tokens = torch.from_numpy(reference["tokens"].astype(np.int64))[None]
    with torch.no_grad():
        outputs = model(tokens)
    errors = {}
    for head in ("human", "mouse"):
        got = outputs[head][..., ::TRACK_STEP].numpy()
        want = reference[head]
        assert got.shape == want.shape
        errors[head] = float(np.abs(got - want).max() / np.abs(want).max())
    return errors


@pytest.mark.slow
def test_reproduces_the_official_outputs(fixture_dir):
    """The key correctness proof: DeepMind's own outputs within 1e-5 of the largest value (about 2e-6)."""
    model = load_model(fixture_dir / "ckpt")
    errors = run_fixture(model, fixture_dir)
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.slow
def test_every_attention_kind_runs_the_official_weights(fixture_dir):
    """Chunked attention and a BigBird window covering all 16 blocks give dense attention's numbers on the
    fixture's conv-tower features; BigBird's sparse pattern (8 of 16 blocks) differs but stays finite."""
    reference = np.load(fixture_dir / "reference_outputs.npz")
    tokens = torch.from_numpy(reference["tokens"].astype(np.int64))[None]
    full = load_model(fixture_dir / "ckpt")
    with torch.no_grad():
        features = full.conv_trunk(full.prepare_input(tokens).transpose(1, 2)).transpose(1, 2)  # (1, 1024, 384)
        dense = full.transformer_trunk(features)
        scale = dense.abs().max()
        for overrides, exact in [
            ({"attention": "chunked", "chunk_size": 100}, True),
            ({"attention": "bigbird", "num_window_blocks": 31}, True),
            ({"attention": "bigbird"}, False),
        ]:
            model = load_model(fixture_dir / "ckpt", overrides=overrides)
            error = float((model.transformer_trunk(features) - dense).abs().max() / scale)
            if exact:
                assert error < 1e-5, (overrides, error)
            else:
                assert 1e-5 < error < 1.0, (overrides, error)


def test_savedmodel_variables_folder_loads_the_same_weights(fixture_dir, tmp_path):
    variables = tmp_path / "hub" / "variables"
    variables.mkdir(parents=True)
    shutil.copy(fixture_dir / "ckpt.index", variables / "variables.index")
    shutil.copy(fixture_dir / "ckpt.data-00000-of-00001", variables / "variables.data-00000-of-00001")
    assert detect_format(tmp_path / "hub") == "tf-savedmodel"
    a = load_model(tmp_path / "hub").state_dict()
    b = load_model(fixture_dir / "ckpt").state_dict()
    assert all(torch.equal(a[name], b[name]) for name in b)


def test_checkpoint_paths_in_every_spelling(fixture_dir, tmp_path):
    for path in (fixture_dir / "ckpt", fixture_dir / "ckpt.index", fixture_dir / "ckpt.data-00000-of-00001", fixture_dir):
        assert detect_format(path) == "tf-checkpoint"


def test_truncated_checkpoint_fails_clearly(fixture_dir, tmp_path):
    shutil.copy(fixture_dir / "ckpt.index", tmp_path / "ckpt.index")
    data = (fixture_dir / "ckpt.data-00000-of-00001").read_bytes()
    (tmp_path / "ckpt.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        load_model(tmp_path / "ckpt")


def test_keys_rooted_elsewhere_are_rerooted_and_foreign_graphs_refused():
    from senformer.weights.tf_checkpoint import _normalise_root

    keys = ["_model/_trunk/_layers/0/_layers/0/w/.ATTRIBUTES/VARIABLE_VALUE", "_model/_heads/human/_layers/0/b/.ATTRIBUTES/VARIABLE_VALUE"]
    rooted = _normalise_root(keys)
    assert rooted[keys[0]] == "module/_trunk/_layers/0/_layers/0/w/.ATTRIBUTES/VARIABLE_VALUE"
    assert tf_name_to_senformer(rooted[keys[1]])[0] == "heads.human.bias"
    with pytest.raises(UserError, match="no Enformer object-graph keys.*variables/0"):
        _normalise_root(["variables/0/.ATTRIBUTES/VARIABLE_VALUE"])
