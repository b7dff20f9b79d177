"""calico's Keras ``.h5`` Borzoi files (baskerville's ``SeqNN.save``) -> senformer's state dict, read with h5py.

baskerville saves one Keras model per head (``model0.h5`` human, ``model1.h5`` mouse), sharing the trunk.
Layer names are Keras's automatic ones (``conv1d_3``, ``batch_normalization_5``, ``dense_4``), which depend
on the order the graph was built in, so they say nothing about a layer's role: the converter follows the
graph in the file's ``model_config`` instead (each layer's inputs), from the input to the softplus head:

    Conv1D -> MaxPooling1D                                      stem
    [BatchNorm -> gelu -> Conv1D -> MaxPooling1D] x blocks      conv tower (the U-Net's skips: a conv's output)
    LayerNorm -> MultiheadAttention -> Dropout -> Add,
    LayerNorm -> Dense -> Dropout -> ReLU -> Dense -> Dropout -> Add        transformer blocks
    Add(UpSampling1D(Dense(gelu(BN(x)))), Dense(gelu(BN(skip)))) -> SeparableConv1D     U-Net steps
    Cropping1D -> BN -> gelu -> Conv1D -> Dropout -> gelu -> Dense(softplus)            crop, final conv, head

(``norm_type: batch-sync`` builds ``BatchNormalization`` on one device, ``SyncBatchNormalization`` in a
multi-device save: both are accepted.) The architecture is read from the same graph, so the config is
complete. Weights live at ``model_weights/<layer>/<layer>/<name>:0``. Transforms: conv ``kernel [width, in,
out] -> [out, in, width]``, dense ``[in, out] -> [out, in]``, separable ``depthwise [width, C, 1] -> [C, 1,
width]`` and ``pointwise [1, in, out] -> [out, in, 1]``, ``r_w_bias/r_r_bias [1, H, 1, K] -> [H, K]``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import BorzoiConfig
from ..errors import UserError
from .infer import tower_divisor

_BATCH_NORMS = ("BatchNormalization", "SyncBatchNormalization")
# Layers a path passes through without weights or a role of their own.
_PASS = ("Dropout", "TFOpLambda", "Activation", "ReLU", "StochasticReverseComplement", "StochasticShift")
_HEAD_NAMES = {0: "human", 1: "mouse"}  # baskerville's heads in natsorted order: head_human, head_mouse
_KERAS_EPSILON = 1e-3


@dataclass
class _Layer:
    name: str
    kind: str
    config: dict[str, Any]
    inputs: list[str]
    call_kwargs: dict[str, Any] = field(default_factory=dict)


class _Graph:
    """A Keras functional model's layers with their inputs and consumers, read from ``model_config``."""

    def __init__(self, model_config: dict[str, Any], path: Path):
        self.path = path
        self.layers: dict[str, _Layer] = {}
        self.consumers: dict[str, list[str]] = {}
        for entry in model_config["config"]["layers"]:
            inputs, kwargs = [], {}
            for reference in _references(entry.get("inbound_nodes", [])):
                inputs.append(reference[0])
                if len(reference) > 3 and isinstance(reference[3], dict):
                    kwargs.update(reference[3])
            layer = _Layer(entry["name"], entry["class_name"], entry.get("config", {}), inputs, kwargs)
            self.layers[layer.name] = layer
            for name in inputs:
                self.consumers.setdefault(name, []).append(layer.name)

    def of_kind(self, *kinds: str) -> list[_Layer]:
        return [layer for layer in self.layers.values() if layer.kind in kinds]

    def input_of(self, layer: _Layer, through: tuple[str, ...] = _PASS) -> _Layer:
        """The layer feeding ``layer`` (its only input), skipping layers of the kinds in ``through``."""
        current = layer
        while True:
            if len(current.inputs) != 1:
                raise self.error(f"layer {current.name} ({current.kind}) has {len(current.inputs)} inputs, expected one")
            current = self.layers[current.inputs[0]]
            if current.kind not in through:
                return current
            self.check_gelu(current)

    def consumer_of(self, layer: _Layer, kind: str, through: tuple[str, ...] = _PASS) -> _Layer:
        """The layer of ``kind`` that consumes ``layer``'s output, following pass-through layers."""
        frontier = list(self.consumers.get(layer.name, []))
        while frontier:
            current = self.layers[frontier.pop(0)]
            if current.kind == kind:
                return current
            if current.kind in through:
                frontier.extend(self.consumers.get(current.name, []))
        raise self.error(f"no {kind} layer follows layer {layer.name} ({layer.kind})")

    def check_gelu(self, layer: _Layer) -> None:
        """Borzoi's GELU is the tanh approximation; an exact-erf or other activation is another model."""
        if layer.kind == "TFOpLambda":
            function = layer.config.get("function")
            if function != "nn.gelu" or layer.call_kwargs.get("approximate") is not True:
                raise self.error(f"layer {layer.name} computes {function} {layer.call_kwargs}, not Borzoi's "
                                 "tanh-approximated GELU")
        elif layer.kind == "Activation":
            raise self.error(f"layer {layer.name} is an Activation ({layer.config.get('activation')}) Borzoi does not have")

    def error(self, message: str) -> UserError:
        return UserError(f"{self.path}: {message}")


def _references(node: Any) -> list[list[Any]]:
    """Every ``[layer name, node index, tensor index, kwargs?]`` in a Keras ``inbound_nodes`` structure."""
    if isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int):
            return [node]
        return [reference for item in node for reference in _references(item)]
    return []


@dataclass
class KerasBorzoi:
    """What one ``.h5`` holds: the trunk and one head in senformer names, the config it implies, and the
    Keras layer each tensor came from (for errors naming the layer)."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    sources: dict[str, str]
    head: str


def read_keras_borzoi(path: str | Path, head: str | None = None) -> KerasBorzoi:
    """One baskerville ``.h5`` (one head) in senformer names; ``head`` names its head (default: ``human``
    for ``model0*.h5``, ``mouse`` for ``model1*.h5``, ``head<N>`` beyond)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such Keras weights file: {path}")
    head = head or _head_name(path)
    try:
        with h5py.File(path, "r") as handle:
            if "model_config" not in handle.attrs or "model_weights" not in handle:
                raise UserError(f"{path} is not a Keras model saved whole (no model_config / model_weights): "
                                "save it with model.save(path) as baskerville's SeqNN.save does")
            model_config = json.loads(handle.attrs["model_config"])
            return _convert(_Graph(model_config, path), handle["model_weights"], path, head)
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file ({error})") from None


def _head_name(path: Path) -> str:
    match = re.match(r"model(\d+)", path.name)
    index = int(match.group(1)) if match else 0
    return _HEAD_NAMES.get(index, f"head{index}")


class _Reader:
    """Reads a layer's weights by their short names (``kernel``, ``q_layer/kernel``) and records where each
    senformer tensor came from."""

    def __init__(self, weights, graph: _Graph):
        self.weights, self.graph = weights, graph
        self.state: dict[str, torch.Tensor] = {}
        self.sources: dict[str, str] = {}
        self.used: set[str] = set()

    def layer(self, layer: _Layer) -> dict[str, np.ndarray]:
        if layer.name not in self.weights:
            raise self.graph.error(f"layer {layer.name} ({layer.kind}) of the model has no weights in model_weights")
        group = self.weights[layer.name]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        values = {}
        for name in names:
            short = name.rsplit(":", 1)[0]
            while short.startswith(layer.name + "/"):
                short = short[len(layer.name) + 1:]
            if name not in group:
                raise self.graph.error(f"layer {layer.name} ({layer.kind}) lacks its weight {short!r} (listed, not stored)")
            values[short] = np.asarray(group[name])
        self.used.add(layer.name)
        return values

    def put(self, target: str, layer: _Layer, values: dict[str, np.ndarray], key: str, transform=None) -> None:
        if key not in values:
            raise self.graph.error(f"layer {layer.name} ({layer.kind}) lacks its weight {key!r} "
                                   f"(has {', '.join(sorted(values)) or 'none'})")
        array = values[key]
        tensor = torch.from_numpy(np.ascontiguousarray(transform(array) if transform else array))
        self.state[target] = tensor
        self.sources[target] = f"{layer.name}/{key}"

    def conv(self, target: str, layer: _Layer) -> None:
        values = self.layer(layer)
        self.put(f"{target}.weight", layer, values, "kernel", lambda w: w.transpose(2, 1, 0))
        self.put(f"{target}.bias", layer, values, "bias")

    def dense(self, target: str, layer: _Layer, transform=lambda w: w.T) -> None:
        values = self.layer(layer)
        self.put(f"{target}.weight", layer, values, "kernel", transform)
        self.put(f"{target}.bias", layer, values, "bias")

    def batch_norm(self, target: str, layer: _Layer) -> None:
        if layer.kind not in _BATCH_NORMS:
            raise self.graph.error(f"layer {layer.name} is a {layer.kind} where Borzoi has a BatchNormalization")
        _check_epsilon(layer, self.graph)
        values = self.layer(layer)
        for key, leaf in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                          ("moving_variance", "running_var")):
            self.put(f"{target}.{leaf}", layer, values, key)
        # Not in Keras; inference does not read it (torch's momentum is set).
        self.state[f"{target}.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
        self.sources[f"{target}.num_batches_tracked"] = layer.name

    def layer_norm(self, target: str, layer: _Layer) -> None:
        if layer.kind != "LayerNormalization":
            raise self.graph.error(f"layer {layer.name} is a {layer.kind} where Borzoi has a LayerNormalization")
        _check_epsilon(layer, self.graph)
        values = self.layer(layer)
        self.put(f"{target}.weight", layer, values, "gamma")
        self.put(f"{target}.bias", layer, values, "beta")


def _check_epsilon(layer: _Layer, graph: _Graph) -> None:
    epsilon = layer.config.get("epsilon", _KERAS_EPSILON)
    if not math.isclose(epsilon, _KERAS_EPSILON):
        raise graph.error(f"layer {layer.name} has epsilon {epsilon}; Borzoi's normalisations use {_KERAS_EPSILON}")


def _expect(graph: _Graph, layer: _Layer, kind: str, role: str) -> _Layer:
    if layer.kind != kind:
        raise graph.error(f"layer {layer.name} is a {layer.kind} where Borzoi's {role} has a {kind}")
    return layer


def _convert(graph: _Graph, weights, path: Path, head: str) -> KerasBorzoi:
    reader = _Reader(weights, graph)
    convs = graph.of_kind("Conv1D")
    if not convs:
        raise graph.error("no Conv1D layer: not a Borzoi model")
    stem = convs[0]
    if graph.input_of(stem).kind != "InputLayer":
        raise graph.error(f"the first Conv1D ({stem.name}) does not read the input sequence")
    graph.consumer_of(stem, "MaxPooling1D")
    reader.conv("stem.conv", stem)
    pooled = {conv.name for conv in convs if any(graph.layers[c].kind == "MaxPooling1D"
                                                 for c in graph.consumers.get(conv.name, []))}
    tower = [conv for conv in convs[1:] if conv.name in pooled]
    finals = [conv for conv in convs[1:] if conv.name not in pooled]
    if not tower:
        raise graph.error("no conv tower (Conv1D -> MaxPooling1D blocks after the stem)")
    for index, conv in enumerate(tower):
        reader.batch_norm(f"conv_tower.{index}.norm", graph.input_of(conv))
        reader.conv(f"conv_tower.{index}.conv", conv)

    attentions = graph.of_kind("MultiheadAttention")
    for index, attention in enumerate(attentions):
        prefix = f"transformer.{index}"
        reader.layer_norm(f"{prefix}.attention_norm", graph.input_of(attention))
        values = reader.layer(attention)
        for name in ("q", "k", "v"):
            reader.put(f"{prefix}.attention.to_{name}.weight", attention, values, f"{name}_layer/kernel", lambda w: w.T)
        reader.put(f"{prefix}.attention.to_r_k.weight", attention, values, "r_k_layer/kernel", lambda w: w.T)
        reader.put(f"{prefix}.attention.to_out.weight", attention, values, "embedding_layer/kernel", lambda w: w.T)
        reader.put(f"{prefix}.attention.to_out.bias", attention, values, "embedding_layer/bias")
        for keras_name, name in (("r_w_bias", "r_w_bias"), ("r_r_bias", "r_r_bias")):
            reader.put(f"{prefix}.attention.{name}", attention, values, keras_name,
                       lambda b: b.reshape(b.shape[1], b.shape[3]))  # (1, H, 1, K) -> (H, K)
        residual = graph.consumer_of(attention, "Add")
        norm = graph.consumer_of(residual, "LayerNormalization", through=())
        reader.layer_norm(f"{prefix}.feed_forward.norm", norm)
        linear_in = graph.consumer_of(norm, "Dense", through=())
        linear_out = graph.consumer_of(linear_in, "Dense")
        reader.dense(f"{prefix}.feed_forward.linear_in", linear_in)
        reader.dense(f"{prefix}.feed_forward.linear_out", linear_out)

    steps = graph.of_kind("SeparableConv1D")
    upsample_convs = set()
    for index, separable in enumerate(steps):
        prefix = f"unet.{index}"
        joined = _expect(graph, graph.layers[separable.inputs[0]], "Add", f"U-Net step {index}")
        branches = [graph.layers[name] for name in joined.inputs]
        upsampled = [layer for layer in branches if layer.kind == "UpSampling1D"]
        lateral = [layer for layer in branches if layer.kind == "Dense"]
        if len(branches) != 2 or len(upsampled) != 1 or len(lateral) != 1:
            raise graph.error(f"layer {joined.name} does not add an UpSampling1D and a Dense (U-Net step {index})")
        if upsampled[0].config.get("size", 2) != 2:
            raise graph.error(f"layer {upsampled[0].name} upsamples by {upsampled[0].config.get('size')}, not 2")
        before = graph.input_of(upsampled[0], through=())
        if before.kind == "Dense":
            upsample_convs.add(index)
            reader.dense(f"{prefix}.upsample.conv", before, lambda w: w.T[:, :, None])
            before = graph.input_of(before)
        else:
            graph.check_gelu(before)
            before = graph.input_of(before)
        reader.batch_norm(f"{prefix}.upsample.norm", before)
        reader.dense(f"{prefix}.skip.conv", lateral[0], lambda w: w.T[:, :, None])
        skip_norm = graph.input_of(lateral[0])
        reader.batch_norm(f"{prefix}.skip.norm", skip_norm)
        skip_source = graph.input_of(skip_norm, through=())
        expected = tower[len(tower) - 1 - index] if index < len(tower) else None
        if skip_source is not expected:
            raise graph.error(f"U-Net step {index} ({separable.name}) takes its skip from {skip_source.name}, "
                              f"not from the tower's block {len(tower) - 1 - index} ({getattr(expected, 'name', None)})")
        values = reader.layer(separable)
        reader.put(f"{prefix}.depthwise.weight", separable, values, "depthwise_kernel", lambda w: w.transpose(1, 2, 0))
        reader.put(f"{prefix}.pointwise.weight", separable, values, "pointwise_kernel", lambda w: w.transpose(2, 1, 0))
        reader.put(f"{prefix}.pointwise.bias", separable, values, "bias")

    crops = graph.of_kind("Cropping1D")
    crop = 0
    if crops:
        cropping = crops[0].config.get("cropping", [0, 0])
        cropping = [cropping, cropping] if isinstance(cropping, int) else list(cropping)
        if len(crops) > 1 or cropping[0] != cropping[1]:
            raise graph.error(f"layer {crops[0].name} crops {cropping}: Borzoi crops once, equally at both ends")
        crop = int(cropping[0])
    if len(finals) > 1:
        raise graph.error(f"more than one Conv1D after the tower ({', '.join(c.name for c in finals)})")
    if finals:
        reader.batch_norm("final_pointwise.norm", graph.input_of(finals[0]))
        reader.conv("final_pointwise.conv", finals[0])
        final_dropout = _dropout_after(graph, finals[0])

    heads = [layer for layer in graph.of_kind("Dense") if layer.config.get("activation") == "softplus"]
    if len(heads) != 1:
        raise graph.error(f"expected one Dense head with softplus, found {len(heads)}")
    reader.dense(f"heads.{head}", heads[0])

    unused = [name for name in weights if name not in reader.used and len(weights[name].attrs.get("weight_names", []))]
    if unused:
        raise graph.error(f"layers with weights that are not part of Borzoi's architecture: {', '.join(sorted(unused))}")

    first = reader.state["transformer.0.attention.r_w_bias"] if attentions else None
    heads_count, key_size = (tuple(first.shape) if first is not None else (1, 1))
    filters = [int(reader.state[f"conv_tower.{i}.conv.weight"].shape[0]) for i in range(len(tower))]
    input_layer = graph.of_kind("InputLayer")[0]
    config = {
        "family": "borzoi",
        "dim": filters[-1],
        "depth": len(attentions),
        "heads": int(heads_count),
        "key_size": int(key_size),
        "stem_channels": int(reader.state["stem.conv.weight"].shape[0]),
        "stem_width": int(reader.state["stem.conv.weight"].shape[2]),
        "num_conv_tower_blocks": len(tower),
        "conv_tower_start": filters[0],
        "conv_tower_width": int(reader.state["conv_tower.0.conv.weight"].shape[2]),
        "conv_tower_divisible_by": tower_divisor(filters),
        "unet_levels": len(steps),
        "unet_upsample_conv": bool(upsample_convs),
        "crop": crop,
        "target_length": None,
        "final_channels": int(reader.state["final_pointwise.conv.weight"].shape[0]) if finals else None,
        "output_heads": {head: int(reader.state[f"heads.{head}.weight"].shape[0])},
        # baskerville builds the relative-position basis from the input's own length.
        "positional_basis_length": None,
    }
    if finals:
        config["final_dropout_rate"] = final_dropout
    if steps:
        config["unet_width"] = int(reader.state["unet.0.depthwise.weight"].shape[2])
        if len(upsample_convs) not in (0, len(steps)):
            raise graph.error("some U-Net steps convolve the upsampled path and some do not")
    if attentions:
        # Training-only rates the graph records: the Dropout after attention and after the final conv.
        config["dropout_rate"] = _dropout_after(graph, attentions[0])
        value_out = int(reader.state["transformer.0.attention.to_v.weight"].shape[0])
        config["value_size"] = None if value_out == config["dim"] else value_out // config["heads"]
        config["num_relative_position_features"] = int(reader.state["transformer.0.attention.to_r_k.weight"].shape[1])
    shape = input_layer.config.get("batch_input_shape") or [None, None, 4]
    if shape[-1] != 4:
        raise graph.error(f"the input has {shape[-1]} channels, not 4 (one-hot ACGT)")
    return KerasBorzoi(reader.state, config, reader.sources, head)


def _dropout_after(graph: _Graph, layer: _Layer) -> float:
    """The rate of the Dropout right after ``layer`` (0 where Keras built none: baskerville skips rate 0)."""
    following = [graph.layers[name] for name in graph.consumers.get(layer.name, [])]
    rates = [float(item.config.get("rate", 0.0)) for item in following if item.kind == "Dropout"]
    return rates[0] if rates else 0.0


def check_shapes(state: dict[str, torch.Tensor], sources: dict[str, str], config: dict[str, Any], path) -> None:
    """Refuse, naming the Keras layer, a tensor whose shape is not the one the architecture gives it (a
    layer saved under another's name)."""
    from ..model.borzoi import Borzoi

    with torch.device("meta"):
        expected = Borzoi(BorzoiConfig.from_dict(config)).state_dict()
    for name, tensor in state.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise UserError(f"{path}: layer {sources.get(name, name).split('/')[0]} holds {sources.get(name, name)} "
                            f"of shape {list(tensor.shape)} where Borzoi's {name} is {list(expected[name].shape)}: "
                            "a mislabelled or foreign layer")


def read_keras_borzoi_files(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The heads of several baskerville ``.h5`` files sharing one trunk (``model0.h5``, ``model1.h5``):
    one state dict with every head and the config; files whose trunks differ are refused naming the layer."""
    if not paths:
        raise UserError("no Keras .h5 files given")
    parts = [read_keras_borzoi(path) for path in paths]
    state, config, sources = dict(parts[0].state), dict(parts[0].config), dict(parts[0].sources)
    for path, part in zip(paths[1:], parts[1:]):
        if part.head in config["output_heads"]:
            raise UserError(f"{path} holds head {part.head!r} again (from {paths[0]})")
        for name, tensor in part.state.items():
            if name.startswith("heads."):
                state[name] = tensor
            elif name not in state or state[name].shape != tensor.shape or not torch.equal(state[name], tensor):
                raise UserError(f"{path}: layer {part.sources.get(name, name)} differs from {paths[0]}'s "
                                f"{sources.get(name, name)} ({name}): the files do not share one trunk")
        trunk = {name for name in state if not name.startswith("heads.")}
        missing = trunk - set(part.state)
        if missing:
            raise UserError(f"{path} lacks {len(missing)} trunk tensors of {paths[0]}, e.g. {sorted(missing)[0]}")
        config["output_heads"] = {**config["output_heads"], **part.config["output_heads"]}
        sources = {**sources, **part.sources}
    check_shapes(state, sources, config, paths[0] if len(paths) == 1 else paths[0].parent)
    return state, config


def keras_files(path: Path) -> list[Path]:
    """The ``.h5`` files at ``path``: the file itself, or a folder's ``model<N>*.h5`` in head order."""
    if path.is_file():
        return [path]
    found = sorted(path.glob("model*.h5"), key=lambda p: (_head_index(p), p.name))
    return found or sorted(path.glob("*.h5"))


def _head_index(path: Path) -> int:
    match = re.match(r"model(\d+)", path.name)
    return int(match.group(1)) if match else 0
