"""enformer-pytorch / Hugging Face (``EleutherAI/enformer-official-rough``) state dicts -> senformer names.

The peer's modules are ``nn.Sequential`` stacks, so its names are positional (``stem.1.fn.2``); its model
also registers ``_trunk`` (a Sequential over the same modules), so every trunk tensor appears twice
(``_trunk.1.*`` = ``stem.*``, ``_trunk.2`` = conv_tower, ``_trunk.4`` = transformer, ``_trunk.6`` =
final_pointwise). The aliases are dropped after checking that they hold the same values. Its tensors are
channels-first like ours; only the pooling logits (Conv2d ``[C, C, 1, 1]``) and the relative biases
(``[1, H, 1, K]``) change shape.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

import torch

from ..errors import UserError
from .native import read_config_file

_TRUNK_ALIASES = {"1": "stem", "2": "conv_tower", "4": "transformer", "6": "final_pointwise"}

Transform = Callable[[torch.Tensor], torch.Tensor]
_same: Transform = lambda t: t
_bias_table: Transform = lambda t: t.reshape(t.shape[1], t.shape[3])  # (1, H, 1, K) -> (H, K)
_pool: Transform = lambda t: t.reshape(t.shape[0], t.shape[1], 1)  # (C, C, 1, 1) -> (C, C, 1)

# (peer name pattern, senformer name template, transform); module parameters keep their leaf names.
_RULES: list[tuple[str, str, Transform]] = [
    (r"stem\.0\.(?P<leaf>weight|bias)", "stem.conv.{leaf}", _same),
    (r"stem\.1\.fn\.0\.(?P<leaf>\w+)", "stem.pointwise.norm.{leaf}", _same),
    (r"stem\.1\.fn\.2\.(?P<leaf>weight|bias)", "stem.pointwise.conv.{leaf}", _same),
    (r"stem\.2\.to_attn_logits\.weight", "stem.pool.logits.weight", _pool),
    (r"conv_tower\.(?P<i>\d+)\.0\.0\.(?P<leaf>\w+)", "conv_tower.{i}.conv.norm.{leaf}", _same),
    (r"conv_tower\.(?P<i>\d+)\.0\.2\.(?P<leaf>weight|bias)", "conv_tower.{i}.conv.conv.{leaf}", _same),
    (r"conv_tower\.(?P<i>\d+)\.1\.fn\.0\.(?P<leaf>\w+)", "conv_tower.{i}.pointwise.norm.{leaf}", _same),
    (r"conv_tower\.(?P<i>\d+)\.1\.fn\.2\.(?P<leaf>weight|bias)", "conv_tower.{i}.pointwise.conv.{leaf}", _same),
    (r"conv_tower\.(?P<i>\d+)\.2\.to_attn_logits\.weight", "conv_tower.{i}.pool.logits.weight", _pool),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.0\.(?P<leaf>weight|bias)", "transformer.{i}.attention_norm.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.to_(?P<leaf>q|k|v)\.weight", "transformer.{i}.attention.to_{leaf}.weight", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.to_rel_k\.weight", "transformer.{i}.attention.to_r_k.weight", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.to_out\.(?P<leaf>weight|bias)", "transformer.{i}.attention.to_out.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.rel_content_bias", "transformer.{i}.attention.r_w_bias", _bias_table),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.rel_pos_bias", "transformer.{i}.attention.r_r_bias", _bias_table),
    (r"transformer\.(?P<i>\d+)\.1\.fn\.0\.(?P<leaf>weight|bias)", "transformer.{i}.feed_forward.norm.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.1\.fn\.1\.(?P<leaf>weight|bias)", "transformer.{i}.feed_forward.linear_in.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.1\.fn\.4\.(?P<leaf>weight|bias)", "transformer.{i}.feed_forward.linear_out.{leaf}", _same),
    (r"final_pointwise\.1\.0\.(?P<leaf>\w+)", "final_pointwise.norm.{leaf}", _same),
    (r"final_pointwise\.1\.2\.(?P<leaf>weight|bias)", "final_pointwise.conv.{leaf}", _same),
    (r"_heads\.(?P<i>\w+)\.0\.(?P<leaf>weight|bias)", "heads.{i}.{leaf}", _same),
]
_COMPILED = [(re.compile(pattern), template, transform) for pattern, template, transform in _RULES]


def peer_name_to_senformer(name: str) -> tuple[str, Transform] | None:
    """(senformer name, transform) for an enformer-pytorch parameter name, or None if unknown."""
    for pattern, template, transform in _COMPILED:
        match = pattern.fullmatch(name)
        if match:
            return template.format(**match.groupdict()), transform
    return None


def _strip_prefix(state: Mapping[str, torch.Tensor], prefixes=("module.", "enformer.", "model.")) -> dict[str, torch.Tensor]:
    """Drop a common ``module.`` (DataParallel) or ``enformer.`` (wrapper models) prefix."""
    for prefix in prefixes:
        if state and all(name.startswith(prefix) for name in state):
            return {name[len(prefix) :]: tensor for name, tensor in state.items()}
    return dict(state)


def convert_enformer_pytorch(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An enformer-pytorch state dict in senformer names.

    ``_trunk.*`` aliases must equal the tensors they alias (a mismatch means a damaged file: error);
    unknown names are kept as they are, so a strict load reports them as unexpected.
    """
    state = _strip_prefix(state)
    converted: dict[str, torch.Tensor] = {}
    aliases: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        alias = re.fullmatch(r"_trunk\.(\d+)\.(.+)", name)
        if alias and alias.group(1) in _TRUNK_ALIASES:
            aliases[f"{_TRUNK_ALIASES[alias.group(1)]}.{alias.group(2)}"] = tensor
            continue
        target = peer_name_to_senformer(name)
        if target is None:
            converted[name] = tensor
            continue
        new_name, transform = target
        converted[new_name] = transform(tensor).contiguous()
    for name, tensor in aliases.items():
        original = state.get(name)
        if original is None:
            # Only the alias was stored: use it.
            target = peer_name_to_senformer(name)
            if target is None:
                converted[f"_trunk alias of {name}"] = tensor
            else:
                converted[target[0]] = target[1](tensor).contiguous()
        elif original.shape != tensor.shape or not torch.equal(original, tensor):
            raise UserError(f"the enformer-pytorch weights disagree with their own _trunk alias of {name}")
    return converted


def peer_config_values(path: str | os.PathLike) -> dict[str, Any]:
    """What an enformer-pytorch / HF ``config.json`` says beyond the shapes (the output length)."""
    values = read_config_file(path) or {}
    result: dict[str, Any] = {}
    target_length = values.get("target_length")
    if isinstance(target_length, int) and target_length > 0:
        result["target_length"] = target_length
    return result
