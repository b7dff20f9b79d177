"""DeepMind's Sonnet checkpoint (``enformer-fine-tuned-human-1``) -> senformer's state dict.

Tensors are found by **checkpoint object-graph keys** (``module/_trunk/_layers/...``), never by variable
names: in the official code the two MLP linears and the two BatchNorm moving averages of a block share one
``v.name``, so a name-keyed dict silently keeps only one of each (spec section 3). List indices count the
entries without variables (GELU, ReLU, dropout), hence ``_layers/2`` for the conv after a GELU.

Transforms: conv ``w [width, in, out] -> [out, in, width]``; linear ``w [in, out] -> [out, in]``; softmax
pooling ``w [in, out] -> [out, in, 1]``; BatchNorm ``scale/offset -> weight/bias`` and the EMA
``average [1, 1, C] -> running_mean/var [C]`` (its step counter -> ``num_batches_tracked``); LayerNorm
``scale/offset``; ``r_w_bias/r_r_bias [1, H, 1, K] -> [H, K]``.
"""

from __future__ import annotations

import os
import re
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from .tensorbundle import TensorBundle

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# Keys that are not model weights: the object graph itself, Checkpoint.save's counter, optimizer slots,
# and the BatchNorm EMA internals that inference does not use.
_IGNORED = re.compile(r"^(_CHECKPOINTABLE_OBJECT_GRAPH|save_counter/.*)$|/\.OPTIMIZER_SLOT/|/_hidden$|moving_variance/_counter$")

_T = r"module/_trunk/_layers"
_BLOCK = r"(?P<block>\d+)"
# (module path in the checkpoint, senformer module name, kind of module)
_MODULES: list[tuple[str, str, str]] = [
    (rf"{_T}/0/_layers/0", "stem.conv", "conv"),
    (rf"{_T}/0/_layers/1/_module/_layers/0", "stem.pointwise.norm", "batch_norm"),
    (rf"{_T}/0/_layers/1/_module/_layers/2", "stem.pointwise.conv", "conv"),
    (rf"{_T}/0/_layers/2/_logit_linear", "stem.pool.logits", "pool"),
    (rf"{_T}/1/_layers/{_BLOCK}/_layers/0/_layers/0", "conv_tower.{block}.conv.norm", "batch_norm"),
    (rf"{_T}/1/_layers/{_BLOCK}/_layers/0/_layers/2", "conv_tower.{block}.conv.conv", "conv"),
    (rf"{_T}/1/_layers/{_BLOCK}/_layers/1/_module/_layers/0", "conv_tower.{block}.pointwise.norm", "batch_norm"),
    (rf"{_T}/1/_layers/{_BLOCK}/_layers/1/_module/_layers/2", "conv_tower.{block}.pointwise.conv", "conv"),
    (rf"{_T}/1/_layers/{_BLOCK}/_layers/2/_logit_linear", "conv_tower.{block}.pool.logits", "pool"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/0", "transformer.{block}.attention_norm", "layer_norm"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/1/_q_layer", "transformer.{block}.attention.to_q", "linear"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/1/_k_layer", "transformer.{block}.attention.to_k", "linear"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/1/_v_layer", "transformer.{block}.attention.to_v", "linear"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/1/_r_k_layer", "transformer.{block}.attention.to_r_k", "linear"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/1/_embedding_layer", "transformer.{block}.attention.to_out", "linear"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/0/_module/_layers/1", "transformer.{block}.attention", "attention"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/1/_module/_layers/0", "transformer.{block}.feed_forward.norm", "layer_norm"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/1/_module/_layers/1", "transformer.{block}.feed_forward.linear_in", "linear"),
    (rf"{_T}/2/_layers/{_BLOCK}/_layers/1/_module/_layers/4", "transformer.{block}.feed_forward.linear_out", "linear"),
    (rf"{_T}/4/_layers/0/_layers/0", "final_pointwise.norm", "batch_norm"),
    (rf"{_T}/4/_layers/0/_layers/2", "final_pointwise.conv", "conv"),
    (r"module/_heads/(?P<block>\w+)/_layers/0", "heads.{block}", "linear"),
]
_MODULE_PATTERNS = [(re.compile(pattern + r"/(?P<leaf>.+)$"), name, kind) for pattern, name, kind in _MODULES]

Transform = Callable[[np.ndarray], np.ndarray]
_LEAVES: dict[str, dict[str, tuple[str, Transform]]] = {
    "conv": {"w": ("weight", lambda w: w.transpose(2, 1, 0)), "b": ("bias", lambda b: b)},
    "linear": {"w": ("weight", lambda w: w.T), "b": ("bias", lambda b: b)},
    "pool": {"w": ("weight", lambda w: w.T[:, :, None])},
    "layer_norm": {"scale": ("weight", lambda s: s), "offset": ("bias", lambda o: o)},
    "batch_norm": {
        "scale": ("weight", lambda s: s),
        "offset": ("bias", lambda o: o),
        "moving_mean/average": ("running_mean", lambda a: a.reshape(-1)),
        "moving_variance/average": ("running_var", lambda a: a.reshape(-1)),
        "moving_mean/_counter": ("num_batches_tracked", lambda c: c.astype(np.int64).reshape(())),
    },
    "attention": {
        "_r_w_bias": ("r_w_bias", lambda b: b.reshape(b.shape[1], b.shape[3])),
        "_r_r_bias": ("r_r_bias", lambda b: b.reshape(b.shape[1], b.shape[3])),
    },
}


def tf_name_to_senformer(key: str) -> tuple[str, Transform] | None:
    """(senformer name, transform) for a checkpoint key, or None when the key is not a known weight."""
    path = key.removesuffix(VALUE_SUFFIX)
    for pattern, name, kind in _MODULE_PATTERNS:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        leaf = _LEAVES[kind].get(match.group("leaf"))
        if leaf is None:
            continue
        module = name.format(block=match.groupdict().get("block"))
        return f"{module}.{leaf[0]}", leaf[1]
    return None


def _normalise_root(keys: list[str]) -> dict[str, str]:
    """Map each key to one rooted at ``module/`` (a SavedModel may root the same graph elsewhere)."""
    roots = {key.split("/_trunk/")[0] for key in keys if "/_trunk/_layers/" in key}
    if not roots:
        sample = ", ".join(sorted(keys)[:3])
        raise UserError(
            "the checkpoint has no Enformer object-graph keys (expected '<root>/_trunk/_layers/...'; found e.g. "
            f"{sample}). TF-Hub SavedModels whose variables are not keyed by the Sonnet object graph are not "
            "supported: convert the Sonnet checkpoint instead"
        )
    if len(roots) > 1:
        raise UserError(f"the checkpoint holds several Enformer models (roots {sorted(roots)})")
    (root,) = roots
    if root == "module":
        return {key: key for key in keys}
    return {key: "module/" + key[len(root) + 1 :] if key.startswith(root + "/") else key for key in keys}


def read_tf_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The official checkpoint at ``path`` (prefix, ``.index`` or ``.data-*``) in senformer names.

    Keys that are not weights (object graph, save counter, optimizer slots, EMA internals) are dropped;
    any other unknown key is kept under its checkpoint name, so a strict load reports it as unexpected.
    """
    bundle = TensorBundle(path)
    rooted = _normalise_root(bundle.keys())
    state: dict[str, torch.Tensor] = {}
    for key in bundle.keys():
        path_key = rooted[key]
        short = path_key.removesuffix(VALUE_SUFFIX)
        if _IGNORED.search(short):
            continue
        target = tf_name_to_senformer(path_key)
        value = bundle.get(key)
        if target is None:
            state[key] = torch.from_numpy(np.array(value))
            continue
        name, transform = target
        if name in state:
            raise UserError(f"checkpoint keys collide on {name} (second one: {key})")
        state[name] = torch.from_numpy(np.array(transform(value), order="C"))  # (ascontiguousarray makes 0-d 1-d)
    return state
