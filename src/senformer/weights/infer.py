"""Infer an :class:`EnformerConfig` from the shapes of a state dict in senformer's parameter names.

Converting a checkpoint needs no hand-written config: channels, depth, heads, key and value sizes, the
relative-feature count, the conv-tower filters and the tracks per head are all readable from the tensors.
What the tensors cannot tell (attention kind, sparse settings, ``target_length``, dropout) keeps the
published defaults unless overridden.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from ..config import BorzoiConfig, EnformerConfig, ModelConfig
from ..errors import UserError

_TOWER = re.compile(r"^conv_tower\.(\d+)\.conv\.conv\.weight$")
_LAYER = re.compile(r"^transformer\.(\d+)\.attention_norm\.weight$")
_HEAD = re.compile(r"^heads\.([^.]+)\.weight$")


def _shape(state: Mapping[str, Any], name: str) -> tuple[int, ...]:
    try:
        return tuple(state[name].shape)
    except KeyError:
        raise UserError(f"cannot infer the model configuration: tensor {name!r} is missing") from None


def _tower_divisor(dim: int, filters: list[int]) -> int:
    """The ``conv_tower_divisible_by`` that reproduces ``filters`` (128 for the official model)."""
    common = 0
    for value in filters:
        common = math.gcd(common, value)
    candidates = [128] + sorted((d for d in range(1, common + 1) if common % d == 0), reverse=True)
    for divisor in candidates:
        if _tower_filters(dim, len(filters), divisor) == filters:
            return divisor
    raise UserError(
        f"the conv tower filters {filters} do not follow Enformer's exponential spacing from {dim // 2} to {dim} "
        "for any rounding divisor; this model cannot be represented by EnformerConfig"
    )


def _tower_filters(dim: int, blocks: int, divisor: int) -> list[int] | None:
    """EnformerConfig's conv tower filters for these three fields, or None where the divisor is invalid.

    Every other field is set to a value that validates for any even ``dim`` (one head, no relative
    positions), so the only error left is the divisor's own; the model's real heads and features are
    checked once, on the whole inferred config, and that message is the one the user sees.
    """
    try:
        config = EnformerConfig(dim=dim, heads=1, relative_positions=False, depth=0, num_conv_tower_blocks=blocks,
                                num_poolings=blocks + 1, conv_tower_divisible_by=divisor, conv_tile_length=None)
    except UserError:
        return None
    return config.conv_tower_filters


def infer_config_values(state: Mapping[str, Any], heads_hint: int | None = None) -> dict[str, Any]:
    """The EnformerConfig fields readable from tensor shapes (senformer names).

    ``heads_hint`` gives the head count when the shapes cannot (no relative positions).
    """
    stem_out = _shape(state, "stem.conv.weight")[0]
    dim = 2 * stem_out
    tower = sorted(int(m.group(1)) for m in map(_TOWER.match, state) if m)
    if not tower or tower != list(range(len(tower))):
        raise UserError(f"cannot infer the conv tower: found blocks {tower or 'none'} (expected 0, 1, 2, ...)")
    filters = [_shape(state, f"conv_tower.{i}.conv.conv.weight")[0] for i in tower]
    if filters[-1] != dim:
        raise UserError(f"the last conv tower block has {filters[-1]} channels but the stem implies dim={dim}")
    layers = sorted(int(m.group(1)) for m in map(_LAYER.match, state) if m)
    if layers != list(range(len(layers))):
        raise UserError(f"transformer layers are not numbered 0..n-1: found {layers}")
    values: dict[str, Any] = {
        "dim": dim,
        "depth": len(layers),
        "num_conv_tower_blocks": len(filters),
        "num_poolings": len(filters) + 1,
        "conv_tower_divisible_by": _tower_divisor(dim, filters),
    }
    if layers:
        prefix = "transformer.0.attention."
        relative = f"{prefix}r_w_bias" in state
        values["relative_positions"] = relative
        query_out = _shape(state, f"{prefix}to_q.weight")[0]
        value_out = _shape(state, f"{prefix}to_v.weight")[0]
        if relative:
            heads, key_size = _shape(state, f"{prefix}r_w_bias")[-2:]
            values["heads"] = heads
            values["key_size"] = key_size
            features = _shape(state, f"{prefix}to_r_k.weight")[1]
            values["num_relative_position_features"] = None if features == dim // heads else features
        else:
            # Without relative positions the head count is not in any shape: keep the default unless overridden.
            heads = heads_hint or EnformerConfig.__dataclass_fields__["heads"].default
            if query_out % heads:
                raise UserError(f"{prefix}to_q.weight has {query_out} outputs, not divisible by heads={heads}")
            values["key_size"] = query_out // heads
        if query_out != heads * values["key_size"]:
            raise UserError(f"{prefix}to_q.weight has {query_out} outputs, not heads x key_size = {heads} x {values['key_size']}")
        values["value_size"] = None if value_out == dim else value_out // heads
    output_heads = {m.group(1): _shape(state, m.group(0))[0] for m in map(_HEAD.match, state) if m}
    if not output_heads:
        raise UserError("cannot infer the output heads: no 'heads.<name>.weight' tensor")
    values["output_heads"] = output_heads
    return values


def infer_config(
    state: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> ModelConfig:
    """An EnformerConfig (or a BorzoiConfig, for Borzoi's tensors) from ``state``'s shapes, on top of
    ``base`` values, with ``overrides`` last.

    A combination the config rejects is refused with its own message (e.g. relative features not
    divisible by 6), said to come from the shapes.
    """
    overrides = dict(overrides or {})
    heads_hint = overrides.get("heads", (base or {}).get("heads"))
    borzoi = is_borzoi_state(state)
    inferred = infer_borzoi_config_values(state, heads_hint) if borzoi else infer_config_values(state, heads_hint)
    values = {**(base or {}), **inferred, **overrides}
    try:
        return BorzoiConfig.from_dict(values) if borzoi else EnformerConfig.from_dict(values)
    except UserError as error:
        given = " with the overrides" if overrides else ""
        raise UserError(f"the tensor shapes{given} imply a configuration senformer cannot build: {error}") from None


def is_borzoi_state(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` (senformer names) is Borzoi's family: it has U-Net steps or a Borzoi tower block
    (``conv_tower.0.conv.weight``; Enformer's is ``conv_tower.0.conv.conv.weight``)."""
    return "conv_tower.0.conv.weight" in state or any(name.startswith("unet.") for name in state)


_BORZOI_TOWER = re.compile(r"^conv_tower\.(\d+)\.conv\.weight$")
_UNET = re.compile(r"^unet\.(\d+)\.pointwise\.weight$")


def tower_divisor(filters: list[int]) -> int:
    """The largest ``conv_tower_divisible_by`` that reproduces Borzoi's tower ``filters`` from their ends."""
    common = 0
    for value in filters:
        common = math.gcd(common, value)
    for divisor in sorted((d for d in range(1, common + 1) if common % d == 0), reverse=True):
        try:
            candidate = BorzoiConfig(dim=filters[-1], conv_tower_start=filters[0], num_conv_tower_blocks=len(filters),
                                     conv_tower_divisible_by=divisor, depth=0, heads=1, unet_levels=0)
        except UserError:
            continue
        if candidate.conv_tower_filters == filters:
            return divisor
    raise UserError(f"the conv tower's filters {filters} do not grow exponentially from {filters[0]} to {filters[-1]} "
                    "for any rounding divisor; this model cannot be represented by BorzoiConfig")


def infer_borzoi_config_values(state: Mapping[str, Any], heads_hint: int | None = None) -> dict[str, Any]:
    """The BorzoiConfig fields readable from tensor shapes (senformer names).

    Flashzoi's projections (``to_q`` with a bias, no relative keys) do not show the head count (every head
    has ``dim / heads`` dimensions): ``heads_hint`` gives it, else the published 8.
    """
    stem = _shape(state, "stem.conv.weight")
    tower = sorted(int(m.group(1)) for m in map(_BORZOI_TOWER.match, state) if m)
    if not tower or tower != list(range(len(tower))):
        raise UserError(f"cannot infer the conv tower: found blocks {tower or 'none'} (expected 0, 1, 2, ...)")
    filters = [_shape(state, f"conv_tower.{i}.conv.weight")[0] for i in tower]
    layers = sorted(int(m.group(1)) for m in map(_LAYER.match, state) if m)
    if layers != list(range(len(layers))):
        raise UserError(f"transformer layers are not numbered 0..n-1: found {layers}")
    steps = sorted(int(m.group(1)) for m in map(_UNET.match, state) if m)
    if steps != list(range(len(steps))):
        raise UserError(f"U-Net steps are not numbered 0..n-1: found {steps}")
    dim = filters[-1]
    values: dict[str, Any] = {
        "family": "borzoi",
        "dim": dim,
        "depth": len(layers),
        "stem_channels": stem[0],
        "stem_width": stem[2],
        "num_conv_tower_blocks": len(filters),
        "conv_tower_start": filters[0],
        "conv_tower_width": _shape(state, "conv_tower.0.conv.weight")[2],
        "conv_tower_divisible_by": tower_divisor(filters),
        "unet_levels": len(steps),
        "unet_upsample_conv": "unet.0.upsample.conv.weight" in state,
        "final_channels": _shape(state, "final_pointwise.conv.weight")[0] if "final_pointwise.conv.weight" in state else None,
    }
    if steps:
        values["unet_width"] = _shape(state, "unet.0.depthwise.weight")[2]
    if layers:
        prefix = "transformer.0.attention."
        query_out = _shape(state, f"{prefix}to_q.weight")[0]
        value_out = _shape(state, f"{prefix}to_v.weight")[0]
        if f"{prefix}r_w_bias" in state:
            heads, key_size = _shape(state, f"{prefix}r_w_bias")[-2:]
            values.update(heads=heads, key_size=key_size, relative_positions=True,
                          num_relative_position_features=_shape(state, f"{prefix}to_r_k.weight")[1],
                          value_size=None if value_out == dim else value_out // heads)
        elif f"{prefix}to_q.bias" in state:
            heads = heads_hint or 8
            if query_out % heads:
                raise UserError(f"{prefix}to_q.weight has {query_out} outputs, not divisible by heads={heads}")
            size = query_out // heads
            values.update(attention="rotary", relative_positions=False, heads=heads, key_size=size,
                          value_size=None if size == dim // heads else size, kv_heads=value_out // size)
        else:
            heads = heads_hint or 8
            values.update(heads=heads, relative_positions=False, key_size=query_out // heads,
                          value_size=None if value_out == dim else value_out // heads)
    output_heads = {m.group(1): _shape(state, m.group(0))[0] for m in map(_HEAD.match, state) if m}
    if not output_heads:
        raise UserError("cannot infer the output heads: no 'heads.<name>.weight' tensor")
    values["output_heads"] = output_heads
    return values


# What no tensor shape tells, for a note when no config file says it either.
SHAPELESS_FIELDS = ("target_length", "attention", "dropout_rate")


def uninferred_defaults(state: Mapping[str, Any], known: Mapping[str, Any], fields=SHAPELESS_FIELDS) -> list[str]:
    """``field=default`` for each of ``fields`` (and ``heads`` without relative positions) that ``known``
    (a config file's values and the overrides) does not set: those keep the config's defaults (Borzoi's for
    Borzoi's tensors)."""
    defaults = (BorzoiConfig if is_borzoi_state(state) else EnformerConfig).__dataclass_fields__
    wanted = list(fields)
    if "transformer.0.attention.to_q.weight" in state and "transformer.0.attention.r_w_bias" not in state:
        wanted.append("heads")
    named = []
    for name in wanted:
        if name not in known:
            named.append("dropout rates" if name == "dropout_rate" else f"{name}={defaults[name].default!r}")
    return named
